"""Interoperability with an independent client not written by us: Authlib's OAuth2Client.

A real server (uvicorn on loopback, real SQLite store, wall clock) and Authlib
doing what a relying party does: code + PKCE login through our login form,
token exchange, ID-token validation against our discovery document and JWKS,
refresh, introspection and revocation.
"""

from __future__ import annotations

import asyncio
import html
import re
import secrets
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import jwt as pyjwt
import pytest
from authlib.integrations.httpx_client import OAuth2Client

from authgate.app import create_app
from authgate.config import Settings
from authgate.service import AuthGate

from ..live import free_port, serve
from ._fixtures import hidden_fields

REDIRECT = "https://rp.example/callback"


def form_action(page: str, base: str) -> str:
    m = re.search(r'<form[^>]*action="([^"]*)"', page)
    return urljoin(base, html.unescape(m.group(1))) if m else base


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A live authgate with user bob and confidential client rp; yields (base_url, client_secret)."""
    port = free_port()
    settings = Settings(public_url=f"http://127.0.0.1:{port}", store=f"sqlite:///{tmp_path}/a.db",
                        data_dir=str(tmp_path))

    async def setup() -> str:
        gate = await AuthGate.open(settings)  # keys.json in tmp_path, shared with the server
        try:
            await gate.accounts.add("bob", "bob's long password", email="bob@example.com")
            _c, secret = await gate.clients.add(
                "rp", redirect_uris=[REDIRECT], scopes=["openid", "profile", "email", "offline_access"])
        finally:
            await gate.close()
        assert secret
        return secret

    secret = asyncio.run(setup())
    with serve(create_app(settings), port) as base:
        yield base, secret


def login_through_form(base: str, authorize_url: str) -> str:
    """Follow the authorize redirect to our login page, submit it, return the callback URL."""
    with httpx.Client(base_url=base, follow_redirects=False) as browser:
        r = browser.get(authorize_url)
        for _ in range(5):
            if r.status_code not in (302, 303):
                break
            location = r.headers["location"]
            if location.startswith(REDIRECT):
                return location
            r = browser.get(urljoin(str(r.url), location))
        assert r.status_code == 200, r.text
        data = {**hidden_fields(r.text), "username": "bob", "password": "bob's long password"}
        r = browser.post(form_action(r.text, str(r.url)), data=data,
                         headers={"Origin": base, "Sec-Fetch-Site": "same-origin"})
        for _ in range(5):
            assert r.status_code in (302, 303), r.text
            location = r.headers["location"]
            if location.startswith(REDIRECT):
                return location
            r = browser.get(urljoin(str(r.url), location))
    raise AssertionError("login never reached the redirect URI")


def test_authlib_code_pkce_refresh_introspect_revoke(server: tuple[str, str]) -> None:
    """Authlib completes login with PKCE; our ID token validates with PyJWT; refresh, introspect, revoke."""
    base, secret = server
    meta = httpx.get(f"{base}/.auth/.well-known/openid-configuration").json()
    assert meta["issuer"] == f"{base}/.auth"
    jwks = pyjwt.PyJWKSet.from_dict(httpx.get(meta["jwks_uri"]).json())
    verifier = secrets.token_urlsafe(48)
    nonce = secrets.token_urlsafe(16)
    with OAuth2Client("rp", secret, scope="openid profile email offline_access",
                      redirect_uri=REDIRECT, code_challenge_method="S256",
                      token_endpoint_auth_method="client_secret_basic") as rp:
        url, state = rp.create_authorization_url(meta["authorization_endpoint"], code_verifier=verifier,
                                                 nonce=nonce)
        callback = login_through_form(base, url)
        params = parse_qs(urlsplit(callback).query)
        assert params["state"] == [state]
        assert params["iss"] == [meta["issuer"]]  # RFC 9207
        token = rp.fetch_token(meta["token_endpoint"], authorization_response=callback,
                               code_verifier=verifier)
        assert token["token_type"] == "Bearer" and "refresh_token" in token

        # Validated with PyJWT: an implementation independent of the joserfc we sign with.
        kid = pyjwt.get_unverified_header(token["id_token"])["kid"]
        claims = pyjwt.decode(token["id_token"], jwks[kid].key, algorithms=["ES256"],
                              audience="rp", issuer=meta["issuer"],
                              options={"require": ["exp", "iat", "sub", "nonce"]})
        assert claims["nonce"] == nonce and claims["preferred_username"] == "bob"

        info = rp.get(meta["userinfo_endpoint"]).json()
        assert info["sub"] == claims["sub"] and info["email"] == "bob@example.com"

        old_refresh = token["refresh_token"]
        new = rp.refresh_token(meta["token_endpoint"], refresh_token=old_refresh)
        assert new["refresh_token"] != old_refresh and new["access_token"] != token["access_token"]

        active = rp.introspect_token(meta["introspection_endpoint"], token=new["access_token"]).json()
        assert active["active"] is True and active["sub"] == claims["sub"]

        rp.revoke_token(meta["revocation_endpoint"], token=new["refresh_token"],
                        token_type_hint="refresh_token").raise_for_status()
        gone = rp.introspect_token(meta["introspection_endpoint"], token=new["access_token"]).json()
        assert gone == {"active": False}
        with pytest.raises(Exception, match="invalid_grant"):
            rp.refresh_token(meta["token_endpoint"], refresh_token=new["refresh_token"])
