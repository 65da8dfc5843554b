"""The reverse proxy over real HTTP: authgate under uvicorn in front of an echo app under uvicorn."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from authgate.gateway.headers import NAME_TYP, ROLE_TYP

from . import _proxy_fixtures as fx
from ._proxy_fixtures import FakeIdP, Start, header_values

# The shared fixtures (module attributes, so pytest finds them here).
echo_upstream, idp, idp_server, start = fx.echo_upstream, fx.idp, fx.idp_server, fx.start

BROWSER = {"Accept": "text/html,application/xhtml+xml,*/*;q=0.8"}
API = {"Accept": "application/json"}

SPOOFED = [
    ("X-MS-CLIENT-PRINCIPAL", "eyJhdXRoX3R5cCI6ImV2aWwifQ=="),
    ("x-ms-client-principal-id", "admin"),
    ("X-Ms-Client-Principal-Name", "root"),
    ("X_MS_CLIENT_PRINCIPAL_IDP", "aad"),
    ("x_ms_client_principal", "forged"),
    ("X-MS-TOKEN-AAD-ACCESS-TOKEN", "stolen"),
    ("x_ms_token_aad_access_token", "stolen2"),
    ("X-MS-TOKEN-CORP-ACCESS-TOKEN", "forged-corp"),
    ("X-MS-TOKEN-CORP-ACCESS-TOKEN", "forged-corp-twice"),
    ("x-ms-token-corp-refresh-token", "forged-rt"),
]


def _identity_headers(echoed: dict[str, Any]) -> list[tuple[str, str]]:
    return [(k, v) for k, v in echoed["headers"]
            if k.lower().replace("_", "-").startswith(("x-ms-client-principal", "x-ms-token-"))]


async def _get(url: str, path: str, **kw: Any) -> httpx.Response:
    async with httpx.AsyncClient(base_url=url, timeout=30) as c:
        return await c.get(path, **kw)


# -- proxying ------------------------------------------------------------------------------


async def test_get_reaches_the_app_with_method_path_and_query(start: Start) -> None:
    """A GET is relayed with its path (percent-encoding kept) and query."""
    env = await start(unauthenticated_action="allow")
    r = await _get(env.url, "/a%20b/c?x=1&y=%2F")
    assert r.status_code == 200
    echoed = r.json()
    assert (echoed["method"], echoed["raw_path"], echoed["query"]) == ("GET", "/a%20b/c", "x=1&y=%2F")
    assert _identity_headers(echoed) == []


async def test_ten_megabytes_stream_both_ways(start: Start) -> None:
    """A 10 MB request body and a 10 MB response body pass through intact."""
    env = await start(unauthenticated_action="allow", max_body_bytes=16 * 1024 * 1024)
    payload = os.urandom(10 * 1024 * 1024)

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(payload), 256 * 1024):
            yield payload[i:i + 256 * 1024]

    async with httpx.AsyncClient(base_url=env.url, timeout=60) as c:
        r = await c.post("/mirror", content=body())
        assert r.status_code == 200
        assert hashlib.sha256(r.content).digest() == hashlib.sha256(payload).digest()
        r = await c.get("/download", params={"n": str(10 * 1024 * 1024)})
        assert r.status_code == 200 and len(r.content) == 10 * 1024 * 1024


async def test_bodies_are_streamed_not_buffered(start: Start) -> None:
    """Pieces of a body reach the other side as they come, not all at the end."""
    env = await start(unauthenticated_action="allow")

    async def slow_body() -> AsyncIterator[bytes]:
        yield b"a" * 1000
        await asyncio.sleep(0.6)
        yield b"b" * 1000

    async with httpx.AsyncClient(base_url=env.url, timeout=30) as c:
        arrivals = (await c.post("/arrivals", content=slow_body())).json()
        assert len(arrivals) >= 2 and arrivals[-1][0] >= 0.4
        loop = asyncio.get_running_loop()
        async with c.stream("GET", "/drip") as r:
            began = loop.time()
            chunks = r.aiter_raw()
            assert await anext(chunks) == b"first;"
            assert loop.time() - began < 0.8
            assert b"".join([c async for c in chunks]) == b"second"


async def test_hop_by_hop_headers_are_dropped_both_ways(start: Start) -> None:
    """RFC 7230 §6.1: Connection and what it names, Keep-Alive, Proxy-*, TE never pass."""
    env = await start(unauthenticated_action="allow")
    async with httpx.AsyncClient(base_url=env.url) as c:
        r = await c.get("/echo", headers={
            "Connection": "keep-alive, X-Private", "X-Private": "secret", "Keep-Alive": "timeout=5",
            "Proxy-Authorization": "Basic Zm9vOmJhcg==", "TE": "trailers", "X-End-To-End": "kept"})
        names = {k.lower() for k, _ in r.json()["headers"]}
        assert "x-end-to-end" in names
        assert not names & {"x-private", "keep-alive", "proxy-authorization", "te"}
        r = await c.get("/hop")
        assert r.headers["x-kept"] == "yes"
        for gone in ("x-secret-hop", "proxy-authenticate", "trailer"):
            assert gone not in r.headers
        assert r.headers.get("keep-alive") != "timeout=99"


async def test_forwarded_headers_from_an_untrusted_peer_are_replaced(start: Start) -> None:
    """SECURITY.md 50: spoofed X-Forwarded-* / Forwarded / X-Real-IP never reach the app."""
    env = await start(unauthenticated_action="allow")
    r = await _get(env.url, "/echo", headers={
        "X-Forwarded-For": "6.6.6.6", "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "evil.example", "Forwarded": "for=6.6.6.6", "X-Real-IP": "6.6.6.6"})
    echoed = r.json()
    host = env.url.removeprefix("http://")
    assert header_values(echoed, "x-forwarded-for") == ["127.0.0.1"]
    assert header_values(echoed, "x-forwarded-proto") == ["http"]
    assert header_values(echoed, "x-forwarded-host") == [host]
    assert header_values(echoed, "forwarded") == [f'for=127.0.0.1;proto=http;host="{host}"']
    assert header_values(echoed, "x-real-ip") == []


async def test_forwarded_headers_from_a_trusted_proxy_are_extended(start: Start) -> None:
    """From a configured trusted proxy the chain is kept and our hop appended."""
    env = await start(unauthenticated_action="allow", trusted_proxies=["127.0.0.0/8"])
    r = await _get(env.url, "/echo", headers={
        "X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": "app.example.com", "Forwarded": "for=203.0.113.7"})
    echoed = r.json()
    assert header_values(echoed, "x-forwarded-for") == ["203.0.113.7, 127.0.0.1"]
    assert header_values(echoed, "x-forwarded-proto") == ["https"]
    assert header_values(echoed, "x-forwarded-host") == ["app.example.com"]
    assert header_values(echoed, "forwarded")[0].startswith("for=203.0.113.7, for=127.0.0.1;")


async def test_body_over_the_limit_is_refused_413(start: Start) -> None:
    """Too long by Content-Length, or by a chunked stream that keeps going: 413."""
    env = await start(unauthenticated_action="allow", max_body_bytes=100_000)

    async def endless() -> AsyncIterator[bytes]:
        for _ in range(50):
            yield b"x" * 10_000

    async with httpx.AsyncClient(base_url=env.url, timeout=30) as c:
        r = await c.post("/echo", content=b"x" * 100_001)
        assert r.status_code == 413 and r.json()["error"] == "request_too_large"
        r = await c.post("/echo", content=endless())
        assert r.status_code == 413
        assert (await c.post("/echo", content=b"x" * 100_000)).json()["body_len"] == 100_000


async def test_oversized_headers_are_refused_431(start: Start) -> None:
    """SECURITY.md 52: a header section over 16 KB is refused before anything else."""
    env = await start(unauthenticated_action="allow")
    r = await _get(env.url, "/echo", headers={"X-Big": "a" * 17_000})
    assert r.status_code == 431


async def test_an_unexpected_failure_is_a_json_500_without_details(
        start: Start, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    """The proxied path answers its own errors like the rest of authgate: JSON, no details."""
    from authgate.gateway.policy import Policy

    async def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("secret internals")

    env = await start(unauthenticated_action="allow")
    monkeypatch.setattr(Policy, "authenticate_credentials", broken)
    r = await _get(env.url, "/echo")
    assert r.status_code == 500
    assert r.json() == {"error": "server_error", "error_description": "internal error"}
    assert "secret internals" not in r.text
    assert any("unhandled error on GET /echo" in rec.getMessage() for rec in caplog.records)


async def test_upstream_down_is_502_and_slow_upstream_504(start: Start) -> None:
    """Unreachable app: 502 JSON; an app slower than upstream_timeout: 504 JSON."""
    env = await start(upstream="http://127.0.0.1:9", unauthenticated_action="allow")
    r = await _get(env.url, "/anything")
    assert r.status_code == 502 and r.json()["error"] == "bad_gateway"
    env = await start(unauthenticated_action="allow", upstream_timeout=0.3)
    r = await _get(env.url, "/slow", params={"s": "1.2"})
    assert r.status_code == 504 and r.json()["error"] == "upstream_timeout"


async def test_upstream_cookies_are_not_shared_between_clients(start: Start) -> None:
    """The pool keeps no cookie jar: one user's Set-Cookie never rides on another's request."""
    env = await start(unauthenticated_action="allow")
    first = await _get(env.url, "/set-cookie", params={"v": "alice-secret"})
    assert "upstream_secret=alice-secret" in first.headers["set-cookie"]
    second = await _get(env.url, "/set-cookie")
    assert second.json()["cookie"] is None


# -- identity ------------------------------------------------------------------------------


async def test_identity_headers_arrive_and_decode(start: Start) -> None:
    """X-MS-CLIENT-PRINCIPAL (base64 JSON), -ID, -NAME, -IDP and the provider's tokens."""
    env = await start()
    cookie = await env.sign_in(claims=[("email", "alice@example.com"), (ROLE_TYP, "admin")],
                               tokens=env.tokens(expires_in=3600))
    echoed = (await _get(env.url, "/echo", headers=cookie)).json()
    principal = json.loads(base64.b64decode(header_values(echoed, "x-ms-client-principal")[0]))
    assert principal["auth_typ"] == "corp"
    assert principal["name_typ"] == NAME_TYP and principal["role_typ"] == ROLE_TYP
    assert {"typ": ROLE_TYP, "val": "admin"} in principal["claims"]
    assert {"typ": NAME_TYP, "val": "Alice"} in principal["claims"]
    assert header_values(echoed, "x-ms-client-principal-id") == ["u-1"]
    assert header_values(echoed, "x-ms-client-principal-name") == ["Alice"]
    assert header_values(echoed, "x-ms-client-principal-idp") == ["corp"]
    assert header_values(echoed, "x-ms-token-corp-access-token") == ["at-1"]
    assert header_values(echoed, "x-ms-token-corp-id-token") == ["idt-1"]
    assert header_values(echoed, "x-ms-token-corp-refresh-token") == ["rt-1"]
    expected = env.clock.now() + 3600
    from authgate.gateway.provider_tokens import format_expires_on

    assert header_values(echoed, "x-ms-token-corp-expires-on") == [format_expires_on(expected)]
    assert all(h not in (n for n, _ in echoed["headers"]) for h in ("cookie",)), \
        "authgate's session cookie is not handed to the app"


@pytest.mark.parametrize("mode", ["anonymous", "excluded", "authenticated"])
async def test_spoofed_identity_headers_never_arrive(start: Start, mode: str) -> None:
    """SECURITY.md 48: every spelling, underscores and duplicates are stripped, always."""
    env = await start(unauthenticated_action="allow" if mode == "anonymous" else "401",
                      excluded_paths=["/public"])
    headers = httpx.Headers(SPOOFED)
    if mode == "authenticated":
        headers.update(await env.sign_in(tokens=env.tokens()))
    echoed = (await _get(env.url, "/public/x" if mode == "excluded" else "/echo",
                         headers=headers)).json()
    seen = _identity_headers(echoed)
    if mode != "authenticated":
        assert seen == []
        return
    assert sorted(k for k, _ in seen) == sorted([
        "x-ms-client-principal", "x-ms-client-principal-id", "x-ms-client-principal-name",
        "x-ms-client-principal-idp", "x-ms-token-corp-access-token", "x-ms-token-corp-id-token",
        "x-ms-token-corp-refresh-token", "x-ms-token-corp-expires-on"])
    values = dict(seen)
    assert values["x-ms-client-principal-id"] == "u-1"
    assert values["x-ms-token-corp-access-token"] == "at-1"
    assert all(v not in dict(SPOOFED).values() for v in values.values())


async def test_inject_headers_switches(start: Start) -> None:
    """gateway.inject_headers picks headers one by one; token_headers=false drops all tokens."""
    env = await start(inject_headers=["access_token"])
    cookie = await env.sign_in(tokens=env.tokens())
    names = [k for k, _ in _identity_headers((await _get(env.url, "/e", headers=cookie)).json())]
    assert names == ["x-ms-token-corp-access-token"]
    env = await start(token_headers=False)
    cookie = await env.sign_in(tokens=env.tokens())
    names = [k for k, _ in _identity_headers((await _get(env.url, "/e", headers=cookie)).json())]
    assert "x-ms-client-principal" in names and not any("token" in n for n in names)


async def test_tokens_near_expiry_are_refreshed_before_injection(start: Start, idp: FakeIdP) -> None:
    """An access token inside refresh_skew is refreshed at the provider, then passed on."""
    env = await start(refresh_skew=300)
    cookie = await env.sign_in(tokens=env.tokens(expires_in=60))
    echoed = (await _get(env.url, "/echo", headers=cookie)).json()
    assert idp.refreshes == ["rt-1"]
    assert header_values(echoed, "x-ms-token-corp-access-token") == ["fresh-access-1"]
    echoed = (await _get(env.url, "/echo", headers=cookie)).json()
    assert len(idp.refreshes) == 1, "fresh tokens are not refreshed again"
    assert header_values(echoed, "x-ms-token-corp-refresh-token") == ["fresh-refresh-1"]


async def test_concurrent_requests_share_one_refresh(start: Start, idp: FakeIdP) -> None:
    """100 parallel proxied requests with an expired token: one refresh at the provider."""
    env = await start(refresh_skew=300)
    cookie = await env.sign_in(tokens=env.tokens(expires_in=-1))
    async with httpx.AsyncClient(base_url=env.url, timeout=60) as c:
        replies = await asyncio.gather(*(c.get("/echo", headers=cookie) for _ in range(100)))
    assert idp.refreshes == ["rt-1"]
    assert {header_values(r.json(), "x-ms-token-corp-access-token")[0] for r in replies} == {
        "fresh-access-1"}


async def test_failed_refresh_injects_nothing_stale(start: Start, idp: FakeIdP) -> None:
    """The provider refuses the refresh: expired tokens are left out, valid ones still pass."""
    idp.refuse = True
    env = await start(refresh_skew=300)
    expired = await env.sign_in(user_id="u-1", tokens=env.tokens(user_id="u-1", expires_in=-10))
    r = await _get(env.url, "/echo", headers=expired)
    assert r.status_code == 200
    names = [k for k, _ in _identity_headers(r.json())]
    assert "x-ms-client-principal-id" in names
    assert not [n for n in names if n.startswith("x-ms-token-")]
    expiring = await env.sign_in(user_id="u-2", tokens=env.tokens(user_id="u-2", expires_in=60))
    r = await _get(env.url, "/echo", headers=expiring)
    assert idp.refreshes == ["rt-1", "rt-1"], "both were due, both refusals were asked"
    assert header_values(r.json(), "x-ms-token-corp-access-token") == ["at-1"]


async def test_session_token_in_x_zumo_auth_authenticates(start: Start) -> None:
    """X-ZUMO-AUTH carries a session token; a forged one is refused with invalid_token."""
    env = await start(unauthenticated_action="401")
    token = await env.session_token(user_id="u-9", name="Zed")
    r = await _get(env.url, "/echo", headers={"X-ZUMO-AUTH": token})
    assert header_values(r.json(), "x-ms-client-principal-id") == ["u-9"]
    r = await _get(env.url, "/echo", headers={"X-ZUMO-AUTH": token[:-4] + "AAAA"})
    assert r.status_code == 401
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


# -- unauthenticated_action and exclusions ---------------------------------------------------


async def test_redirect_sends_browsers_to_login_and_api_clients_401(start: Start) -> None:
    """Browsers go to the default provider's login, coming back to the page; APIs get 401."""
    env = await start(unauthenticated_action="redirect")
    r = await _get(env.url, "/app/page?tab=2", headers=BROWSER)
    assert r.status_code == 302
    assert r.headers["location"] == (
        "/.auth/login/corp?post_login_redirect_uri=%2Fapp%2Fpage%3Ftab%3D2")
    for headers in (API, {**BROWSER, "X-Requested-With": "XMLHttpRequest"},
                    {**BROWSER, "Sec-Fetch-Mode": "cors"}, {}):
        r = await _get(env.url, "/app/page", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["www-authenticate"].startswith("Bearer")
        assert r.json()["error"] == "unauthorized"


@pytest.mark.parametrize(("action", "status"), [("allow", 200), ("401", 401), ("403", 403)])
async def test_unauthenticated_action(start: Start, action: str, status: int) -> None:
    """allow passes anonymously; 401 and 403 refuse browsers and APIs alike."""
    env = await start(unauthenticated_action=action)
    for headers in (BROWSER, API):
        assert (await _get(env.url, "/x", headers=headers)).status_code == status


async def test_excluded_paths_pass_anonymously_but_only_canonical_ones(start: Start) -> None:
    """Exact prefixes and globs pass; /healthz, dot segments and encoded slashes do not."""
    env = await start(unauthenticated_action="401", excluded_paths=["/health", "/pub/*/info"])
    for path in ("/health", "/health/live", "/pub/a/info"):
        assert (await _get(env.url, path)).status_code == 200, path
    for path in ("/healthz", "/health/../admin", "/health/%2e%2e/admin", "/health%2F..%2Fadmin",
                 "/pub/a/b/info", "//health", "/health;x=1"):
        assert (await _get(env.url, path)).status_code == 401, path


# -- WebSocket -----------------------------------------------------------------------------


async def test_websocket_relays_both_ways_with_identity(start: Start) -> None:
    """Text and binary frames both ways, subprotocol, identity headers, close code relayed."""
    env = await start(unauthenticated_action="401")
    headers = {**await env.sign_in(), "X-MS-CLIENT-PRINCIPAL-ID": "spoof"}
    ws_url = env.url.replace("http", "ws") + "/ws"
    async with connect(ws_url, additional_headers=headers, subprotocols=["chat.v1"],  # type: ignore[list-item]
                       proxy=None) as ws:
        assert ws.subprotocol == "chat.v1"
        await ws.send("hello")
        assert await ws.recv() == "echo:hello"
        await ws.send(b"\x01\x02\x03")
        assert await ws.recv() == b"\x03\x02\x01"
        await ws.send("headers")
        seen = json.loads(await ws.recv())
        assert [v for k, v in seen if k == "x-ms-client-principal-id"] == ["u-1"]
        await ws.send("close:4001")
        with pytest.raises(ConnectionClosed):
            await ws.recv()
        assert ws.close_code == 4001


async def test_websocket_handshake_is_authenticated(start: Start) -> None:
    """An anonymous handshake is refused like an HTTP request (401), never relayed."""
    env = await start(unauthenticated_action="401")
    with pytest.raises(InvalidStatus) as caught:
        async with connect(env.url.replace("http", "ws") + "/ws", proxy=None):
            pass
    assert caught.value.response.status_code == 401
