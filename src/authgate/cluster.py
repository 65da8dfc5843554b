"""Several instances behaving as one: cache invalidation and cross-instance locks.

Instances behind a load balancer share everything that matters through the
store (refresh-token rotation and reuse detection are atomic there), but each
keeps three small in-process caches so that verifying a token costs no I/O:

===========  =============================  ===========================================
channel      published after                what a listening instance does
===========  =============================  ===========================================
``deny``     any denylist change (token or  ``denylist.invalidate()``: the next
             family revocation, sign-out    verification re-reads the store
             everywhere, reuse detection)
``keys``     a signing-key rotation         ``await keys.load()``
``clients``  a client saved or removed      drop that client from the cache
===========  =============================  ===========================================

Publishing is wired into the :class:`~authgate.service.AuthGate` itself, so
the CLI (``authgate tokens revoke``, ``keys rotate``, ``clients remove``) tells
running instances too; listening is started by ``serve`` (the app lifespan).
After the listener (re)connects everything is invalidated, since messages may
have been missed. Notifications only speed things up: a revocation still
reaches an instance that missed one within the denylist's 1 s re-check, keys
within :attr:`KeySet.RELOAD_SECONDS`, clients within their 2 s cache.

A failed publish is logged and swallowed: the change is already in the store,
and refusing a revocation because a notification could not be sent would be
worse than the 1 s delay.

The same notifier provides the lock that makes provider-token refresh single
flight across instances (:meth:`Cluster.refresh_lock`, plugged into
:attr:`Freshness.lock_factory`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from .store.notify import RESYNC, LockTimeout, Notifier, notifier_for

if TYPE_CHECKING:
    from .gateway import Gateway
    from .service import AuthGate

log = logging.getLogger("authgate.cluster")

DENY, KEYS, CLIENTS = "deny", "keys", "clients"
PUBLISH_TIMEOUT = 2.0
REFRESH_LOCK_TTL = 60.0
"""A provider refresh taking longer than this is presumed dead; its lock lapses."""


class Cluster:
    """Publishes an instance's changes and applies the other instances' (once started)."""

    def __init__(self, gate: AuthGate, notifier: Notifier | None = None) -> None:
        self.gate = gate
        self.notifier = notifier or notifier_for(gate.store.backend)
        self.started = False
        gate.denylist.on_change = self._publisher(DENY)
        gate.keys.on_change = self._publisher(KEYS)
        gate.clients.on_change = self._publisher(CLIENTS)

    def _publisher(self, channel: str) -> Callable[[str], Awaitable[None]]:
        async def publish(payload: str) -> None:
            try:
                await asyncio.wait_for(self.notifier.publish(channel, payload), PUBLISH_TIMEOUT)
            except Exception as exc:  # the store has the change; others see it a little later
                log.warning("could not notify other instances of a %s change (%s: %s); they will "
                            "pick it up on their periodic re-check", channel, type(exc).__name__, exc)

        return publish

    async def start(self) -> None:
        """Listen for the other instances' changes (``serve`` does this; the CLI does not)."""
        if self.started or not self.notifier.shared:
            return
        self.started = True
        await self.notifier.subscribe(self.apply)

    async def stop(self) -> None:
        self.started = False
        await self.notifier.close()

    async def apply(self, channel: str, payload: str) -> None:
        """Act on one notification; :data:`~authgate.store.notify.RESYNC` means all of them."""
        gate = self.gate
        if channel in (DENY, RESYNC):
            gate.denylist.invalidate()
        if channel in (CLIENTS, RESYNC):
            gate.clients.forget(payload if channel == CLIENTS and payload else None)
        if channel in (KEYS, RESYNC):
            await gate.keys.load()

    def attach(self, gw: Gateway) -> None:
        """Make the gateway's provider-token refresh single flight across instances."""
        if self.notifier.shared:
            gw.freshness.lock_factory = self.refresh_lock

    @asynccontextmanager
    async def refresh_lock(self, key: str) -> AsyncIterator[None]:
        """The lock :class:`~authgate.gateway.freshness.Freshness` holds around one refresh.

        Waiting longer than a refresh may take means the holder is stuck: answer
        "provider unavailable, try again" (502) rather than refresh a second time
        with a refresh token the holder may be rotating right now.
        """
        try:
            lock = self.notifier.lock(f"refresh:{key}", REFRESH_LOCK_TTL)
            async with lock:
                yield
        except LockTimeout:
            from .gateway.freshness import ProviderUnavailable

            raise ProviderUnavailable("another instance is refreshing these tokens; "
                                      "try again shortly") from None
