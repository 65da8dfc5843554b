"""One worker process of the backend benchmark (``bench/backends.py`` starts two).

    python bench/backend_worker.py JOB.json

Opens authgate's own service objects (:class:`authgate.service.AuthGate`) on the
store under test, prepares the case, prints ``READY`` and waits for a line on
stdin, so that every worker starts measuring at the same moment; then runs the
case for the warm-up plus the measured seconds and writes ``JOB.out`` (JSON):
ops completed in the measured window, their latencies (µs), errors, this
process's CPU time per operation (warm-up included), and the
families and users it created (so the driver can remove them again).

Cases, each on ``slots`` concurrent tasks:

* ``read``: ``SealedStore.get`` of a random stored family (ids from ``ids_file``);
* ``write``: ``SealedStore.put`` of a new refresh-token-shaped record;
* ``rotate``: ``RefreshTokens.rotate`` -- each slot rotates its own chain, one
  family and user per slot, exactly as the token endpoint does minus HTTP
  (lookup, consume, successor insert, audit event).

With ``rate`` set the load is open-loop: operations are started on a fixed
schedule (``rate`` per second in this worker) on whichever slot is idle, and
latency counts from the scheduled start, so queueing behind a slow operation
is included (no coordinated omission).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

Op = Callable[[], Awaitable[bool]]
"""One operation on one slot; False when it failed in a way the case can tell."""

SCOPE = "openid offline_access"
MONTH = 30 * 86400.0


async def read_case(gate: Any, job: dict[str, Any], slot: int) -> Op:
    ids = job["ids"]
    rng = random.Random(job["worker"] * 10_007 + slot)

    async def op() -> bool:
        return await gate.store.get("refresh_token", rng.choice(ids)) is not None
    return op


async def write_case(gate: Any, job: dict[str, Any], slot: int) -> Op:
    from authgate.hashing import new_id

    grant = f"run-w{job['worker']}-{slot}-{new_id(6)}"
    job["families"].append(grant)

    async def op() -> bool:
        now = gate.clock.now()
        data = {"user_id": new_id(), "client_id": job["client_id"], "scope": SCOPE,
                "auth_time": now, "absolute_expires_at": now + MONTH, "issued_at": now,
                "parent": None, "sid": None}
        await gate.store.put("refresh_token", new_id(32), data, expires_at=now + MONTH,
                             grant_id=grant, subject=data["user_id"])
        return True
    return op


async def rotate_case(gate: Any, job: dict[str, Any], slot: int) -> Op:
    from authgate.hashing import new_id

    client = await gate.clients.get(job["client_id"])
    user = f"run-u{job['worker']}-{slot}-{new_id(6)}"
    job["users"].append(user)

    async def start() -> str:
        family = f"run-r{job['worker']}-{slot}-{new_id(6)}"
        job["families"].append(family)
        token: str = await gate.refresh.issue(family=family, user_id=user, client=client,
                                              scope=SCOPE, auth_time=gate.clock.now())
        return token

    token = await start()

    async def op() -> bool:
        nonlocal token
        try:
            token, _grant, _scope = await gate.refresh.rotate(token, client, None)
        except Exception:
            token = await start()  # a broken chain is an error; start a fresh one
            return False
        return True
    return op


CASES: dict[str, Callable[[Any, dict[str, Any], int], Awaitable[Op]]] = {
    "read": read_case, "write": write_case, "rotate": rotate_case,
}


class Tally:
    def __init__(self, measure_from: float, measure_to: float) -> None:
        self.measure_from, self.measure_to = measure_from, measure_to
        self.latencies_us: list[int] = []
        self.errors = 0
        self.total = 0
        """Every operation, warm-up included: the denominator of CPU per operation."""

    def add(self, started: float, ok: bool) -> None:
        ended = time.perf_counter()
        self.total += 1
        if started >= self.measure_from and ended <= self.measure_to:
            self.latencies_us.append(round((ended - started) * 1e6))
            self.errors += not ok


async def _timed(op: Op) -> bool:
    try:
        return await op()
    except Exception:
        return False


async def closed_loop(ops: list[Op], tally: Tally) -> None:
    async def slot(op: Op) -> None:
        while time.perf_counter() < tally.measure_to:
            started = time.perf_counter()
            tally.add(started, await _timed(op))
    await asyncio.gather(*(slot(op) for op in ops))


async def open_loop(ops: list[Op], tally: Tally, rate: float, start: float) -> None:
    """Operation k is due at ``start + k / rate``. Each slot, whenever it is free, takes the
    earliest start not yet taken and waits for it if it lies ahead: an operation starts at its
    scheduled time, or when a slot comes free if all are busy then (first come, first served),
    and its latency counts from the scheduled time either way. (The same schedule as a task
    per operation queueing for a free slot, without a task and a queue hand-off per operation:
    0-20 us less worker CPU per rotation at 2,500/s in a one-process check.)"""
    k = 0

    async def slot(op: Op) -> None:
        nonlocal k
        while (scheduled := start + k / rate) < tally.measure_to:
            k += 1
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tally.add(scheduled, await _timed(op))
    await asyncio.gather(*(slot(op) for op in ops))


async def main(job: dict[str, Any]) -> dict[str, Any]:
    from authgate.config import load_settings
    from authgate.service import AuthGate

    job["families"], job["users"] = [], []
    gate = await AuthGate.open(load_settings(environ={**os.environ, **job["env"]}))
    try:
        ops = [await CASES[job["case"]](gate, job, slot) for slot in range(job["slots"])]
        print("READY", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        start, cpu = time.perf_counter(), time.process_time()
        tally = Tally(start + job["warmup"], start + job["warmup"] + job["duration"])
        if job.get("rate"):
            await open_loop(ops, tally, job["rate"], start)
        else:
            await closed_loop(ops, tally)
        cpu = time.process_time() - cpu
    finally:
        await gate.close()
    return {"ops": len(tally.latencies_us), "errors": tally.errors, "cpu_s": cpu,
            "all_ops": tally.total,
            "latencies_us": tally.latencies_us, "families": job["families"], "users": job["users"]}


if __name__ == "__main__":
    run_loop: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run_loop = uvloop.run
    job_file = Path(sys.argv[1])
    job = json.loads(job_file.read_text())
    job["ids"] = Path(job["ids_file"]).read_text().split()
    result = run_loop(main(job))
    job_file.with_suffix(".out").write_text(json.dumps(result))
