"""The authorization endpoint: code flow, redirect URI matching, PKCE, scopes, prompt, max_age."""

from __future__ import annotations

import httpx
import pytest

from authgate.clock import FrozenClock
from authgate.service import AuthGate

from ._fixtures import (
    AUTHORIZE,
    LOGIN,
    PASSWORD,
    add_user,
    authorize_params,
    cookie_header,
    pkce_pair,
    query_of,
    set_cookies,
    sign_in,
    signed_in,
)
from .conftest import REDIRECT

ISSUER = "http://localhost/.auth"


def assert_error_page(r: httpx.Response) -> None:
    """Refused without a redirect: the browser stays with us (RFC 6749 §4.1.2.1)."""
    assert r.status_code == 400, r.text
    assert "location" not in r.headers
    assert r.headers["content-type"].startswith("text/html")
    assert r.headers["x-frame-options"] == "DENY"


def assert_error_redirect(r: httpx.Response, error: str, state: str | None) -> dict[str, str]:
    assert r.status_code == 303, r.text
    location = r.headers["location"]
    assert location.startswith(REDIRECT + "?")
    q = query_of(location)
    assert q["error"] == error
    assert q["iss"] == ISSUER
    assert "code" not in q
    assert q.get("state") == state
    return q


async def authorize(http: httpx.AsyncClient, client_id: str, **extra: str | None) -> httpx.Response:
    return await http.get(AUTHORIZE, params=authorize_params(client_id, **extra))


async def test_login_then_authorize_issues_a_code_bound_to_the_request(
        http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str]) -> None:
    """Full browser flow: authorize -> login page -> sign in -> back -> code with every binding."""
    user = await add_user(gate)
    _verifier, challenge = pkce_pair()
    params = authorize_params(conf[0], code_challenge=challenge, state="s/1 2&3", nonce="n-123")
    r = await http.get(AUTHORIZE, params=params)
    assert r.status_code == 303
    login = r.headers["location"]
    assert login.startswith(LOGIN + "?return_to=")
    return_to = query_of(login)["return_to"]
    assert return_to.startswith(AUTHORIZE + "?")
    assert query_of(return_to) == params

    page = await http.get(login)
    assert page.status_code == 200
    assert 'name="password"' in page.text
    r = await sign_in(http, return_to=return_to)
    assert r.status_code == 303
    assert r.headers["location"] == return_to
    session = await gate.sso.get(set_cookies(r)["agsso"]["value"])
    assert session is not None

    r = await http.get(return_to)
    assert r.status_code == 303
    assert r.headers["cache-control"] == "no-store"
    q = query_of(r.headers["location"])
    assert r.headers["location"].startswith(REDIRECT + "?")
    assert q["state"] == "s/1 2&3"
    assert q["iss"] == ISSUER
    found = await gate.codes.find(q["code"])
    assert found is not None
    grant, entry = found
    assert grant.client_id == conf[0]
    assert grant.user_id == user.id
    assert grant.redirect_uri == REDIRECT
    assert grant.scope == "openid profile email"
    assert grant.nonce == "n-123"
    assert grant.code_challenge == challenge
    assert grant.sid == session.sid
    assert grant.auth_time == session.auth_time
    assert grant.family
    assert entry.grant_id == grant.family
    assert entry.consumed_at is None


async def test_code_redeems_at_the_token_endpoint(http: httpx.AsyncClient, gate: AuthGate,
                                                  spa: str) -> None:
    """The code works with its verifier: the ID token carries our nonce, sid and the user."""
    user = await add_user(gate)
    await signed_in(http, gate)
    verifier, challenge = pkce_pair()
    r = await authorize(http, spa, code_challenge=challenge, nonce="nonce-xyz",
                        scope="openid profile")
    code = query_of(r.headers["location"])["code"]
    tok = await http.post("/.auth/oauth2/token", data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "client_id": spa, "code_verifier": verifier})
    assert tok.status_code == 200, tok.text
    _header, claims = gate.keys.verify(tok.json()["id_token"])
    assert claims["nonce"] == "nonce-xyz"
    assert claims["sub"] == user.id
    assert claims["aud"] == spa
    assert claims["sid"] == (await gate.sso.of_user(user.id))[0].sid


REDIRECT_VARIANTS = [
    REDIRECT + "?x=1",            # extra query
    REDIRECT + "/",               # trailing slash
    "https://APP.example/cb",     # case change (host)
    "HTTPS://app.example/cb",     # case change (scheme)
    "https://app.example/CB",     # case change (path)
    REDIRECT + "/more",           # path suffix
    REDIRECT + "x",
    "https://app.example@evil.example/cb",
    "https://evil.example@app.example/cb",
    "https://app.example:8443/cb",  # other port
    "https://app.example:443/cb",   # same port, other spelling
    REDIRECT + "#frag",           # fragment
    REDIRECT + "?",
    "https://app.example/cb/../cb",
    "https://app.example/%63b",
    "http://app.example/cb",
    "https://evil.example/cb",
    "//app.example/cb",
    " " + REDIRECT,
]


@pytest.mark.parametrize("redirect_uri", REDIRECT_VARIANTS)
async def test_redirect_uri_must_match_exactly(http: httpx.AsyncClient, conf: tuple[str, str],
                                               redirect_uri: str) -> None:
    """SECURITY.md 35: anything but the registered string gets an error page, never a redirect."""
    assert_error_page(await authorize(http, conf[0], redirect_uri=redirect_uri))
    # ...even when the rest of the request is also wrong and would otherwise redirect
    assert_error_page(await authorize(http, conf[0], redirect_uri=redirect_uri,
                                      response_type="token"))


@pytest.mark.parametrize("client_id", [None, "nobody", "../conf", "conf\u200b"])
async def test_unknown_or_missing_client_is_an_error_page(http: httpx.AsyncClient,
                                                          conf: tuple[str, str],
                                                          client_id: str | None) -> None:
    params = authorize_params(conf[0])
    del params["client_id"]
    if client_id is not None:
        params["client_id"] = client_id
    assert_error_page(await http.get(AUTHORIZE, params=params))


@pytest.mark.parametrize("name", ["client_id", "redirect_uri"])
async def test_repeated_client_or_redirect_is_an_error_page(
        http: httpx.AsyncClient, conf: tuple[str, str], name: str) -> None:
    """With two values we cannot know where the browser may be sent."""
    params = authorize_params(conf[0])
    query = httpx.QueryParams(params).add(name, "https://evil.example/cb" if name == "redirect_uri"
                                          else "other")
    assert_error_page(await http.get(AUTHORIZE, params=query))


@pytest.mark.parametrize("name", ["state", "scope", "response_type", "code_challenge", "nonce"])
async def test_other_repeated_parameters_are_invalid_request(
        http: httpx.AsyncClient, conf: tuple[str, str], name: str) -> None:
    params = authorize_params(conf[0])
    query = httpx.QueryParams(params).add(name, params[name])
    r = await http.get(AUTHORIZE, params=query)
    assert_error_redirect(r, "invalid_request", None if name == "state" else params["state"])


async def test_loopback_redirect_port_may_vary(http: httpx.AsyncClient, gate: AuthGate) -> None:
    """RFC 8252 §7.3: http://127.0.0.1 and [::1] match on any port; nothing else is relaxed."""
    await gate.clients.add("cli", public=True, redirect_uris=["http://127.0.0.1/cb",
                                                                  "http://[::1]:8080/v6"])
    for ok in ("http://127.0.0.1:53123/cb", "http://127.0.0.1/cb", "http://[::1]:1234/v6",
               "http://[::1]/v6"):
        r = await authorize(http, "cli", redirect_uri=ok, response_type="token")
        assert r.status_code == 303, ok
        assert r.headers["location"].startswith(ok + "?"), ok
    for bad in ("http://127.0.0.1:53123/cb/x", "http://localhost:53123/cb",
                "http://127.0.0.1:99999/cb", "http://127.0.0.1:53123@evil.example/cb",
                "https://127.0.0.1:53123/cb", "http://127.0.0.2:53123/cb",
                "http://127.0.0.1:53123/cb?x", "http://[::1]:1234/v6#x",
                "http://[::1]:1234/cb", "http://127.0.0.1:1234/v6"):
        assert_error_page(await authorize(http, "cli", redirect_uri=bad))


async def test_redirect_uri_may_be_omitted_only_when_one_is_registered(
        http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str]) -> None:
    r = await authorize(http, conf[0], redirect_uri=None, response_type="token")
    assert_error_redirect(r, "unsupported_response_type", r.request.url.params["state"])
    await gate.clients.add("two", redirect_uris=[REDIRECT, "https://app.example/other"])
    assert_error_page(await authorize(http, "two", redirect_uri=None))


async def test_registered_query_is_kept(http: httpx.AsyncClient, gate: AuthGate) -> None:
    """RFC 6749 §3.1.2: the response adds to a registered query instead of replacing it."""
    await gate.clients.add("tenant", redirect_uris=["https://app.example/cb?tenant=7"])
    await add_user(gate)
    await signed_in(http, gate)
    r = await authorize(http, "tenant", redirect_uri="https://app.example/cb?tenant=7")
    location = r.headers["location"]
    assert location.startswith("https://app.example/cb?tenant=7&code=")
    assert query_of(location)["tenant"] == "7"


@pytest.mark.parametrize(("response_type", "error"), [
    ("token", "unsupported_response_type"),
    ("id_token", "unsupported_response_type"),
    ("code id_token", "unsupported_response_type"),
    (None, "invalid_request"),
])
async def test_only_the_code_flow_is_offered(http: httpx.AsyncClient, conf: tuple[str, str],
                                             response_type: str | None, error: str) -> None:
    r = await authorize(http, conf[0], response_type=response_type, state="keep-me")
    assert_error_redirect(r, error, "keep-me")


async def test_public_client_needs_pkce(http: httpx.AsyncClient, spa: str) -> None:
    """SECURITY.md 37: no challenge -> invalid_request."""
    r = await authorize(http, spa, code_challenge=None, code_challenge_method=None)
    assert_error_redirect(r, "invalid_request", r.request.url.params["state"])


@pytest.mark.parametrize(("challenge", "method"), [
    ("x" * 43, "plain"), ("x" * 43, None), ("x" * 43, "s256"), ("short", "S256"),
    (None, "S256"),
])
async def test_only_s256_challenges_are_accepted(http: httpx.AsyncClient, spa: str,
                                                 conf: tuple[str, str], challenge: str | None,
                                                 method: str | None) -> None:
    """SECURITY.md 37: plain (or a missing method, which means plain) is refused for everyone."""
    for client_id in (spa, conf[0]):
        r = await authorize(http, client_id, code_challenge=challenge, code_challenge_method=method)
        assert_error_redirect(r, "invalid_request", r.request.url.params["state"])


async def test_confidential_client_may_skip_pkce(http: httpx.AsyncClient, gate: AuthGate,
                                                 conf: tuple[str, str]) -> None:
    await add_user(gate)
    await signed_in(http, gate)
    r = await authorize(http, conf[0], code_challenge=None, code_challenge_method=None)
    found = await gate.codes.find(query_of(r.headers["location"])["code"])
    assert found is not None
    assert found[0].code_challenge is None


@pytest.mark.parametrize("scope", ["openid admin", "openid  bogus", "api2", None, ""])
async def test_unknown_or_missing_scope_is_invalid_scope(http: httpx.AsyncClient,
                                                         conf: tuple[str, str],
                                                         scope: str | None) -> None:
    r = await authorize(http, conf[0], scope=scope)
    assert_error_redirect(r, "invalid_scope", r.request.url.params["state"])


async def test_scope_is_cut_to_what_the_client_may_have(http: httpx.AsyncClient, gate: AuthGate,
                                                        spa: str) -> None:
    """The spa client has no email scope: asking for it grants the rest (RFC 6749 §3.3)."""
    await add_user(gate)
    await signed_in(http, gate)
    r = await authorize(http, spa, scope="openid email openid api")
    found = await gate.codes.find(query_of(r.headers["location"])["code"])
    assert found is not None
    assert found[0].scope == "openid api"
    r = await authorize(http, spa, scope="email")
    assert_error_redirect(r, "invalid_scope", r.request.url.params["state"])


async def test_prompt_none_without_session_is_login_required(http: httpx.AsyncClient,
                                                             conf: tuple[str, str]) -> None:
    r = await authorize(http, conf[0], prompt="none", state="silent")
    assert_error_redirect(r, "login_required", "silent")


async def test_prompt_none_with_session_issues_a_code_silently(http: httpx.AsyncClient,
                                                               gate: AuthGate,
                                                               conf: tuple[str, str]) -> None:
    await add_user(gate)
    await signed_in(http, gate)
    r = await authorize(http, conf[0], prompt="none", state="silent")
    q = query_of(r.headers["location"])
    assert "error" not in q
    assert q["state"] == "silent"
    assert await gate.codes.find(q["code"]) is not None


@pytest.mark.parametrize("prompt", ["none login", "bogus", "none consent"])
async def test_bad_prompt_is_invalid_request(http: httpx.AsyncClient, conf: tuple[str, str],
                                             prompt: str) -> None:
    r = await authorize(http, conf[0], prompt=prompt)
    assert_error_redirect(r, "invalid_request", r.request.url.params["state"])


async def test_prompt_login_forces_a_new_session(http: httpx.AsyncClient, gate: AuthGate,
                                                 conf: tuple[str, str]) -> None:
    """Re-authentication ends the old session; the code carries the new sid; no loop."""
    await add_user(gate)
    old = await signed_in(http, gate)
    old_session = await gate.sso.get(old)
    assert old_session is not None
    r = await authorize(http, conf[0], prompt="login")
    assert r.headers["location"].startswith(LOGIN + "?")
    return_to = query_of(r.headers["location"])["return_to"]
    assert "prompt" not in query_of(return_to)
    page = await http.get(r.headers["location"])
    assert 'name="password"' in page.text  # the form, not "signed in as"
    r = await sign_in(http, return_to=return_to)
    new = set_cookies(r)["agsso"]["value"]
    assert new != old
    assert await gate.sso.get(old) is None
    r = await http.get(return_to)
    found = await gate.codes.find(query_of(r.headers["location"])["code"])
    new_session = await gate.sso.get(new)
    assert found is not None
    assert new_session is not None
    assert found[0].sid == new_session.sid != old_session.sid


async def test_max_age(http: httpx.AsyncClient, gate: AuthGate, clock: FrozenClock,
                       conf: tuple[str, str]) -> None:
    """Within max_age the session is used; beyond it the user signs in again (or login_required)."""
    await add_user(gate)
    await signed_in(http, gate)
    clock.advance(100)
    r = await authorize(http, conf[0], max_age="300")
    assert "code" in query_of(r.headers["location"])
    r = await authorize(http, conf[0], max_age="60")
    assert r.headers["location"].startswith(LOGIN + "?")
    assert "max_age" not in query_of(query_of(r.headers["location"])["return_to"])
    r = await authorize(http, conf[0], max_age="60", prompt="none")
    assert_error_redirect(r, "login_required", r.request.url.params["state"])
    r = await authorize(http, conf[0], max_age="0")
    assert r.headers["location"].startswith(LOGIN + "?")
    r = await authorize(http, conf[0], max_age="-1")
    assert_error_redirect(r, "invalid_request", r.request.url.params["state"])


async def test_without_session_the_browser_is_sent_to_login(http: httpx.AsyncClient,
                                                            conf: tuple[str, str]) -> None:
    r = await authorize(http, conf[0])
    assert r.status_code == 303
    return_to = query_of(r.headers["location"])["return_to"]
    assert return_to.startswith("/.auth/oauth2/authorize?")
    assert (await http.get(LOGIN, params={"return_to": return_to})).status_code == 200


async def test_expired_or_forged_sessions_do_not_count(
        http: httpx.AsyncClient, gate: AuthGate, clock: FrozenClock, conf: tuple[str, str]) -> None:
    await add_user(gate)
    cookie = await signed_in(http, gate)
    clock.advance(gate.settings.login.sso_lifetime + 1)
    r = await authorize(http, conf[0], prompt="none")
    assert_error_redirect(r, "login_required", r.request.url.params["state"])
    forged = await http.get(AUTHORIZE, params=authorize_params(conf[0], prompt="none"),
                            headers=cookie_header(agsso=cookie + "x"))
    assert query_of(forged.headers["location"])["error"] == "login_required"


async def test_disabled_user_session_is_not_used(http: httpx.AsyncClient, gate: AuthGate,
                                                 conf: tuple[str, str]) -> None:
    user = await add_user(gate)
    await signed_in(http, gate)
    user.disabled = True
    await gate.accounts.save(user)
    r = await authorize(http, conf[0], prompt="none")
    assert_error_redirect(r, "login_required", r.request.url.params["state"])


async def test_post_authorization_request(http: httpx.AsyncClient, gate: AuthGate,
                                          conf: tuple[str, str]) -> None:
    """OIDC Core §3.1.2.1: the same request as a form POST; login resumes it as a GET."""
    r = await http.post(AUTHORIZE, data=authorize_params(conf[0], state="posted"))
    assert r.status_code == 303
    return_to = query_of(r.headers["location"])["return_to"]
    assert query_of(return_to)["state"] == "posted"
    await add_user(gate)
    await signed_in(http, gate)
    r = await http.post(AUTHORIZE, data=authorize_params(conf[0], state="posted"))
    assert query_of(r.headers["location"])["state"] == "posted"
    bad = await http.post(AUTHORIZE, json=authorize_params(conf[0]))
    assert_error_page(bad)


async def test_codes_and_cookies_are_never_logged(http: httpx.AsyncClient, gate: AuthGate,
                                                  conf: tuple[str, str],
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    await add_user(gate)
    cookie = await signed_in(http, gate)
    r = await authorize(http, conf[0])
    code = query_of(r.headers["location"])["code"]
    await authorize(http, conf[0], scope="nope")
    for secret in (code, cookie, PASSWORD):
        assert secret not in caplog.text
