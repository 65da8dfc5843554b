"""The built-in sign-in page: CSRF, cross-site refusal, fixation, lockout, cookies, redirects."""

from __future__ import annotations

import os
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from authgate.app import create_app
from authgate.clock import FrozenClock
from authgate.config import Settings
from authgate.keystore import LocalKeys, new_sealing_key
from authgate.oauth.authorize import resume_url
from authgate.service import AuthGate
from authgate.web.login import safe_return_to

from ._fixtures import (
    LOGIN,
    PASSWORD,
    SAME_ORIGIN,
    add_user,
    authorize_url,
    cookie_header,
    login_form,
    set_cookies,
    sign_in,
    signed_in,
)

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; frame-ancestors 'none'"


def assert_page_headers(r: httpx.Response) -> None:
    assert r.headers["content-security-policy"] == CSP
    assert r.headers["x-frame-options"] == "DENY"
    assert r.headers["cache-control"] == "no-store"
    assert r.headers["referrer-policy"] == "no-referrer"
    assert r.headers["content-type"].startswith("text/html")


async def test_login_page_is_a_form_with_security_headers(http: httpx.AsyncClient) -> None:
    """GET shows username, password and hidden CSRF fields under a locked-down CSP."""
    r = await http.get(LOGIN)
    assert r.status_code == 200
    assert_page_headers(r)
    assert 'name="username"' in r.text
    assert 'type="password"' in r.text
    assert 'name="csrf_token"' in r.text
    assert "<script" not in r.text
    csrf = set_cookies(r)["agcsrf"]
    assert csrf["httponly"] is True
    assert csrf["samesite"].lower() == "strict"
    assert csrf["path"] == "/"
    assert "domain" not in csrf


async def test_form_action_admits_only_the_registered_redirect_origin(
        http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str]) -> None:
    """CSP form-action covers the redirects after the POST: the client's registered origin only."""
    r = await http.get(LOGIN, params={"return_to": authorize_url(conf[0])})
    assert r.headers["content-security-policy"] == CSP.replace(
        "form-action 'self'", "form-action 'self' https://app.example")
    await gate.clients.add("odd", redirect_uris=["https://app.example:99999/cb"])
    for foreign in (authorize_url("odd", redirect_uri="https://app.example:99999/cb"),
                    authorize_url(conf[0], redirect_uri="https://evil.example/cb"),
                    authorize_url("nobody", redirect_uri="https://evil.example/cb"),
                    authorize_url(conf[0], redirect_uri="https://a.example; script-src *")):
        r = await http.get(LOGIN, params={"return_to": foreign})
        assert r.status_code == 200
        assert r.headers["content-security-policy"] == CSP


@pytest.mark.parametrize("status_path", ["wrong", "locked", "csrf", "bad_return_to"])
async def test_every_error_page_has_security_headers(http: httpx.AsyncClient, gate: AuthGate,
                                                     status_path: str) -> None:
    """Failure answers are pages too and carry the same headers."""
    await add_user(gate)
    fields = await login_form(http)
    data = {**fields, "username": "alice", "password": "nope-nope"}
    if status_path == "csrf":
        data["csrf_token"] = "x" * 43
    if status_path == "bad_return_to":
        data["return_to"] = "https://evil.example/"
    if status_path == "locked":
        gate.settings.login.max_failures = 1
        await http.post(LOGIN, data=data, headers=SAME_ORIGIN)
    r = await http.post(LOGIN, data=data, headers=SAME_ORIGIN)
    expected = {"wrong": 401, "locked": 429, "csrf": 403, "bad_return_to": 400}[status_path]
    assert r.status_code == expected
    assert_page_headers(r)


async def test_successful_login_starts_a_session_with_safe_cookie(http: httpx.AsyncClient,
                                                                  gate: AuthGate) -> None:
    """303 to the account page, HttpOnly SameSite=Lax host-only cookie, audit event."""
    user = await add_user(gate)
    r = await sign_in(http)
    assert r.status_code == 303
    assert r.headers["location"] == LOGIN
    cookie = set_cookies(r)["agsso"]
    assert cookie["httponly"] is True
    assert cookie["samesite"].lower() == "lax"
    assert cookie["path"] == "/"
    assert "domain" not in cookie
    assert "secure" not in cookie  # http://localhost: a Secure cookie would never come back
    assert int(cookie["max-age"]) == int(gate.settings.login.sso_lifetime)
    session = await gate.sso.get(cookie["value"])
    assert session is not None
    assert session.user_id == user.id
    assert [e.event for e in await gate.audit.for_subject(user.id)] == ["login.succeeded"]
    page = await http.get(LOGIN)
    assert page.status_code == 200
    assert "Signed in as <strong>alice</strong>" in page.text


async def test_disabled_user_is_not_shown_as_signed_in(http: httpx.AsyncClient,
                                                       gate: AuthGate) -> None:
    user = await add_user(gate)
    await signed_in(http, gate)
    user.disabled = True
    await gate.accounts.save(user)
    page = await http.get(LOGIN)
    assert "Signed in as" not in page.text
    assert 'name="password"' in page.text


async def test_secure_public_url_uses_host_prefixed_secure_cookies(tmp_path: Path) -> None:
    """On https: __Host-agsso / __Host-agcsrf with Secure; an unprefixed cookie is ignored."""
    settings = Settings(public_url="https://auth.example", store=f"sqlite:///{tmp_path}/s.db",
                        data_dir=str(tmp_path))
    gate = await AuthGate.open(settings, clock=FrozenClock(),
                               local_keys=LocalKeys([new_sealing_key()], os.urandom(32)))
    try:
        await add_user(gate)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(gate=gate)),
                                     base_url="https://auth.example") as http:
            form = await http.get(LOGIN)
            assert set_cookies(form)["__Host-agcsrf"]["secure"] is True
            r = await sign_in(http, Origin="https://auth.example")
            assert r.status_code == 303, r.text
            cookie = set_cookies(r)["__Host-agsso"]
            assert cookie["secure"] is True
            assert cookie["httponly"] is True
            assert cookie["path"] == "/"
            assert "domain" not in cookie
            assert cookie["samesite"].lower() == "lax"
            # A cookie without the prefix could have been tossed in by a sibling host: ignored.
            tossed = await http.get(LOGIN, headers=cookie_header(agsso=cookie["value"]))
            assert "Signed in as" not in tossed.text
    finally:
        await gate.close()


@pytest.mark.parametrize("token", [None, "", "A" * 43, "forged-token"])
async def test_missing_or_wrong_csrf_token_is_403(http: httpx.AsyncClient, gate: AuthGate,
                                                  token: str | None) -> None:
    """Without the MAC of the CSRF cookie the password is not even checked."""
    await add_user(gate)
    fields = await login_form(http)
    data = {**fields, "username": "alice", "password": PASSWORD}
    if token is None:
        del data["csrf_token"]
    else:
        data["csrf_token"] = token
    r = await http.post(LOGIN, data=data, headers=SAME_ORIGIN)
    assert r.status_code == 403
    assert "agsso" not in set_cookies(r)


async def test_csrf_token_is_bound_to_its_cookie(http: httpx.AsyncClient, gate: AuthGate) -> None:
    """A token minted for one browser's cookie fails with another browser's cookie."""
    await add_user(gate)
    mine = await login_form(http)
    http.cookies.clear()
    await login_form(http)  # a different CSRF cookie now
    r = await http.post(LOGIN, data={**mine, "username": "alice", "password": PASSWORD},
                        headers=SAME_ORIGIN)
    assert r.status_code == 403


async def test_csrf_token_without_cookie_is_403(http: httpx.AsyncClient, gate: AuthGate) -> None:
    """The double submit needs both halves: the form token alone is refused."""
    await add_user(gate)
    fields = await login_form(http)
    http.cookies.clear()
    r = await http.post(LOGIN, data={**fields, "username": "alice", "password": PASSWORD},
                        headers=SAME_ORIGIN)
    assert r.status_code == 403


@pytest.mark.parametrize("headers", [
    {"Origin": "https://evil.example"},
    {"Origin": "null"},
    {"Origin": "http://localhost:8080"},
    {"Sec-Fetch-Site": "cross-site"},
    {"Sec-Fetch-Site": "same-site"},
    {"Origin": "http://localhost", "Sec-Fetch-Site": "cross-site"},
])
async def test_cross_site_post_is_403(http: httpx.AsyncClient, gate: AuthGate,
                                      headers: dict[str, str]) -> None:
    """A valid form with the right password is still refused when the browser says cross-site."""
    await add_user(gate)
    fields = await login_form(http)
    r = await http.post(LOGIN, data={**fields, "username": "alice", "password": PASSWORD},
                        headers=headers)
    assert r.status_code == 403
    assert "agsso" not in set_cookies(r)


async def test_post_without_fetch_metadata_but_with_csrf_token_works(http: httpx.AsyncClient,
                                                                     gate: AuthGate) -> None:
    """Older clients send neither header; the CSRF token alone then carries the check."""
    await add_user(gate)
    fields = await login_form(http)
    r = await http.post(LOGIN, data={**fields, "username": "alice", "password": PASSWORD})
    assert r.status_code == 303


async def test_wrong_password_and_unknown_user_answer_alike(http: httpx.AsyncClient,
                                                            gate: AuthGate) -> None:
    """401 with one generic message whether the account exists or not (no enumeration)."""
    await add_user(gate)
    wrong = await sign_in(http, password="not the password")
    unknown = await sign_in(http, username="nobody")
    for r in (wrong, unknown):
        assert r.status_code == 401
        assert "Wrong username or password." in r.text
        assert "agsso" not in set_cookies(r)


async def test_disabled_user_cannot_log_in(http: httpx.AsyncClient, gate: AuthGate) -> None:
    """The right password of a disabled account gets the same generic 401."""
    user = await add_user(gate)
    user.disabled = True
    await gate.accounts.save(user)
    r = await sign_in(http)
    assert r.status_code == 401
    assert "Wrong username or password." in r.text
    assert "agsso" not in set_cookies(r)


async def test_repeated_failures_lock_the_account(http: httpx.AsyncClient, gate: AuthGate,
                                                  clock: FrozenClock) -> None:
    """After max_failures wrong passwords even the right one gets 429 + Retry-After, for a while."""
    await add_user(gate)
    for _ in range(gate.settings.login.max_failures):
        assert (await sign_in(http, password="guess-guess")).status_code == 401
    r = await sign_in(http)
    assert r.status_code == 429
    assert r.headers["retry-after"] == str(int(gate.settings.login.lockout_base))
    assert "Too many failed attempts" in r.text
    assert "agsso" not in set_cookies(r)
    clock.advance(gate.settings.login.lockout_base + 1)
    assert (await sign_in(http)).status_code == 303


async def test_login_ends_the_planted_session_and_issues_a_new_one(http: httpx.AsyncClient,
                                                                   gate: AuthGate) -> None:
    """Fixation: a session cookie planted before login (even a real one) does not survive it."""
    alice = await add_user(gate)
    await add_user(gate, "mallory", email="m@example.com")
    planted = set_cookies(await sign_in(http, "mallory"))["agsso"]["value"]
    http.cookies.clear()
    fields = await login_form(http)
    http.cookies.set("agsso", planted)
    r = await http.post(LOGIN, data={**fields, "username": "alice", "password": PASSWORD},
                        headers=SAME_ORIGIN)
    fresh = set_cookies(r)["agsso"]["value"]
    assert fresh != planted
    assert await gate.sso.get(planted) is None
    session = await gate.sso.get(fresh)
    assert session is not None
    assert session.user_id == alice.id


async def test_never_issued_session_cookie_is_replaced(http: httpx.AsyncClient,
                                                       gate: AuthGate) -> None:
    """A made-up cookie value is not adopted as the session id."""
    await add_user(gate)
    made_up = "ags_" + "A" * 43
    http.cookies.set("agsso", made_up)
    r = await sign_in(http)
    assert set_cookies(r)["agsso"]["value"] != made_up
    assert await gate.sso.get(made_up) is None


async def test_login_returns_to_the_authorization_request(
        http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str]) -> None:
    """A relative authorize URL is where the browser goes next."""
    await add_user(gate)
    back = authorize_url(conf[0])
    fields = await login_form(http, back)
    assert fields["return_to"] == back
    r = await http.post(LOGIN, data={**fields, "username": "alice", "password": PASSWORD},
                        headers=SAME_ORIGIN)
    assert r.status_code == 303
    assert r.headers["location"] == back


OPEN_REDIRECTS = [
    "https://evil.example",
    "//evil.example",
    "/\\evil.example",
    "https:evil.example",
    "javascript:alert(1)",
    "%2F%2Fevil.example",
    "/.auth/oauth2/authorize/../../evil",
    "/.auth/oauth2/authorize@evil.example",
    "/.auth/oauth2/authorize?x=1#@evil.example",
    "/.auth/oauth2/authorize?\\@evil.example",
    "/.auth/account/login",
    "/somewhere/else",
]


@pytest.mark.parametrize("target", OPEN_REDIRECTS)
async def test_return_to_outside_the_authorize_endpoint_is_refused(
        http: httpx.AsyncClient, gate: AuthGate, target: str) -> None:
    """SECURITY.md 42: shown a 400 page on GET and on POST; never followed, no session."""
    await add_user(gate)
    r = await http.get(LOGIN, params={"return_to": target})
    assert r.status_code == 400
    assert "location" not in r.headers
    fields = await login_form(http)
    r = await http.post(LOGIN, data={**fields, "return_to": target, "username": "alice",
                                     "password": PASSWORD}, headers=SAME_ORIGIN)
    assert r.status_code == 400
    assert "location" not in r.headers
    assert "agsso" not in set_cookies(r)


# Parameter names and values as parse_form hands them over: UTF-8, no control characters.
_TEXT = st.text(st.characters(codec="utf-8", min_codepoint=0x20, exclude_characters="\x7f"),
                min_size=1)


@given(st.dictionaries(_TEXT, _TEXT, min_size=1))
def test_every_resumed_request_is_a_valid_return_to(params: dict[str, str]) -> None:
    """Whatever the authorization request held, the URL we resume it with passes the check."""
    assert safe_return_to(resume_url({**params, "client_id": "c"}))


@given(st.text())
def test_every_accepted_return_to_stays_on_the_authorize_path(value: str) -> None:
    """Nothing the check lets through can leave this origin's authorization endpoint."""
    if safe_return_to(value):
        parts = urlsplit(value)
        assert (parts.scheme, parts.netloc, parts.path) == ("", "", "/.auth/oauth2/authorize")
        assert "\\" not in value
        assert "#" not in value


async def test_percent_encoded_return_to_in_the_query_is_refused(http: httpx.AsyncClient) -> None:
    """``?return_to=%2F%2Fevil.example`` decodes to ``//evil.example``: refused."""
    r = await http.get(LOGIN + "?return_to=%2F%2Fevil.example")
    assert r.status_code == 400
    assert "location" not in r.headers


async def test_values_are_escaped_in_the_page(http: httpx.AsyncClient, gate: AuthGate) -> None:
    """A username full of markup comes back as text."""
    await add_user(gate)
    r = await sign_in(http, username='"><script>alert(1)</script>')
    assert r.status_code == 401
    assert "<script>" not in r.text
    assert "&lt;script&gt;" in r.text


async def test_repeated_parameters_are_refused(http: httpx.AsyncClient, gate: AuthGate) -> None:
    """Two passwords (or two of anything) make the request ambiguous: 400."""
    await add_user(gate)
    fields = await login_form(http)
    body = "&".join(f"{k}={v}" for k, v in fields.items())
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    r = await http.post(LOGIN, content=f"{body}&username=alice&password=a&password={PASSWORD}",
                        headers={**SAME_ORIGIN, **form})
    assert r.status_code == 400
    assert "agsso" not in set_cookies(r)


async def test_nothing_secret_is_logged(http: httpx.AsyncClient, gate: AuthGate,
                                        caplog: pytest.LogCaptureFixture) -> None:
    """Passwords, CSRF tokens and session cookies never reach the log."""
    caplog.set_level("DEBUG")
    await add_user(gate)
    await sign_in(http, password="wrong-password-123")
    fields = await login_form(http)
    cookie = await signed_in(http, gate)
    logged = caplog.text
    for secret in (PASSWORD, "wrong-password-123", fields["csrf_token"], cookie):
        assert secret not in logged
