"""The oidc-provider peer behaves as the upstream IdP the other tests assume."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import secrets
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from .oidc_provider import (
    _native_problem,
    _npm_env,
    authorize_url,
    client,
    install,
    mint_refresh_tokens,
    running,
    scripted_login,
    scripted_login_async,
    start,
    stop,
)

pytestmark = pytest.mark.node

RP = "authgate-test"
RP_SECRET = secrets.token_urlsafe(32)
SERVICE = "service"
SERVICE_SECRET = secrets.token_urlsafe(32)
CALLBACK = "http://127.0.0.1:9/callback"  # never followed: the login stops at the redirect


@pytest.fixture(scope="module")
def issuer() -> Iterator[str]:
    config = {
        "clients": [
            client(RP, RP_SECRET, redirect_uris=[CALLBACK]),
            client(SERVICE, SERVICE_SECRET, grant_types=["client_credentials"],
                   scope="api:read"),
        ],
        "scopes": ["api:read"],
        "testApi": True,
    }
    with running(config) as url:
        yield url


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30.0) as c:
        yield c


def _discover(http: httpx.Client, issuer: str) -> dict[str, Any]:
    response = http.get(f"{issuer}/.well-known/openid-configuration")
    assert response.status_code == 200
    meta: dict[str, Any] = response.json()
    return meta


def _refresh(http: httpx.Client, issuer: str, token: str) -> httpx.Response:
    return http.post(_discover(http, issuer)["token_endpoint"], auth=(RP, RP_SECRET),
                     data={"grant_type": "refresh_token", "refresh_token": token})


def _login_for_refresh_token(http: httpx.Client, issuer: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest())
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    url = authorize_url(issuer, RP, CALLBACK, scope="openid email offline_access",
                        prompt="consent", state=state, nonce=nonce,
                        code_challenge=challenge.rstrip(b"=").decode(),
                        code_challenge_method="S256")
    final = scripted_login(url, login="alice")
    assert final.startswith(CALLBACK)
    query = parse_qs(urlsplit(final).query)
    assert query["state"] == [state]
    assert "code" in query, final
    response = http.post(_discover(http, issuer)["token_endpoint"], auth=(RP, RP_SECRET), data={
        "grant_type": "authorization_code", "code": query["code"][0],
        "redirect_uri": CALLBACK, "code_verifier": verifier})
    assert response.status_code == 200, response.text
    tokens = response.json()
    assert {"access_token", "id_token", "refresh_token"} <= tokens.keys()
    assert "offline_access" in tokens["scope"].split()
    refresh: str = tokens["refresh_token"]
    return refresh


def test_discovery_advertises_what_authgate_relies_on(issuer: str, http: httpx.Client) -> None:
    """Discovery names the issuer, PKCE S256 and every endpoint the tests use."""
    meta = _discover(http, issuer)
    assert meta["issuer"] == issuer
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert {"authorization_code", "refresh_token", "client_credentials"} <= set(
        meta["grant_types_supported"])
    for endpoint in ("authorization_endpoint", "token_endpoint", "jwks_uri",
                     "introspection_endpoint", "revocation_endpoint", "userinfo_endpoint"):
        assert meta[endpoint].startswith(issuer)
    assert http.get(meta["jwks_uri"]).json()["keys"]


def test_client_credentials_token_is_introspectable(issuer: str, http: httpx.Client) -> None:
    """A confidential client gets an access token that introspection reports active."""
    meta = _discover(http, issuer)
    response = http.post(meta["token_endpoint"], auth=(SERVICE, SERVICE_SECRET),
                         data={"grant_type": "client_credentials", "scope": "api:read"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == "api:read"
    info = http.post(meta["introspection_endpoint"], auth=(SERVICE, SERVICE_SECRET),
                     data={"token": body["access_token"]}).json()
    assert info["active"] is True
    assert info["client_id"] == SERVICE


def test_client_credentials_rejects_a_wrong_secret(issuer: str, http: httpx.Client) -> None:
    """A wrong client secret is invalid_client."""
    response = http.post(_discover(http, issuer)["token_endpoint"], auth=(SERVICE, "wrong"),
                         data={"grant_type": "client_credentials"})
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


def test_scripted_login_refresh_and_revocation(issuer: str, http: httpx.Client) -> None:
    """Login without a browser, refresh (rotating), then revocation kills the token."""
    first = _login_for_refresh_token(http, issuer)
    refreshed = _refresh(http, issuer, first)
    assert refreshed.status_code == 200, refreshed.text
    second = refreshed.json()["refresh_token"]
    assert second != first  # rotated
    revoked = http.post(_discover(http, issuer)["revocation_endpoint"], auth=(RP, RP_SECRET),
                        data={"token": second, "token_type_hint": "refresh_token"})
    assert revoked.status_code == 200
    after = _refresh(http, issuer, second)
    assert after.status_code == 400
    assert after.json()["error"] == "invalid_grant"


def test_reuse_of_a_rotated_refresh_token_is_invalid_grant(issuer: str,
                                                          http: httpx.Client) -> None:
    """Presenting a rotated refresh token again fails and revokes its successor."""
    first = _login_for_refresh_token(http, issuer)
    second = _refresh(http, issuer, first).json()["refresh_token"]
    assert _refresh(http, issuer, first).json()["error"] == "invalid_grant"
    assert _refresh(http, issuer, second).json()["error"] == "invalid_grant"


def test_minted_refresh_tokens_are_independent(issuer: str, http: httpx.Client) -> None:
    """The test API mints refresh tokens of separate grants (benchmark pools)."""
    a, b = mint_refresh_tokens(issuer, RP, 2)
    assert _refresh(http, issuer, a).status_code == 200
    assert _refresh(http, issuer, a).status_code == 400  # reuse revokes a's grant only
    assert _refresh(http, issuer, b).status_code == 200


async def test_async_scripted_login_returns_code_and_state(issuer: str) -> None:
    """The async variant drives the same forms to the same redirect."""
    url = authorize_url(issuer, RP, CALLBACK, scope="openid", state="s-123")
    final = await scripted_login_async(url, login="bob")
    query = parse_qs(urlsplit(final).query)
    assert final.startswith(CALLBACK)
    assert query["state"] == ["s-123"]
    assert query["code"]


# --- the "sqlite" adapter: persisted in SQLite, the benchmark's persistent-style reference ---

def _sqlite_config(path: Path | None) -> dict[str, Any]:
    config: dict[str, Any] = {"clients": [client(RP, RP_SECRET, redirect_uris=[CALLBACK])],
                              "adapter": "sqlite", "rotateRefreshToken": True, "testApi": True}
    if path is not None:
        config["sqlitePath"] = str(path)
    return config


def _refresh_error(http: httpx.Client, issuer: str, token: str) -> str:
    response = _refresh(http, issuer, token)
    assert response.status_code == 400, response.text
    error: str = response.json()["error"]
    return error


def test_sqlite_adapter_rotates_detects_reuse_and_persists_across_restart(
        tmp_path: Path, http: httpx.Client) -> None:
    """Rotation, reuse detection and revocation live in the SQLite file: a new peer on it
    honours them all and refreshes the newest token of an untouched grant."""
    db = tmp_path / "peer.db"
    peer = start(_sqlite_config(db))
    try:
        reused, kept = mint_refresh_tokens(peer.issuer, RP, 2)
        refreshed = _refresh(http, peer.issuer, reused)
        assert refreshed.status_code == 200, refreshed.text
        successor = refreshed.json()["refresh_token"]
        assert successor != reused
        assert _refresh_error(http, peer.issuer, reused) == "invalid_grant"
        assert _refresh_error(http, peer.issuer, successor) == "invalid_grant"  # grant revoked
        refreshed = _refresh(http, peer.issuer, kept)
        assert refreshed.status_code == 200, refreshed.text
        latest = refreshed.json()["refresh_token"]
    finally:
        stop(peer)

    with contextlib.closing(sqlite3.connect(db)) as conn:  # the peer closed it: WAL merged
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        rows = dict(conn.execute("SELECT id, payload FROM oidc_payload WHERE model = ?",
                                 ("RefreshToken",)).fetchall())
    assert latest in rows and kept in rows and reused not in rows and successor not in rows
    assert isinstance(json.loads(rows[kept])["consumed"], int)
    assert "consumed" not in json.loads(rows[latest])

    peer = start(_sqlite_config(db))
    try:
        assert _refresh_error(http, peer.issuer, successor) == "invalid_grant"
        refreshed = _refresh(http, peer.issuer, latest)
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["refresh_token"] not in (latest, kept)
        assert refreshed.json()["id_token"]
        # Last, as reuse revokes the grant: the consumed mark was read back from the file.
        assert _refresh_error(http, peer.issuer, kept) == "invalid_grant"
    finally:
        stop(peer)


def test_sqlite_adapter_refuses_unknown_refresh_tokens(tmp_path: Path, http: httpx.Client,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ``sqlitePath`` the database is a fresh temporary file, removed on exit;
    a token it never stored is invalid_grant."""
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    peer = start(_sqlite_config(None))
    try:
        (made,) = tmp_path.glob("oidc-peer-sqlite-*/oidc-provider.db")
        for bogus in ("not-a-refresh-token", secrets.token_urlsafe(32)):
            assert _refresh_error(http, peer.issuer, bogus) == "invalid_grant"
        (token,) = mint_refresh_tokens(peer.issuer, RP, 1)
        assert _refresh(http, peer.issuer, token).status_code == 200
    finally:
        stop(peer)
    assert not made.parent.exists()


def test_npm_builds_against_the_headers_of_the_node_it_runs(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """node-gyp is pointed at ``<prefix>/include/node`` when it exists; a value set is kept."""
    for name in ("npm_config_nodedir", "NPM_CONFIG_NODEDIR"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "node").touch()
    assert "npm_config_nodedir" not in _npm_env(str(tmp_path / "bin" / "node"))
    (tmp_path / "include" / "node").mkdir(parents=True)
    (tmp_path / "include" / "node" / "node.h").touch()
    assert _npm_env(str(tmp_path / "bin" / "node"))["npm_config_nodedir"] == str(tmp_path)
    monkeypatch.setenv("NPM_CONFIG_NODEDIR", "/elsewhere")
    env = _npm_env(str(tmp_path / "bin" / "node"))
    assert "npm_config_nodedir" not in env and env["NPM_CONFIG_NODEDIR"] == "/elsewhere"


def test_install_checks_that_better_sqlite3_loads(tmp_path: Path) -> None:
    """The installed peer loads better-sqlite3's native module; a project without it is
    reported with the reason (install() then fails instead of the sqlite adapter later)."""
    node = shutil.which("node")
    assert node is not None
    assert _native_problem(node, install(), {}) == ""
    problem = _native_problem(node, tmp_path, {"npm_config_nodedir": "/nowhere"})
    assert "better-sqlite3" in problem and "Cannot find module" in problem
    assert "npm_config_nodedir=/nowhere" in problem
