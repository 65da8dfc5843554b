"""RP-initiated logout: session ended server-side, redirect rules, hints, cross-site refusal."""

from __future__ import annotations

import httpx
import pytest

from authgate.accounts import User
from authgate.clock import FrozenClock
from authgate.id_tokens import mint_id_token
from authgate.service import AuthGate

from ._fixtures import (
    AUTHORIZE,
    LOGOUT,
    SAME_ORIGIN,
    add_user,
    authorize_params,
    cookie_header,
    hidden_fields,
    query_of,
    set_cookies,
    signed_in,
)
from .conftest import REDIRECT

RP = "rp"
BYE = "https://app.example/bye"


@pytest.fixture
async def rp(gate: AuthGate) -> str:
    await gate.clients.add(RP, redirect_uris=[REDIRECT], post_logout_redirect_uris=[BYE])
    return RP


def id_token(gate: AuthGate, user: User, *, client_id: str = RP, issuer: str | None = None,
             issued_at: float | None = None) -> str:
    return mint_id_token(gate.keys, issuer=issuer or gate.settings.issuer, user=user,
                         client_id=client_id, scopes=["openid"],
                         now=gate.clock.now() if issued_at is None else issued_at,
                         lifetime=300, auth_time=gate.clock.now(), nonce=None, sid=None,
                         access_token=None)


def assert_cookie_cleared(r: httpx.Response) -> None:
    cookie = set_cookies(r)["agsso"]
    assert cookie["value"] == ""
    assert cookie["max-age"] == "0"
    assert cookie["path"] == "/"


async def assert_signed_out(http: httpx.AsyncClient, gate: AuthGate, cookie: str) -> None:
    """SECURITY.md 46: the old cookie replayed after logout is worth nothing."""
    assert await gate.sso.get(cookie) is None
    replay = cookie_header(agsso=cookie)
    silent = await http.get(AUTHORIZE, params=authorize_params("conf", prompt="none"),
                            headers=replay)
    assert query_of(silent.headers["location"])["error"] == "login_required"
    r = await http.get(AUTHORIZE, params=authorize_params("conf"), headers=replay)
    assert r.headers["location"].startswith("/.auth/account/login?")


async def test_logout_with_hint_ends_the_session_and_redirects(
        http: httpx.AsyncClient, gate: AuthGate, rp: str, conf: tuple[str, str]) -> None:
    user = await add_user(gate)
    cookie = await signed_in(http, gate)
    r = await http.get(LOGOUT, params={"id_token_hint": id_token(gate, user),
                                       "post_logout_redirect_uri": BYE, "state": "bye-1"})
    assert r.status_code == 303
    assert r.headers["location"] == BYE + "?state=bye-1"
    assert_cookie_cleared(r)
    await assert_signed_out(http, gate, cookie)
    events = sorted(e.event for e in await gate.audit.for_subject(user.id))
    assert events == ["login.succeeded", "logout"]


async def test_expired_hint_is_still_a_good_hint(http: httpx.AsyncClient, gate: AuthGate,
                                                 rp: str, clock: FrozenClock) -> None:
    """RP-Initiated Logout §2: the hint may have expired; signature and iss are what count."""
    user = await add_user(gate)
    cookie = await signed_in(http, gate)
    hint = id_token(gate, user, issued_at=clock.now() - 3000)
    r = await http.get(LOGOUT, params={"id_token_hint": hint, "post_logout_redirect_uri": BYE})
    assert r.status_code == 303
    assert r.headers["location"] == BYE
    assert await gate.sso.get(cookie) is None


async def test_registered_redirect_uri_is_also_a_logout_target(http: httpx.AsyncClient,
                                                               gate: AuthGate, rp: str) -> None:
    await add_user(gate)
    await signed_in(http, gate)
    r = await http.get(LOGOUT, params={"client_id": rp, "post_logout_redirect_uri": REDIRECT})
    assert r.status_code == 200  # no hint: the user is asked first
    fields = hidden_fields(r.text)
    assert fields == {"client_id": rp, "post_logout_redirect_uri": REDIRECT}
    r = await http.post(LOGOUT, data=fields, headers=SAME_ORIGIN)
    assert r.status_code == 303
    assert r.headers["location"] == REDIRECT


@pytest.mark.parametrize("target", [
    "https://evil.example", "//evil.example", "/\\evil.example", "https:evil.example",
    "javascript:alert(1)", BYE + "/", BYE + "?x=1", "https://APP.example/bye", "/local/path",
])
async def test_unregistered_post_logout_redirect_is_refused(
        http: httpx.AsyncClient, gate: AuthGate, rp: str, target: str) -> None:
    """SECURITY.md 42: a 400 page, never a redirect -- and the session is left alone."""
    user = await add_user(gate)
    cookie = await signed_in(http, gate)
    for params in ({"client_id": rp, "post_logout_redirect_uri": target},
                   {"id_token_hint": id_token(gate, user), "post_logout_redirect_uri": target}):
        r = await http.get(LOGOUT, params=params)
        assert r.status_code == 400
        assert "location" not in r.headers
    assert await gate.sso.get(cookie) is not None


async def test_redirect_needs_a_known_client(http: httpx.AsyncClient, gate: AuthGate,
                                             rp: str) -> None:
    for params in ({"post_logout_redirect_uri": BYE},
                   {"client_id": "nobody", "post_logout_redirect_uri": BYE}):
        r = await http.get(LOGOUT, params=params)
        assert r.status_code == 400
        assert "location" not in r.headers


async def test_client_id_must_agree_with_the_hint(http: httpx.AsyncClient, gate: AuthGate,
                                                  rp: str, conf: tuple[str, str]) -> None:
    user = await add_user(gate)
    r = await http.get(LOGOUT, params={"id_token_hint": id_token(gate, user, client_id=conf[0]),
                                       "client_id": rp, "post_logout_redirect_uri": BYE})
    assert r.status_code == 400
    assert "location" not in r.headers


async def test_hints_we_did_not_issue_are_refused(http: httpx.AsyncClient, gate: AuthGate,
                                                  rp: str) -> None:
    """Another issuer, a tampered signature, an access token or junk: 400, session untouched."""
    user = await add_user(gate)
    cookie = await signed_in(http, gate)
    good = id_token(gate, user)
    head, body, sig = good.split(".")
    access, _claims = gate.access.mint(sub=user.id, client_id=rp, scope="openid")
    for hint in (id_token(gate, user, issuer="https://other.example/.auth"),
                 f"{head}.{body}.{sig[:-4]}AAAA", access, "not-a-jwt"):
        r = await http.get(LOGOUT, params={"id_token_hint": hint, "post_logout_redirect_uri": BYE})
        assert r.status_code == 400
        assert "location" not in r.headers
    assert await gate.sso.get(cookie) is not None


async def test_get_without_hint_asks_before_signing_out(http: httpx.AsyncClient,
                                                        gate: AuthGate, rp: str) -> None:
    """A bare GET could be forged by any site (logout CSRF): confirm with a same-origin POST."""
    await add_user(gate)
    cookie = await signed_in(http, gate)
    r = await http.get(LOGOUT, params={"client_id": rp, "post_logout_redirect_uri": BYE,
                                       "state": "s1"})
    assert r.status_code == 200
    assert "agsso" not in set_cookies(r)
    assert await gate.sso.get(cookie) is not None
    assert r.headers["x-frame-options"] == "DENY"
    assert (await http.head(LOGOUT)).status_code == 200
    assert await gate.sso.get(cookie) is not None  # HEAD is a GET without a body: asks too
    r = await http.post(LOGOUT, data=hidden_fields(r.text), headers=SAME_ORIGIN)
    assert r.status_code == 303
    assert r.headers["location"] == BYE + "?state=s1"
    assert_cookie_cleared(r)
    assert await gate.sso.get(cookie) is None


async def test_hint_for_another_user_asks_first(http: httpx.AsyncClient, gate: AuthGate,
                                                rp: str) -> None:
    await add_user(gate)
    bob = await add_user(gate, "bob", email="bob@example.com")
    cookie = await signed_in(http, gate)
    r = await http.get(LOGOUT, params={"id_token_hint": id_token(gate, bob)})
    assert r.status_code == 200
    assert "Do you want to sign out?" in r.text
    assert await gate.sso.get(cookie) is not None


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Origin": "null", "Sec-Fetch-Site": "cross-site"},
])
async def test_cross_site_post_is_refused(http: httpx.AsyncClient, gate: AuthGate,
                                          headers: dict[str, str]) -> None:
    """SECURITY.md 47: 403 and the session lives on."""
    await add_user(gate)
    cookie = await signed_in(http, gate)
    r = await http.post(LOGOUT, data={}, headers=headers)
    assert r.status_code == 403
    assert await gate.sso.get(cookie) is not None


async def test_same_origin_post_signs_out(http: httpx.AsyncClient, gate: AuthGate,
                                          conf: tuple[str, str]) -> None:
    """The "Sign out" button of the account page."""
    await add_user(gate)
    cookie = await signed_in(http, gate)
    r = await http.post(LOGOUT, headers=SAME_ORIGIN)
    assert r.status_code == 200
    assert "You have been signed out." in r.text
    assert_cookie_cleared(r)
    await assert_signed_out(http, gate, cookie)


async def test_logout_without_session_is_a_plain_page(http: httpx.AsyncClient) -> None:
    r = await http.get(LOGOUT)
    assert r.status_code == 200
    assert "signed out" in r.text
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["content-security-policy"].startswith("default-src 'none'")


async def test_repeated_parameters_are_refused(http: httpx.AsyncClient, gate: AuthGate,
                                               rp: str) -> None:
    r = await http.get(LOGOUT + f"?client_id={rp}&post_logout_redirect_uri={BYE}"
                                f"&post_logout_redirect_uri=https://evil.example")
    assert r.status_code == 400
    assert "location" not in r.headers


async def test_logout_revokes_refresh_tokens_of_that_session(
        http: httpx.AsyncClient, gate: AuthGate, rp: str, conf: tuple[str, str]) -> None:
    """SECURITY.md: logout revokes the grants made in the session; other sessions keep theirs."""
    from authgate.codes import CodeGrant
    from authgate.hashing import new_id

    from .conftest import VERIFIER, pkce, refresh

    user = await add_user(gate)
    cookie = await signed_in(http, gate)
    session = await gate.sso.get(cookie)
    assert session is not None
    tokens = []
    for sid in (session.sid, "another-session"):
        code = await gate.codes.issue(CodeGrant(
            client_id=conf[0], user_id=user.id, redirect_uri=REDIRECT, scope="openid offline_access",
            family=new_id(), auth_time=gate.clock.now(), code_challenge=pkce.s256(VERIFIER), sid=sid))
        r = await http.post("/.auth/oauth2/token", auth=conf, data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER})
        tokens.append(r.json()["refresh_token"])
    r = await http.get(LOGOUT, params={"id_token_hint": id_token(gate, user)})
    assert r.status_code == 200
    assert (await refresh(http, conf, tokens[0])).json()["error"] == "invalid_grant"
    assert (await refresh(http, conf, tokens[1])).status_code == 200
