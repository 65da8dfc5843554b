"""The bundled demo app, on its own server and behind authgate."""

from __future__ import annotations

import httpx

from authgate.demo import DemoServer, mask

from . import _proxy_fixtures as fx
from ._proxy_fixtures import Start

# The shared fixtures (module attributes, so pytest finds them here).
echo_upstream, idp, idp_server, start = fx.echo_upstream, fx.idp, fx.idp_server, fx.start

LONG_TOKEN = "access-token-0123456789abcdef"


def test_mask_keeps_a_recognisable_prefix_only() -> None:
    """Long secrets are cut to six characters and a length; short values stay."""
    assert mask(LONG_TOKEN) == f"access… ({len(LONG_TOKEN)} characters)"
    assert mask("short") == "short"


async def test_demo_behind_authgate_shows_the_user_with_tokens_masked(start: Start) -> None:
    """Signed in: name, provider and decoded claims shown; token values never in full."""
    with DemoServer() as demo_url:
        env = await start(upstream=demo_url, unauthenticated_action="allow")
        cookie = await env.sign_in(claims=[("email", "alice@example.com")],
                                   tokens=env.tokens(access_token=LONG_TOKEN))
        async with httpx.AsyncClient(base_url=env.url) as c:
            page = await c.get("/", headers=cookie)
            assert page.status_code == 200
            assert "Signed in as <b>Alice</b>" in page.text and "<b>corp</b>" in page.text
            assert "alice@example.com" in page.text
            assert LONG_TOKEN not in page.text and mask(LONG_TOKEN) in page.text
            for link in ("/.auth/me", "/.auth/refresh", "/.auth/logout"):
                assert f'href="{link}' in page.text
            assert "default-src 'none'" in page.headers["content-security-policy"]
            data = (await c.get("/headers.json", headers=cookie)).json()
            assert data["signed_in"] and data["principal"]["auth_typ"] == "corp"
            assert data["headers"]["x-ms-token-corp-access-token"] == mask(LONG_TOKEN)
            anonymous = await c.get("/")
            assert "Not signed in" in anonymous.text
            assert "/.auth/login/local" in anonymous.text


def test_demo_server_starts_on_a_free_port_and_stops() -> None:
    """DemoServer binds before returning its URL and frees the port when stopped."""
    server = DemoServer()
    url = server.start()
    try:
        assert httpx.get(url + "/headers.json").json()["signed_in"] is False
    finally:
        server.stop()
    try:
        httpx.get(url + "/", timeout=2)
    except httpx.ConnectError:
        pass
    else:
        raise AssertionError("the demo server still answers after stop()")
