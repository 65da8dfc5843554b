"""``Refresher``: keeps offline grants alive while nobody uses them (an asyncio task).

A worker acting for users who are not there holds one refresh token per user
(the ``offline_access`` grant). Left alone, such a grant dies of inactivity
(authgate: 14 days unused) even though the worker will need it next week, and
its access token is stale exactly when the job finally runs. The refresher
refreshes each grant shortly before its access token expires and at least
every ``max_interval``, with:

* **jitter** -- each due time is moved earlier by a random share of the
  token's lifetime, so grants issued together do not refresh together;
* **backoff** -- a passing failure (network error, 5xx, 429) is retried after
  ``min_backoff`` doubling up to ``max_backoff``, each delay jittered by half;
* **dead grants** -- ``invalid_grant`` (revoked, expired, reused) cannot be
  retried: the grant is dropped and ``on_dead(name, error)`` is called so the
  application can ask that user to sign in again.

Refreshes go through the grant's own :class:`~authgate.client.OAuth2Auth`
(lock, persist-before-use), so the refresher and live traffic never refresh
one grant twice. ``stats`` counts refreshes, failures and dead grants.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx

from ._drivers import Clock
from ._errors import ClientError, LoginRequired, TokenEndpointError
from ._flow import RefreshingAuth
from ._tokens import TokenSet

log = logging.getLogger("authgate.client")

OnDead = Callable[[str, LoginRequired], Awaitable[None] | None]
Sleep = Callable[[float], Awaitable[None]]


@dataclass
class _Grant:
    auth: RefreshingAuth
    due: float = 0.0
    failures: int = 0
    seen: TokenSet | None = None
    """The tokens when ``due`` was computed; if live traffic replaced them, just reschedule."""


@dataclass
class RefresherStats:
    refreshed: int = 0
    failures: int = 0
    dead: int = 0
    dead_names: list[str] = field(default_factory=list)


class Refresher:
    """Refresh a set of named grants in the background::

        async with httpx.AsyncClient() as http, Refresher(http, on_dead=notify) as refresher:
            refresher.add("alice", OAuth2Auth(token_endpoint, "worker", secret, storage=...))
            ...  # work; the tokens stay fresh

    ``tick()`` runs one round by hand (tests, cron-style use) and returns the
    seconds until the next grant is due.
    """

    def __init__(self, http: httpx.AsyncClient, *, on_dead: OnDead | None = None,
                 lead: float = 120.0, jitter: float = 0.1, max_interval: float = 12 * 3600.0,
                 min_backoff: float = 1.0, max_backoff: float = 600.0, clock: Clock | None = None,
                 sleep: Sleep | None = None, rng: random.Random | None = None) -> None:
        self.http = http
        self.on_dead = on_dead
        self.lead = lead
        self.jitter = jitter
        self.max_interval = max_interval
        self.min_backoff = min_backoff
        self.max_backoff = max_backoff
        self.clock: Clock = clock or time.time
        self._sleep: Sleep = sleep or asyncio.sleep
        self._rng = rng or random.SystemRandom()
        self._grants: dict[str, _Grant] = {}
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.stats = RefresherStats()

    def __len__(self) -> int:
        return len(self._grants)

    def add(self, name: str, auth: RefreshingAuth) -> None:
        """Keep ``auth``'s grant fresh from now on (replacing a grant of the same name)."""
        self._grants[name] = _Grant(auth, due=self._schedule(auth), seen=auth.tokens)
        self._wake.set()

    def remove(self, name: str) -> None:
        self._grants.pop(name, None)

    def due_at(self, name: str) -> float:
        return self._grants[name].due

    def _schedule(self, auth: RefreshingAuth) -> float:
        now = self.clock()
        tokens = auth.tokens
        if tokens is None or tokens.expires_at is None:
            return now + self.max_interval * (1 - self._rng.uniform(0, self.jitter))
        lifetime = max(tokens.expires_at - (tokens.issued_at or now), 0.0)
        lead = min(self.lead, lifetime / 2)  # short-lived tokens: refresh at half-life
        spread = self._rng.uniform(0, self.jitter * lifetime)
        due = min(tokens.expires_at - lead - spread, now + self.max_interval)
        return max(due, now + self.min_backoff)  # never spin on tokens that stay expired

    def _backoff(self, failures: int) -> float:
        delay = min(self.max_backoff, self.min_backoff * 2.0 ** (failures - 1))
        return delay * self._rng.uniform(0.5, 1.0)

    async def tick(self) -> float:
        """Refresh every grant that is due; the seconds until the next one is."""
        for name, grant in list(self._grants.items()):
            if grant.due <= self.clock() and self._grants.get(name) is grant:
                await self._refresh(name, grant)
        if not self._grants:
            return self.max_interval
        next_due: float = min(g.due for g in self._grants.values())
        return max(0.0, next_due - self.clock())

    async def _refresh(self, name: str, grant: _Grant) -> None:
        if grant.failures == 0 and grant.auth.tokens != grant.seen:
            grant.due, grant.seen = self._schedule(grant.auth), grant.auth.tokens
            return
        try:
            await grant.auth.arefresh(self.http)
        except LoginRequired as exc:
            self._grants.pop(name, None)
            self.stats.dead += 1
            self.stats.dead_names.append(name)
            log.warning("grant %s is dead (%s): the user must sign in again", name, exc)
            if self.on_dead is not None:
                result = self.on_dead(name, exc)
                if inspect.isawaitable(result):
                    await result
        except (ClientError, httpx.TransportError) as exc:
            if isinstance(exc, TokenEndpointError) and not exc.retryable:
                log.error("refreshing %s failed and will be retried slowly: %s", name, exc)
            grant.failures += 1
            self.stats.failures += 1
            grant.due = self.clock() + self._backoff(grant.failures)
            log.info("refreshing %s failed (%s); retrying in %.0f s", name,
                     type(exc).__name__, grant.due - self.clock())
        else:
            grant.failures = 0
            self.stats.refreshed += 1
            grant.due, grant.seen = self._schedule(grant.auth), grant.auth.tokens

    # -- running in the background ---------------------------------------------------

    async def run(self) -> None:
        """Refresh forever (until cancelled)."""
        while True:
            delay = await self.tick()
            self._wake.clear()
            sleeper = asyncio.ensure_future(self._sleep(delay))
            waker = asyncio.ensure_future(self._wake.wait())
            try:
                await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                sleeper.cancel()
                waker.cancel()

    def start(self) -> None:
        if self._task is None or self._task.done():
            loop = asyncio.get_running_loop()
            self._task = loop.create_task(self.run(), name="authgate-refresher")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def __aenter__(self) -> Refresher:
        self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
