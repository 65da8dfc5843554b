"""In-process access-token verification: authgate's ``AccessTokens.verify``.

"seen before" verifies one token over and over (the bounded verified-token
cache, still checking expiry and the denylist on every call); "fresh" verifies
a different, never-seen token each time (full ES256 + RFC 9068 checks).
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import time
from pathlib import Path

from authgate.clock import SystemClock
from authgate.config import Settings
from authgate.keystore import LocalKeys, new_sealing_key
from authgate.service import AuthGate


async def _rate(seconds: float, fresh: bool) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(public_url="http://localhost", store=f"sqlite:///{Path(tmp) / 'b.db'}",
                            data_dir=tmp)
        gate = await AuthGate.open(settings, clock=SystemClock(),
                                   local_keys=LocalKeys([new_sealing_key()], os.urandom(32)))
        try:
            pool = [gate.access.mint(sub=f"u{i}", client_id="c", scope="api")[0]
                    for i in range(20_000 if fresh else 1)]
            verify = gate.access.verify
            await verify(pool[0])
            done, start = 0, time.perf_counter()
            deadline = start + seconds
            while time.perf_counter() < deadline and (not fresh or done + 200 < len(pool)):
                for i in range(done, done + 200):
                    await verify(pool[i % len(pool)] if fresh else pool[0])
                done += 200
            return done / (time.perf_counter() - start)
        finally:
            await gate.close()


def seen_before(seconds: float) -> float:
    return asyncio.run(_rate(seconds, fresh=False))


def fresh(seconds: float) -> float:
    return asyncio.run(_rate(seconds, fresh=True))
