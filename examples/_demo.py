"""A throwaway authgate for the examples' ``--demo`` mode (not an example itself).

Starts a real authgate (uvicorn on a free loopback port, SQLite in a temporary
directory), with a user and a confidential client whose redirect URI is the
loopback ``http://127.0.0.1/callback`` (any port, RFC 8252 §7.3), and access
tokens that live only a few seconds so refreshes show up quickly. It also
plays the user's browser: :func:`browser_sign_in` follows the authorization
request through authgate's sign-in form, as a person clicking would.
"""

from __future__ import annotations

import asyncio
import html
import re
import secrets
import socket
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import urljoin

import httpx
import uvicorn

from authgate import AuthGate, Settings, create_app

REDIRECT_URI = "http://127.0.0.1/callback"


@dataclass(frozen=True)
class Demo:
    base_url: str
    client_id: str
    client_secret: str
    users: dict[str, str]  # username -> password

    @property
    def issuer(self) -> str:
        return f"{self.base_url}/.auth"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def demo_server(*, users: tuple[str, ...] = ("demo",),
                access_token_lifetime: float = 10) -> Iterator[Demo]:
    """A running authgate until the block ends."""
    with tempfile.TemporaryDirectory(prefix="authgate-demo-") as tmp:
        port = _free_port()
        settings = Settings(public_url=f"http://127.0.0.1:{port}",
                            store=f"sqlite:///{tmp}/authgate.db", data_dir=tmp)
        settings.tokens.access_token_lifetime = access_token_lifetime
        passwords = {name: secrets.token_urlsafe(12) for name in users}

        async def setup() -> str | None:
            gate = await AuthGate.open(settings)
            try:
                for name, password in passwords.items():
                    await gate.accounts.add(name, password)
                _client, secret = await gate.clients.add(
                    "demo-cli", redirect_uris=[REDIRECT_URI],
                    grant_types=["authorization_code", "refresh_token"],
                    scopes=["openid", "profile", "offline_access"])
            finally:
                await gate.close()
            return secret

        secret = asyncio.run(setup())
        assert secret is not None
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port,
                                               log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the demo authgate did not start")
            time.sleep(0.02)
        try:
            yield Demo(f"http://127.0.0.1:{port}", "demo-cli", secret, passwords)
        finally:
            server.should_exit = True
            thread.join(10)


def _hidden_fields(page: str) -> dict[str, str]:
    fields = {}
    for tag in re.findall(r"<input[^>]*>", page):
        name, value = re.search(r'name="([^"]*)"', tag), re.search(r'value="([^"]*)"', tag)
        if 'type="hidden"' in tag and name:
            fields[html.unescape(name.group(1))] = html.unescape(value.group(1) if value else "")
    return fields


def browser_sign_in(authorize_url: str, username: str, password: str) -> None:
    """Follow ``authorize_url`` through the sign-in form to the redirect URI, like a browser."""
    with httpx.Client(follow_redirects=True, timeout=10) as browser:
        page = browser.get(authorize_url)
        form = page.text
        action = re.search(r'<form[^>]*action="([^"]*)"', form)
        target = urljoin(str(page.url), html.unescape(action.group(1))) if action else str(page.url)
        origin = f"{page.url.scheme}://{page.url.netloc.decode()}"
        browser.post(target, data={**_hidden_fields(form), "username": username,
                                   "password": password},
                     headers={"Origin": origin, "Sec-Fetch-Site": "same-origin"})
