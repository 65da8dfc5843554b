"""One instance's provider-token refresh, run as its own process by ``test_two_instances.py``.

Usage: ``python _refresh_worker.py CONFIG USER_KEY LOG``. It opens the store
like ``serve`` does (same config, keys from the environment), plugs the
cluster lock into a real :class:`~authgate.gateway.freshness.Freshness` with
a stub provider, prints ``ready``, waits for a line on stdin (so two workers
start together), calls ``ensure_fresh`` and prints the access token it got.
The stub provider and the lock append ``<event> <pid> <time>`` lines to LOG.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from authgate.config import load_settings
from authgate.gateway import Gateway
from authgate.gateway.provider_tokens import ProviderTokens
from authgate.gateway.providers.base import Provider, UpstreamUser
from authgate.service import AuthGate

PROVIDER = "stub"
PROVIDER_LATENCY = 0.4


class Log:
    def __init__(self, path: str) -> None:
        self.path = path

    def note(self, event: str) -> None:
        with open(self.path, "a", encoding="utf-8") as fh:  # one short O_APPEND write per line
            fh.write(f"{event} {os.getpid()} {time.time():.6f}\n")


class StubProvider(Provider):
    """Refreshes slowly, like a real provider across the internet, and says so in the log."""

    kind = "stub"

    def __init__(self, gw: Gateway, log: Log) -> None:
        super().__init__(PROVIDER, {}, gw)
        self.log = log

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str,
                                params: dict[str, str]) -> str:
        raise NotImplementedError

    async def complete(self, params: dict[str, str], *, nonce: str, code_verifier: str) -> UpstreamUser:
        raise NotImplementedError

    async def refresh(self, tokens: ProviderTokens) -> ProviderTokens:
        self.log.note("refresh-start")
        await asyncio.sleep(PROVIDER_LATENCY)
        self.log.note("refresh-end")
        return ProviderTokens(PROVIDER, tokens.user_id, access_token=f"at-{os.getpid()}",
                              refresh_token=f"rt-{os.getpid()}", expires_on=time.time() + 3600)


async def main(config: str, user_key: str, log_path: str) -> None:
    log = Log(log_path)
    gate = await AuthGate.open(load_settings(config))
    gw = Gateway(gate)
    try:
        gw.providers[PROVIDER] = StubProvider(gw, log)
        gate.cluster.attach(gw)
        cluster_lock = gw.freshness.lock_factory
        assert cluster_lock is not None, "no cross-instance lock for this store"

        @asynccontextmanager
        async def logged(key: str) -> AsyncIterator[Any]:
            async with cluster_lock(key):
                log.note("lock-enter")
                try:
                    yield
                finally:
                    log.note("lock-exit")

        gw.freshness.lock_factory = logged
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        tokens = await gw.freshness.ensure_fresh(user_key, PROVIDER)
        assert tokens is not None
        print(f"token {tokens.access_token}", flush=True)
    finally:
        await gw.close()
        await gate.close()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
