"""Helpers for the browser-facing issuer tests: users, the sign-in form, authorization URLs.

The fixtures ``gate``, ``http``, ``conf`` and ``spa`` come from ``conftest.py``;
these are plain functions the tests call, so every test shows what it sets up.
"""

from __future__ import annotations

import hashlib
import html
import re
import secrets
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from authgate.accounts import User
from authgate.hashing import b64url
from authgate.service import AuthGate

from .conftest import REDIRECT

PASSWORD = "correct horse battery staple"
LOGIN = "/.auth/account/login"
AUTHORIZE = "/.auth/oauth2/authorize"
LOGOUT = "/.auth/oauth2/logout"
SAME_ORIGIN = {"Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"}


async def add_user(gate: AuthGate, username: str = "alice", *, email: str = "alice@example.com",
                   name: str = "Alice Liddell") -> User:
    return await gate.accounts.add(username, PASSWORD, name=name, email=email)


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def authorize_params(client_id: str, **extra: str | None) -> dict[str, str]:
    """A valid code + PKCE request; ``extra`` overrides (None removes a parameter)."""
    _verifier, challenge = pkce_pair()
    params: dict[str, str | None] = {
        "response_type": "code", "client_id": client_id, "redirect_uri": REDIRECT,
        "scope": "openid profile email", "state": "st-" + secrets.token_urlsafe(8),
        "nonce": "n-" + secrets.token_urlsafe(8), "code_challenge": challenge,
        "code_challenge_method": "S256", **extra,
    }
    return {k: v for k, v in params.items() if v is not None}


def authorize_url(client_id: str, **extra: str | None) -> str:
    return f"{AUTHORIZE}?{urlencode(authorize_params(client_id, **extra))}"


def query_of(location: str) -> dict[str, str]:
    """The query of a redirect, one value per name (asserting there are no repeats)."""
    parsed = parse_qs(urlsplit(location).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in parsed.values()), parsed
    return {k: v[0] for k, v in parsed.items()}


def hidden_fields(page: str) -> dict[str, str]:
    out = {}
    for tag in re.findall(r"<input[^>]*>", page):
        if 'type="hidden"' in tag:
            name = re.search(r'name="([^"]*)"', tag)
            value = re.search(r'value="([^"]*)"', tag)
            if name is not None:
                out[html.unescape(name.group(1))] = html.unescape(value.group(1) if value else "")
    return out


async def login_form(http: httpx.AsyncClient, return_to: str | None = None) -> dict[str, str]:
    """Open the sign-in page (receiving the CSRF cookie); its hidden fields."""
    r = await http.get(LOGIN, params={"return_to": return_to} if return_to else None)
    assert r.status_code == 200, r.text
    return hidden_fields(r.text)


async def sign_in(http: httpx.AsyncClient, username: str = "alice", password: str = PASSWORD,
                  return_to: str | None = None, **headers: str) -> httpx.Response:
    """Fill in and submit the sign-in form as a browser on our origin would."""
    fields = await login_form(http, return_to)
    return await http.post(LOGIN, data={**fields, "username": username, "password": password},
                           headers={**SAME_ORIGIN, **headers})


def set_cookies(response: httpx.Response) -> dict[str, dict[str, Any]]:
    """Every Set-Cookie of a response: name -> {"value", and each attribute, lower-cased}."""
    out: dict[str, dict[str, Any]] = {}
    for raw in response.headers.get_list("set-cookie"):
        name, _, rest = raw.partition("=")
        value, *attrs = rest.split(";")
        entry: dict[str, Any] = {"value": value.strip().strip('"')}
        for attr in attrs:
            key, _, val = attr.strip().partition("=")
            entry[key.lower()] = val or True
        out[name.strip()] = entry
    return out


def cookie_header(**cookies: str) -> dict[str, str]:
    jar: SimpleCookie = SimpleCookie()
    for k, v in cookies.items():
        jar[k] = v
    return {"Cookie": "; ".join(f"{k}={m.value}" for k, m in jar.items())}


async def signed_in(http: httpx.AsyncClient, gate: AuthGate) -> str:
    """Sign alice in through the form; the SSO cookie value the browser now holds."""
    r = await sign_in(http)
    assert r.status_code == 303, r.text
    value = set_cookies(r)["agsso"]["value"]
    assert await gate.sso.get(value) is not None
    return str(value)
