"""Automatic pipelining for the Redis backend's hot commands.

Each command sent on its own costs a connection checkout, a socket write and
a wake-up per reply; with redis-py that client-side work was most of the CPU
a refresh rotation took (four commands). :class:`Batcher` sends the commands
that callers issue while earlier ones are in flight together, as one
non-transactional pipeline: at most ``lanes`` pipelines are in flight, and
whatever arrives meanwhile goes out in the next. One caller waits no longer
than one round trip behind the batch before it, and under load one round trip
carries many commands.

Batching changes nothing a caller can observe: every command (an ``EVALSHA``
of one of the backend's scripts, an ``HGETALL``) is atomic on its own, callers
await their own reply, and each gets its own error. A pipeline that fails as a
whole (the connection dropped) fails every command in it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

Arg = str | bytes | int | float


class Batcher:
    def __init__(self, client: aioredis.Redis, lanes: int = 4) -> None:
        self.client = client
        self.lanes = lanes
        self._queue: list[tuple[tuple[Arg, ...], asyncio.Future[Any]]] = []
        self._flushing = 0
        self._tasks: set[asyncio.Task[None]] = set()

    async def call(self, *command: Arg) -> Any:
        """Send one command (``"HGETALL", key`` ...) in the next batch; its reply or its error."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue.append((command, future))
        if self._flushing < self.lanes:
            self._flushing += 1
            task = asyncio.create_task(self._flush())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return await future

    async def _flush(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                try:
                    async with self.client.pipeline(transaction=False) as pipe:
                        for command, _ in batch:
                            pipe.execute_command(*command)
                        replies = await pipe.execute(raise_on_error=False)
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:  # cancelled (shutdown): so are the callers
                    for _, future in batch:
                        future.cancel()
                    raise
                for (_, future), reply in zip(batch, replies, strict=True):
                    if future.done():  # the caller was cancelled
                        continue
                    if isinstance(reply, Exception):
                        future.set_exception(reply)
                    else:
                        future.set_result(reply)
        finally:
            self._flushing -= 1

    async def close(self) -> None:
        """Wait for the batches in flight (their callers are waiting for them too)."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
