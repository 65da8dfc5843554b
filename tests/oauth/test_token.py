"""The token endpoint over HTTP: grants, client authentication and bad input (RFC 6749 §3.2, §5)."""

from __future__ import annotations

import base64

import httpx
import pytest

from authgate.accounts import User
from authgate.service import AuthGate

from .conftest import REDIRECT, VERIFIER, basic, introspect, issue_code, login_tokens

TOKEN = "/.auth/oauth2/token"


async def test_client_credentials_issues_rfc9068_access_token(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str]
) -> None:
    """client_credentials gives a typed at+jwt whose subject is the client, no refresh token."""
    r = await http.post(TOKEN, headers=basic(*conf), data={"grant_type": "client_credentials", "scope": "api"})
    assert r.status_code == 200
    assert r.headers["cache-control"] == "no-store"
    body = r.json()
    assert body["token_type"] == "Bearer" and body["scope"] == "api" and body["expires_in"] == 3600
    assert "refresh_token" not in body
    header, claims = gate.keys.verify(body["access_token"])
    assert header["typ"] == "at+jwt" and header["alg"] == "ES256" and header["kid"]
    for claim in ("iss", "exp", "aud", "sub", "client_id", "iat", "jti"):
        assert claim in claims
    assert claims["sub"] == conf[0] and claims["iss"] == "http://localhost/.auth"


async def test_client_secret_post_is_accepted(http: httpx.AsyncClient, conf: tuple[str, str]) -> None:
    """Secrets in the body (client_secret_post) authenticate too."""
    r = await http.post(TOKEN, data={"grant_type": "client_credentials", "client_id": conf[0],
                                     "client_secret": conf[1]})
    assert r.status_code == 200


@pytest.mark.parametrize("secret", ["wrong", "", "agcs_" + "A" * 43])
async def test_wrong_secret_is_invalid_client_with_challenge(
    http: httpx.AsyncClient, conf: tuple[str, str], secret: str
) -> None:
    """A bad secret over Basic is 401 invalid_client with WWW-Authenticate (SECURITY 20)."""
    r = await http.post(TOKEN, headers=basic(conf[0], secret), data={"grant_type": "client_credentials"})
    assert r.status_code == 401
    assert r.json()["error"] == "invalid_client"
    assert r.headers["www-authenticate"].startswith("Basic")


async def test_no_client_auth_is_invalid_client(http: httpx.AsyncClient, conf: tuple[str, str]) -> None:
    """No credentials at all is invalid_client."""
    r = await http.post(TOKEN, data={"grant_type": "client_credentials"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_body_client_id_differing_from_basic_is_invalid_request(
    http: httpx.AsyncClient, conf: tuple[str, str]
) -> None:
    """Body client_id != Basic client id is invalid_request (SECURITY 28)."""
    r = await http.post(TOKEN, headers=basic(*conf), data={"grant_type": "client_credentials",
                                                             "client_id": "someone-else"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_two_auth_methods_is_invalid_request(http: httpx.AsyncClient, conf: tuple[str, str]) -> None:
    """Basic plus client_secret in the body is refused."""
    r = await http.post(TOKEN, headers=basic(*conf), data={"grant_type": "client_credentials",
                                                             "client_secret": conf[1]})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


@pytest.mark.parametrize(("body", "ctype", "status", "error"), [
    (b"grant_type=client_credentials&grant_type=client_credentials", None, 400, "invalid_request"),
    (b"grant_type=client_credentials&scope=api&scope=api", None, 400, "invalid_request"),
    (b'{"grant_type": "client_credentials"}', "application/json", 400, "invalid_request"),
    (b"grant_type=client%ZZcredentials", None, 400, "invalid_request"),
    (b"grant_type=client%", None, 400, "invalid_request"),
    (b"grant_type=client_credentials&scope=a%00b", None, 400, "invalid_request"),
    (b"grant_type=client_credentials&scope=a%0d%0aSet-Cookie:x", None, 400, "invalid_request"),
    (b"grant_type=client_credentials&scope=%ed%a0%80", None, 400, "invalid_request"),
    (b"grant_type=client_credentials&scope=%ff%fe", None, 400, "invalid_request"),
    (b"grant_type=password&username=a&password=b", None, 400, "unsupported_grant_type"),
    (b"grant_type=implicit", None, 400, "unsupported_grant_type"),
    (b"scope=api", None, 400, "invalid_request"),
    (b"grant_type=", None, 400, "invalid_request"),
    (b"", None, 400, "invalid_request"),
    (b"grant_type=client_credentials&scope=" + b"a" * 5000, None, 400, "invalid_request"),
    (b"grant_type=client_credentials&x=" + b"a" * (1024 * 1024), None, 413, "invalid_request"),
])
async def test_bad_bodies_get_rfc_errors_never_500(
    http: httpx.AsyncClient, conf: tuple[str, str], body: bytes, ctype: str | None, status: int, error: str
) -> None:
    """Malformed, duplicated, oversized or hostile bodies get a 4xx with an RFC code (SECURITY 27-30)."""
    headers = {**basic(*conf), "content-type": ctype or "application/x-www-form-urlencoded"}
    r = await http.post(TOKEN, headers=headers, content=body)
    assert r.status_code == status, r.text
    assert r.json()["error"] == error
    assert "\r" not in r.text and "\n" not in r.json().get("error_description", "")


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE"])
async def test_token_endpoint_is_post_only(http: httpx.AsyncClient, method: str) -> None:
    """GET and friends are 405 with an Allow header."""
    r = await http.request(method, TOKEN)
    assert r.status_code == 405
    assert r.headers["allow"] == "POST"


async def test_authorization_code_grant_full_response(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """A code with PKCE and offline_access yields access, ID and refresh tokens."""
    body = await login_tokens(http, gate, conf, alice)
    assert body["refresh_token"].startswith("agr_") and len(body["refresh_token"]) >= 4 + 43
    _h, idc = gate.keys.verify(body["id_token"])
    assert idc["aud"] == conf[0] and idc["sub"] == alice.id and idc["nonce"] == "n-1"
    assert idc["iss"] == "http://localhost/.auth" and "at_hash" in idc
    assert (await introspect(http, conf, body["access_token"]))["active"] is True


async def test_no_refresh_token_without_offline_access(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """Refresh tokens are issued only when offline_access was granted."""
    body = await login_tokens(http, gate, conf, alice, scope="openid profile")
    assert "refresh_token" not in body


async def test_code_replay_revokes_tokens_issued_from_it(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """Second use of a code fails and kills the first access and refresh token (SECURITY 33)."""
    code, _ = await issue_code(gate, conf[0], alice)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER}
    first = (await http.post(TOKEN, headers=basic(*conf), data=data)).json()
    again = await http.post(TOKEN, headers=basic(*conf), data=data)
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert await introspect(http, conf, first["access_token"]) == {"active": False}
    assert await introspect(http, conf, first["refresh_token"]) == {"active": False}


async def test_invalid_code_replay_revokes_nothing(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """A replay that fails PKCE is refused without revoking the legitimate tokens."""
    code, _ = await issue_code(gate, conf[0], alice)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER}
    first = (await http.post(TOKEN, headers=basic(*conf), data=data)).json()
    bad = await http.post(TOKEN, headers=basic(*conf), data={**data, "code_verifier": "x" * 43})
    assert bad.json()["error"] == "invalid_grant"
    assert (await introspect(http, conf, first["access_token"]))["active"] is True


@pytest.mark.parametrize(("change", "error"), [
    ({"redirect_uri": REDIRECT + "/"}, "invalid_grant"),
    ({"redirect_uri": REDIRECT + "?x=1"}, "invalid_grant"),
    ({"redirect_uri": REDIRECT.upper()}, "invalid_grant"),
    ({"redirect_uri": None}, "invalid_grant"),
    ({"code_verifier": None}, "invalid_grant"),
    ({"code_verifier": "w" * 43}, "invalid_grant"),
    ({"code_verifier": "short"}, "invalid_grant"),
    ({"code": "agc_" + "A" * 43}, "invalid_grant"),
    ({"code": "not-a-code"}, "invalid_grant"),
    ({"code": None}, "invalid_request"),
])
async def test_code_exchange_checks(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User,
    change: dict[str, str | None], error: str
) -> None:
    """redirect_uri must match exactly; PKCE verifier required and right (SECURITY 36, 38)."""
    code, _ = await issue_code(gate, conf[0], alice)
    data: dict[str, str | None] = {"grant_type": "authorization_code", "code": code,
                                   "redirect_uri": REDIRECT, "code_verifier": VERIFIER, **change}
    r = await http.post(TOKEN, headers=basic(*conf), data={k: v for k, v in data.items() if v is not None})
    assert r.status_code == 400 and r.json()["error"] == error


async def test_verifier_without_challenge_is_downgrade(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], alice: User
) -> None:
    """A code_verifier for a code issued without a challenge is invalid_request (SECURITY 38)."""
    code, _ = await issue_code(gate, conf[0], alice, verifier=None)
    r = await http.post(TOKEN, headers=basic(*conf), data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
        "code_verifier": VERIFIER})
    assert r.status_code == 400 and r.json()["error"] == "invalid_request"


async def test_code_of_another_client_and_expired_code(
    http: httpx.AsyncClient, gate: AuthGate, conf: tuple[str, str], spa: str, alice: User,
    clock: object
) -> None:
    """Another client's code and an expired code are invalid_grant (SECURITY 34)."""
    code, _ = await issue_code(gate, spa, alice)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER}
    r = await http.post(TOKEN, headers=basic(*conf), data=data)
    assert r.json()["error"] == "invalid_grant"
    ok = await http.post(TOKEN, data={**data, "client_id": spa})
    assert ok.status_code == 200  # the rightful client is unaffected
    code2, _ = await issue_code(gate, conf[0], alice)
    gate.clock.advance(61)  # type: ignore[attr-defined]
    r = await http.post(TOKEN, headers=basic(*conf), data={**data, "code": code2})
    assert r.json()["error"] == "invalid_grant"


async def test_public_client_cannot_use_client_credentials(http: httpx.AsyncClient, spa: str) -> None:
    """Public clients have no credentials to present."""
    r = await http.post(TOKEN, data={"grant_type": "client_credentials", "client_id": spa})
    assert r.status_code == 400 and r.json()["error"] == "unauthorized_client"


async def test_client_credentials_scope_escalation(http: httpx.AsyncClient, conf: tuple[str, str]) -> None:
    """Asking for a scope the client lacks is invalid_scope."""
    r = await http.post(TOKEN, headers=basic(*conf), data={"grant_type": "client_credentials",
                                                             "scope": "api admin"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_scope"


async def test_non_basic_authorization_scheme(http: httpx.AsyncClient, conf: tuple[str, str]) -> None:
    """Bearer or garbage in Authorization at the token endpoint is invalid_client."""
    for value in ("Bearer abc", "Basic !!!", "Basic " + base64.b64encode(b"nocolon").decode()):
        r = await http.post(TOKEN, headers={"Authorization": value}, data={"grant_type": "client_credentials"})
        assert r.status_code == 401 and r.json()["error"] == "invalid_client"


async def test_secret_guessing_is_throttled(http: httpx.AsyncClient, conf: tuple[str, str]) -> None:
    """After 20 failed client authentications in a minute, even the right secret waits (SECURITY 32)."""
    for _ in range(20):
        r = await http.post(TOKEN, headers=basic(conf[0], "guess"), data={"grant_type": "client_credentials"})
        assert r.status_code == 401
    r = await http.post(TOKEN, headers=basic(*conf), data={"grant_type": "client_credentials"})
    assert r.status_code == 429 and r.json()["error"] == "slow_down" and "retry-after" in r.headers
