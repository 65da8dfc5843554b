"""Two ``authgate serve`` processes on one store: configured, started, stopped reliably.

They get one TOML file (same store, same ``public_url``) and the same key
material through ``AUTHGATE_SEALING_KEYS`` / ``AUTHGATE_HASH_KEY``, exactly as
an operator would run N instances behind a load balancer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import asyncpg
import httpx
import pytest
import redis.asyncio as aioredis

from authgate.config import Settings, load_settings
from authgate.hashing import b64url
from authgate.keystore import LocalKeys, new_sealing_key
from authgate.service import AuthGate

from ..conftest import POSTGRES, REDIS
from ..live import free_port

NEEDS = {
    "postgres": f"PostgreSQL at {POSTGRES} (or set AUTHGATE_TEST_POSTGRES)",
    "redis": f"Redis at {REDIS} (or set AUTHGATE_TEST_REDIS)",
}

PUBLIC_URL = "http://authgate.localhost"
REDIRECT = "http://127.0.0.1/cb"
GRACE = 1.0
START_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0


@dataclass
class Instances:
    name: str
    """postgres or redis"""
    store: str
    config: Path
    env: dict[str, str]
    keys: LocalKeys
    urls: tuple[str, str] = ("", "")
    grace: float = GRACE
    logs: list[Path] = field(default_factory=list)

    def settings(self) -> Settings:
        return load_settings(self.config, environ=self.env)


def configure(name: str, home: Path) -> Instances:
    token = secrets.token_hex(6)
    if name == "postgres":
        store = f"{POSTGRES}{'&' if '?' in POSTGRES else '?'}schema=authgate_cluster_{token}"
    else:
        store = f"{REDIS}{'&' if '?' in REDIS else '?'}prefix=authgate-cluster:{token}"
    keys = LocalKeys([new_sealing_key()], os.urandom(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    env.update(AUTHGATE_SEALING_KEYS=",".join(f"{k.kid}:{b64url(k.key)}" for k in keys.sealing),
               AUTHGATE_HASH_KEY=b64url(keys.hash_key), PYTHONUNBUFFERED="1")
    config = home / "authgate.toml"
    config.write_text("\n".join([
        f"public_url = {json.dumps(PUBLIC_URL)}",
        f"store = {json.dumps(store)}",
        f"data_dir = {json.dumps(str(home / 'data'))}",
        'log_level = "warning"',
        "purge_interval = 0",
        "[tokens]",
        f'refresh_grace = "{GRACE:g}s"',
        "",
    ]), encoding="utf-8")
    return Instances(name, store, config, env, keys)


@asynccontextmanager
async def opened_gate(instances: Instances) -> AsyncIterator[AuthGate]:
    """This process's own view of the shared store (publishes its changes, does not listen)."""
    gate = await AuthGate.open(instances.settings(), local_keys=instances.keys)
    try:
        yield gate
    finally:
        await gate.close()


async def prepare(instances: Instances) -> None:
    """Open the store once: fail loudly if the server is down; migrate; make the first signing key.

    Doing it here, before the instances start, keeps the test about what it tests:
    two processes racing to create the *first* signing key is another matter.
    """
    try:
        async with opened_gate(instances):
            pass
    except Exception as exc:
        pytest.fail(f"the {instances.name} store cannot open; it needs {NEEDS[instances.name]}: "
                    f"{type(exc).__name__}: {exc}", pytrace=False)


async def drop(instances: Instances) -> None:
    with contextlib.suppress(OSError, aioredis.ConnectionError):
        if instances.name == "postgres":
            schema = instances.store.rsplit("schema=", 1)[1]
            conn = await asyncpg.connect(POSTGRES)
            try:
                await conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
            finally:
                await conn.close()
        else:
            prefix = instances.store.rsplit("prefix=", 1)[1]
            client = aioredis.Redis.from_url(REDIS)
            try:
                keys = [k async for k in client.scan_iter(match=f"{prefix}:*", count=1000)]
                if keys:
                    await client.delete(*keys)
            finally:
                await client.aclose()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"authgate serve exited with {proc.returncode}:\n{log.read_text()}", pytrace=False)
        try:
            if httpx.get(f"{url}/.auth/.well-known/openid-configuration", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"authgate serve did not answer within {START_TIMEOUT} s:\n{log.read_text()}",
                        pytrace=False)
        time.sleep(0.1)


@contextmanager
def serving(instances: Instances, home: Path) -> Iterator[Instances]:
    """Both instances up (or the test failed with their output); always stopped afterwards."""
    procs: list[subprocess.Popen[bytes]] = []
    files: list[IO[bytes]] = []
    try:
        urls = []
        for i in range(2):
            port = free_port()
            log = home / f"serve-{'AB'[i]}.log"
            files.append(log.open("wb"))
            instances.logs.append(log)
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "authgate", "--config", str(instances.config), "serve",
                 "--port", str(port)],
                cwd=home, env=instances.env, stdin=subprocess.DEVNULL, stdout=files[-1],
                stderr=subprocess.STDOUT))
            urls.append(f"http://127.0.0.1:{port}")
        for proc, url, log in zip(procs, urls, instances.logs, strict=True):
            _wait_ready(proc, url, log)
        instances.urls = (urls[0], urls[1])
        yield instances
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in procs:
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for fh in files:
            fh.close()


@contextmanager
def two_instances(name: str, home: Path) -> Iterator[Instances]:
    instances = configure(name, home)
    try:
        asyncio.run(prepare(instances))
        with serving(instances, home):
            yield instances
    finally:
        asyncio.run(drop(instances))
