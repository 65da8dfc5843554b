"""OAuth2Auth with httpx.Client from 50 threads, against authgate served over real HTTP (uvicorn)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from authgate.app import create_app
from authgate.client import EasyAuthClient, MemoryStorage, OAuth2Auth, TokenSet
from authgate.codes import CodeGrant
from authgate.config import Settings
from authgate.hashing import new_id
from authgate.oauth import pkce
from authgate.service import AuthGate

from ..live import free_port, serve
from .conftest import REDIRECT, SCOPE, VERIFIER, SyncWire

THREADS = 50


@dataclass
class Live:
    base: str
    secret: str
    tokens: dict[str, object]

    @property
    def token_endpoint(self) -> str:
        return f"{self.base}/.auth/oauth2/token"


@pytest.fixture
def live(tmp_path: Path) -> Iterator[Live]:
    """authgate on a loopback port (wall clock, SQLite) and a signed-in user's token response."""
    port = free_port()
    settings = Settings(public_url=f"http://127.0.0.1:{port}", store=f"sqlite:///{tmp_path}/a.db",
                        data_dir=str(tmp_path))

    async def setup() -> tuple[str, str]:
        gate = await AuthGate.open(settings)  # keys.json in tmp_path, shared with the server
        try:
            user = await gate.accounts.add("carol", "carol's long password")
            _c, secret = await gate.clients.add(
                "cli", redirect_uris=[REDIRECT], grant_types=["authorization_code", "refresh_token"],
                scopes=["openid", "profile", "offline_access", "api"])
            code = await gate.codes.issue(CodeGrant(
                client_id="cli", user_id=user.id, redirect_uri=REDIRECT, scope=SCOPE,
                family=new_id(), auth_time=gate.clock.now(), nonce=None,
                code_challenge=pkce.s256(VERIFIER), sid=None))
        finally:
            await gate.close()
        assert secret is not None
        return secret, code

    secret, code = asyncio.run(setup())
    with serve(create_app(settings), port) as base:
        r = httpx.post(f"{base}/.auth/oauth2/token", auth=("cli", secret), data={
            "grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT,
            "code_verifier": VERIFIER})
        assert r.status_code == 200, r.text
        yield Live(base, secret, r.json())


class Barrier(SyncWire):
    """Hold the first ``n`` API requests until all ``n`` are in flight, so all carry the old token."""

    def __init__(self, inner: httpx.BaseTransport, n: int) -> None:
        super().__init__(inner)
        self.barrier = threading.Barrier(n, timeout=20)
        self.held = 0
        self.guard = threading.Lock()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/userinfo"):
            with self.guard:
                self.held += 1
                wait = self.held <= self.barrier.parties
            if wait:
                self.barrier.wait()
        return super().handle_request(request)


def pooled() -> httpx.HTTPTransport:
    """A pool that keeps every connection the fan-out opens: httpcore closing surplus
    keep-alive connections while other threads still read on the pool raced into
    ``ReadError: [Errno 9] Bad file descriptor`` now and then (about 1 run in 20)."""
    return httpx.HTTPTransport(limits=httpx.Limits(max_connections=THREADS * 2,
                                                   max_keepalive_connections=THREADS * 2))


def fan_out(http: httpx.Client, url: str, auth: OAuth2Auth) -> list[int]:
    start = threading.Barrier(THREADS)

    def one(_: int) -> int:
        start.wait()
        return http.get(url, auth=auth).status_code

    with ThreadPoolExecutor(THREADS) as pool:
        return list(pool.map(one, range(THREADS)))


def test_fifty_threads_expired_token_one_refresh_over_http(live: Live) -> None:
    """Our clock says expired: 50 threads, one refresh request on the wire, 50 successes."""
    offset = [0.0]
    auth = OAuth2Auth(live.token_endpoint, "cli", live.secret, storage=MemoryStorage(),
                      tokens=TokenSet.from_response(live.tokens, now=time.time()),
                      clock=lambda: time.time() + offset[0])
    wire = SyncWire(pooled())
    with httpx.Client(transport=wire) as http:
        assert http.get(f"{live.base}/.auth/oauth2/userinfo", auth=auth).status_code == 200
        assert wire.refreshes() == []
        offset[0] = 3600.0 + 1
        statuses = fan_out(http, f"{live.base}/.auth/oauth2/userinfo", auth)
    assert statuses == [200] * THREADS
    assert len(wire.refreshes()) == 1
    assert wire.to("/.auth/oauth2/userinfo", 401) == []


def test_fifty_threads_all_refused_share_one_refresh_over_http(live: Live) -> None:
    """The server revoked the access token: 50 threads get 401, one refresh, 50 retries succeed."""
    auth = OAuth2Auth(live.token_endpoint, "cli", live.secret,
                      tokens=TokenSet.from_response(live.tokens, now=time.time()))
    r = httpx.post(f"{live.base}/.auth/oauth2/revoke", auth=("cli", live.secret),
                   data={"token": str(live.tokens["access_token"]), "token_type_hint": "access_token"})
    assert r.status_code == 200
    wire = Barrier(pooled(), THREADS)
    with httpx.Client(transport=wire) as http:
        statuses = fan_out(http, f"{live.base}/.auth/oauth2/userinfo", auth)
    assert statuses == [200] * THREADS
    assert len(wire.to("/.auth/oauth2/userinfo", 401)) == THREADS
    assert len(wire.refreshes()) == 1


def test_easy_auth_login_and_me_with_a_sync_client_over_http(live: Live) -> None:
    """EasyAuthClient's sync twins over real HTTP: login, then X-ZUMO-AUTH on requests."""
    easy = EasyAuthClient(live.base)
    with httpx.Client(base_url=live.base, auth=easy) as http:
        user_id = easy.login(http, "local", access_token=str(live.tokens["access_token"]))
        [me] = easy.me(http)
        assert me.user_id == user_id and me.provider_name == "local"
        assert http.get("/.auth/me").status_code == 200  # the client's own requests carry it too
    with httpx.Client(base_url=live.base) as anonymous:
        assert anonymous.get("/.auth/me").status_code == 401
