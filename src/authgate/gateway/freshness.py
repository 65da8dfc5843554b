"""Fresh provider tokens: refresh before expiry, once per user and provider at a time.

:meth:`Freshness.ensure_fresh` is what the proxy, ``/.auth/me`` and
``/.auth/refresh`` call. It returns the stored tokens, refreshing them first
(RFC 6749 §6) when the access token is expired or expires within
``gateway.refresh_skew`` -- or always, with ``force=True``.

**Single flight.** Concurrent callers for the same ``user_key`` + provider
share one in-flight refresh (an :class:`asyncio.Task` per key): a hundred
parallel requests with an expired token make one request to the provider,
which matters because providers rotate refresh tokens and treat a second use
of the old one as theft (RFC 9700 §4.14.2). The task outlives a caller that
gives up, so a started rotation is always saved. Across instances, set
:attr:`Freshness.lock_factory` to a function returning an async context
manager per key (an advisory lock); inside it the tokens are read again, so a
refresh another instance just made is reused, not repeated.

**Rotation is saved before it is returned**: the new refresh token is in the
store before any caller sees the new access token.

Errors (refresh.py maps them to HTTP)::

    FreshnessError
    ├── NoRefreshToken       400  nothing to refresh with (offline scope not granted)
    ├── ProviderRefused      403  the provider refused the grant; stored as refresh_failed
    └── ProviderUnavailable  502  network, 5xx, or a malformed answer; try again later
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from .provider_tokens import ProviderTokens
from .providers.base import GrantRejected, ProviderDown

if TYPE_CHECKING:
    from . import Gateway
    from .providers.base import Provider

log = logging.getLogger("authgate.gateway.freshness")

LockFactory = Callable[[str], AbstractAsyncContextManager[object]]


class FreshnessError(Exception):
    """Root of the refresh failures; ``reason`` is safe to log and to answer."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class NoRefreshToken(FreshnessError):
    """No refresh token (or other means to refresh) is stored for this grant."""


class ProviderRefused(FreshnessError):
    """The provider refused the refresh (revoked, expired grant): the user must sign in."""


class ProviderUnavailable(FreshnessError):
    """The provider could not be asked; the stored tokens are unchanged."""


@dataclass
class DeadGrant:
    user_key: str
    provider: str
    reason: str


@dataclass
class RefreshReport:
    """What one pass of the background refresher did."""

    checked: int = 0
    refreshed: int = 0
    dead: list[DeadGrant] = field(default_factory=list)
    """Grants the provider refuses: their users must sign in again."""
    unavailable: list[DeadGrant] = field(default_factory=list)
    """Grants that could not be refreshed this time (provider down); retried next pass."""


class Freshness:
    lock_factory: LockFactory | None = None
    """Cross-instance lock per key (``"<user_key>\\x00<provider>"``); None: this process only."""

    concurrency = 4
    """Refreshes the background refresher runs at once."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self._inflight: dict[str, asyncio.Task[ProviderTokens]] = {}

    @property
    def skew(self) -> float:
        return self.gw.settings.gateway.refresh_skew

    def _provider(self, name: str) -> Provider:
        provider = self.gw.providers.get(name)
        if provider is None:
            raise NoRefreshToken(f"provider {name!r} is no longer configured")
        return provider

    async def ensure_fresh(self, user_key: str, provider: str, *,
                           force: bool = False) -> ProviderTokens | None:
        """The stored tokens, refreshed first if (about to be) expired or ``force``.

        None when nothing is stored for this user and provider.
        """
        tokens = await self.gw.provider_tokens.get(user_key, provider)
        if tokens is None:
            return None
        if not force and not tokens.expires_within(self.gw.gate.clock.now(), self.skew):
            return tokens
        key = f"{user_key}\x00{provider}"
        task = self._inflight.get(key)
        if task is None:
            started = self.gw.gate.clock.now()
            task = asyncio.create_task(self._refresh(key, user_key, provider, force, started))
            self._inflight[key] = task
            task.add_done_callback(lambda t: self._done(key, t))
        return await asyncio.shield(task)

    def _done(self, key: str, task: asyncio.Task[ProviderTokens]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]
        if not task.cancelled():
            task.exception()  # retrieved here so an unawaited failure is not reported as lost

    async def _refresh(self, key: str, user_key: str, provider_name: str, force: bool,
                       started: float) -> ProviderTokens:
        lock = self.lock_factory(key) if self.lock_factory else nullcontext()
        async with lock:
            # Read again under the lock: another instance may have refreshed meanwhile.
            tokens = await self.gw.provider_tokens.get(user_key, provider_name, cached=False)
            if tokens is None:
                raise NoRefreshToken("no provider tokens are stored")
            now = self.gw.gate.clock.now()
            fresh_enough = not force and not tokens.expires_within(now, self.skew)
            if tokens.updated_at > started or fresh_enough:
                return tokens
            if tokens.refresh_failed:
                raise ProviderRefused(tokens.refresh_failed)
            provider = self._provider(provider_name)
            if not provider.can_refresh(tokens):
                raise NoRefreshToken("no refresh token is stored (was offline access granted?)")
            try:
                fresh = await provider.refresh(tokens)
            except GrantRejected as exc:
                tokens.refresh_failed = exc.reason
                await self.gw.provider_tokens.save(user_key, tokens)
                log.warning("refresh of %s tokens for %s refused: %s", provider_name, user_key,
                            exc.reason)
                raise ProviderRefused(exc.reason) from None
            except ProviderDown as exc:
                log.warning("refresh of %s tokens for %s failed: %s", provider_name, user_key,
                            exc.reason)
                raise ProviderUnavailable(exc.reason) from None
            fresh.user_id = fresh.user_id or tokens.user_id
            fresh.claims = fresh.claims or tokens.claims
            fresh.refresh_failed = None
            await self.gw.provider_tokens.save(user_key, fresh)  # persisted before anyone uses it
            await self.gw.gate.audit.record("provider_token.refreshed", user=user_key,
                                            reason=f"provider {provider_name}")
            return fresh

    # -- background refresher ------------------------------------------------------

    def due(self, tokens: ProviderTokens, now: float) -> bool:
        """Expiring within the skew, or past half its lifetime (so a missed pass is harmless)."""
        if tokens.expires_on is None:
            return False
        if tokens.expires_within(now, self.skew):
            return True
        return tokens.updated_at > 0 and now >= tokens.updated_at + (
            tokens.expires_on - tokens.updated_at) / 2

    async def refresh_all(self) -> RefreshReport:
        """Refresh every stored grant that is due; report the dead ones."""
        report = RefreshReport()
        now = self.gw.gate.clock.now()
        gate = asyncio.Semaphore(self.concurrency)

        async def one(user_key: str, tokens: ProviderTokens) -> None:
            async with gate:
                try:
                    await self.ensure_fresh(user_key, tokens.provider, force=True)
                    report.refreshed += 1
                except (ProviderRefused, NoRefreshToken) as exc:
                    report.dead.append(DeadGrant(user_key, tokens.provider, exc.reason))
                except ProviderUnavailable as exc:
                    report.unavailable.append(DeadGrant(user_key, tokens.provider, exc.reason))

        jobs = []
        for user_key, tokens in await self.gw.provider_tokens.all_with_refresh_token():
            report.checked += 1
            if tokens.refresh_failed:
                report.dead.append(DeadGrant(user_key, tokens.provider, tokens.refresh_failed))
            elif self.due(tokens, now):
                jobs.append(one(user_key, tokens))
        await asyncio.gather(*jobs)
        return report


async def run_refresher(gw: Gateway, interval: float, once: bool = False) -> RefreshReport:
    """Keep offline grants fresh: :meth:`Freshness.refresh_all` every ``interval`` seconds.

    For ``authgate refresher`` and ``serve`` with ``gateway.refresher_interval``.
    Logs a summary of each pass and one line per dead grant (never a token);
    with ``once`` it makes a single pass and returns its report.
    """
    while True:
        report = await gw.freshness.refresh_all()
        log.info("refresher: %d grants checked, %d refreshed, %d dead, %d unavailable",
                 report.checked, report.refreshed, len(report.dead), len(report.unavailable))
        for d in report.dead:
            log.warning("refresher: grant of %s at %s cannot be refreshed: %s", d.user_key,
                        d.provider, d.reason)
        if once:
            return report
        await asyncio.sleep(max(interval, 1.0))
