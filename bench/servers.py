"""Servers under test: started pinned to the server core, loopback only, reaped after.

* ``bare``: bench/bare_app.py under uvicorn (uvloop + httptools, one worker).
* ``oidc-provider``: the npm reference server (tests/peers/oidc_provider.py), on the
  peer's Map adapter or its SQLite one.
* ``authgate``: ``authgate serve`` on a throw-away data directory.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
VENV_BIN = Path(sys.executable).parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.peers import oidc_provider as peer  # noqa: E402 - after the repository root is importable

READY_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def pinned(argv: Sequence[str], cpu: int | None) -> list[str]:
    return ["taskset", "-c", str(cpu), *argv] if cpu is not None else list(argv)


class Server:
    """A started server: ``base_url``, and ``stop()`` when done."""

    name = "server"
    base_url = ""

    def start(self, cpu: int | None) -> None:
        raise NotImplementedError

    def stop(self) -> None:
        raise NotImplementedError

    def mint(self, n: int) -> list[str]:
        """``n`` fresh refresh tokens for the ``RP`` client (pooled cases)."""
        raise NotImplementedError(f"{self.name} cannot mint refresh tokens")


class Process(Server):
    """A server we start as a child process and poll until it answers."""

    ready_path = "/"

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port = free_port()
        self.logs = Path(tempfile.mkdtemp(prefix=f"authgate-bench-{self.name}-"))

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        """argv and extra environment; listen on 127.0.0.1:``self.port``."""
        raise NotImplementedError

    def start(self, cpu: int | None) -> None:
        argv, env = self.command()
        self.base_url = f"http://127.0.0.1:{self.port}"
        with open(self.logs / "server.log", "wb") as log:
            self.process = subprocess.Popen(pinned(argv, cpu), cwd=ROOT, env={**os.environ, **env},
                                            stdin=subprocess.DEVNULL, stdout=log,
                                            stderr=subprocess.STDOUT)
        wait_ready(self.base_url + self.ready_path, self.process, self.logs / "server.log")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None
        shutil.rmtree(self.logs, ignore_errors=True)


def wait_ready(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with status {process.returncode}:\n"
                               f"{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url, timeout=2.0).status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    process.kill()
    process.wait()
    raise RuntimeError(f"{url} did not answer within {READY_TIMEOUT:.0f}s:\n"
                       f"{log.read_text(errors='replace')[-3000:]}")


UVICORN_FLAGS = ["--loop", "uvloop", "--http", "httptools", "--no-access-log",
                 "--log-level", "warning", "--host", "127.0.0.1"]


class Bare(Process):
    name = "bare"
    ready_path = "/json"

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        return ([sys.executable, "-m", "uvicorn", "bare_app:app", "--app-dir", str(BENCH),
                 *UVICORN_FLAGS, "--port", str(self.port)], {})


class OidcProvider(Server):
    """npm oidc-provider with rotating refresh tokens, on one of the peer's adapters.

    ``map``: live payload objects in a Map, nothing serialized or persisted.
    ``sqlite``: every model persisted in a SQLite file (WAL, synchronous=NORMAL, as
    authgate's store), the peer's default: a temporary file it removes when stopped.
    """

    name = "oidc-provider"
    CC = ("bench-cc", "cc-" + "s" * 40)
    RP = ("bench-rp", "rp-" + "s" * 40)
    ADAPTERS = ("map", "sqlite")

    def __init__(self, adapter: str = "map") -> None:
        if adapter not in self.ADAPTERS:
            raise ValueError(f"adapter {adapter!r}: one of {', '.join(self.ADAPTERS)}")
        self.adapter = adapter
        self.peer: peer.Peer | None = None

    def start(self, cpu: int | None) -> None:
        config: dict[str, Any] = {
            "clients": [
                peer.client(*self.CC, grant_types=["client_credentials"], scope="api:read"),
                peer.client(*self.RP, redirect_uris=["http://127.0.0.1:9/cb"]),
            ],
            "scopes": ["api:read"],
            "adapter": self.adapter,
            "rotateRefreshToken": True,
            "idTokenSigningAlg": "ES256",
            "testApi": True,
        }
        self.peer = peer.start(config, cpu=cpu)
        self.base_url = self.peer.issuer

    def stop(self) -> None:
        if self.peer is not None:
            peer.stop(self.peer)
        self.peer = None

    def mint(self, n: int) -> list[str]:
        return peer.mint_refresh_tokens(self.base_url, self.RP[0], n)


class Authgate(Process):
    """``authgate serve`` on a fresh SQLite data directory, with two benchmark clients.

    ``start`` runs ``authgate init`` and ``authgate clients add`` first;
    ``mint`` is called while it runs, from this process, on the same data dir.
    """

    name = "authgate"
    ready_path = "/.auth/.well-known/openid-configuration"
    CC = ("bench-cc", "cc-" + "s" * 40)
    RP = ("bench-rp", "rp-" + "s" * 40)

    def __init__(self, mint: Callable[[Mapping[str, str], str, int], list[str]]) -> None:
        super().__init__()
        self.data = Path(tempfile.mkdtemp(prefix="authgate-bench-data-"))
        self._mint = mint
        self.env = {"AUTHGATE_DATA_DIR": str(self.data / "data"),
                    "AUTHGATE_CONFIG": str(self.data / "authgate.toml"),
                    "AUTHGATE_PUBLIC_URL": f"http://127.0.0.1:{self.port}",
                    "AUTHGATE_LOG_LEVEL": "warning"}

    def cli(self, *args: str, stdin: str = "") -> None:
        done = subprocess.run([str(VENV_BIN / "authgate"), *args], cwd=self.data, input=stdin,
                              env={**os.environ, **self.env}, capture_output=True, text=True,
                              timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"authgate {' '.join(args)} failed ({done.returncode}):\n"
                               f"{done.stdout[-1500:]}\n{done.stderr[-1500:]}")

    def start(self, cpu: int | None) -> None:
        self.cli("init")  # config file, data dir, keys, store
        self.cli("clients", "add", self.CC[0], "--secret-stdin", "--grant-type",
                 "client_credentials", "--scope", "api:read", stdin=self.CC[1] + "\n")
        self.cli("clients", "add", self.RP[0], "--secret-stdin",
                 "--grant-type", "authorization_code", "--grant-type", "refresh_token",
                 "--redirect-uri", "http://127.0.0.1:9/cb",
                 "--scope", "openid", "--scope", "offline_access", stdin=self.RP[1] + "\n")
        super().start(cpu)

    def command(self) -> tuple[list[str], Mapping[str, str]]:
        return ([str(VENV_BIN / "authgate"), "serve", "--host", "127.0.0.1",
                 "--port", str(self.port)], self.env)

    def mint(self, n: int) -> list[str]:
        return self._mint(self.env, self.RP[0], n)

    def stop(self) -> None:
        super().stop()
        shutil.rmtree(self.data, ignore_errors=True)


class Gateway(Authgate):
    """``authgate serve`` in front of the bare app, with one signed-in gateway session:
    ``self.cookie`` (browser) and ``self.session_token`` (X-ZUMO-AUTH).

    authgate gets the server core to itself, like every server under test; the app
    behind it runs where ``upstream_cpu`` says (run.py: the load generator's core, as a
    separate service would; ``None``: the server core, sharing it with authgate)."""

    name = "gateway"
    cookie = ""
    session_token = ""
    upstream_cpu: int | None = None

    def __init__(self) -> None:
        super().__init__(lambda env, client, n: [])
        self.upstream = Bare()
        self.env["AUTHGATE_GATEWAY__UNAUTHENTICATED_ACTION"] = "401"

    def start(self, cpu: int | None) -> None:
        self.upstream.start(self.upstream_cpu if self.upstream_cpu is not None else cpu)
        self.env["AUTHGATE_UPSTREAM"] = self.upstream.base_url
        super().start(cpu)
        self.cookie, self.session_token = sign_in(self.env)

    def stop(self) -> None:
        super().stop()
        self.upstream.stop()


def sign_in(env: Mapping[str, str]) -> tuple[str, str]:
    """A gateway session written through authgate's API into the running server's store."""
    import asyncio

    from authgate.config import load_settings
    from authgate.gateway import Gateway as Gw
    from authgate.service import AuthGate

    async def go() -> tuple[str, str]:
        gate = await AuthGate.open(load_settings(environ={**os.environ, **env}))
        gw = Gw(gate)
        try:
            cookie, s = await gw.sessions.start(provider="local", user_id="bench-user", name="bench",
                                                claims=[("name", "bench")])
            token = gw.session_tokens.mint(sid=s.sid, user_key=s.user_key, user_id=s.user_id,
                                           provider=s.provider, name=s.name, now=gate.clock.now(),
                                           lifetime=3600)
            return f"{gw.cookie_name}={cookie}", token
        finally:
            await gw.close()
            await gate.close()

    return asyncio.run(go())
