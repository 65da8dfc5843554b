"""The refresh engine: one generator flow, driven by httpx's sync and async clients alike.

:meth:`RefreshingAuth.flow` is written once, as httpx's ``auth_flow`` is
(``response = yield request``): attach the credential, refresh first when
the token expires within the leeway, and on a 401 refresh once and retry
once. It marks its refresh with ``LOCK``/``UNLOCK`` instructions that the
drivers of :mod:`authgate.client._drivers` turn into a ``threading.Lock``
(``httpx.Client``) or an ``asyncio.Lock`` (``httpx.AsyncClient``).

The refresh request is sent *through the flow's yield*, i.e. by the very
client whose request needed it, rather than by a separate token-endpoint
client. So it honours that client's transport, proxies, TLS settings and
event hooks, works the same sync and async without a second HTTP stack, and
there is no extra client to configure or close.

Under the lock, a flow compares the tokens it started with to the current
ones: if another task, thread (or, through the storage, process) refreshed
meanwhile, it reuses that result instead of spending the refresh token again.
"""

from __future__ import annotations

import abc
import threading
import time
from collections.abc import AsyncGenerator, Generator

import httpx

from ._drivers import (
    LOCK,
    UNLOCK,
    AsyncDriver,
    Clock,
    Fetch,
    Flow,
    LoopLocks,
    SyncDriver,
    run_async,
    run_sync,
)
from ._errors import LoginRequired, TokenEndpointError
from ._storage import MemoryStorage, TokenStorage
from ._tokens import TokenSet

HttpxFlow = Generator[httpx.Request, httpx.Response, None]
AsyncHttpxFlow = AsyncGenerator[httpx.Request, httpx.Response]


class RefreshingAuth(httpx.Auth, abc.ABC):
    """An ``httpx.Auth`` that keeps a :class:`TokenSet` fresh; subclasses speak the protocol."""

    requires_request_body = True  # so a request refused with 401 can be sent again

    def __init__(self, *, tokens: TokenSet | None, storage: TokenStorage | None,
                 leeway: float, clock: Clock | None, timeout: float) -> None:
        self.storage: TokenStorage = storage if storage is not None else MemoryStorage()
        self.leeway = leeway
        self.clock: Clock = clock or time.time
        self.timeout = httpx.Timeout(timeout)
        self._lock = threading.Lock()
        self._loop_locks = LoopLocks()
        self._dead: TokenSet | None = None
        if tokens is not None:
            self.storage.save(tokens)
        self._tokens = tokens if tokens is not None else self.storage.load()

    # -- the protocol, per subclass --------------------------------------------

    @abc.abstractmethod
    def authorize(self, request: httpx.Request, tokens: TokenSet) -> None:
        """Put the credential on ``request``."""

    @abc.abstractmethod
    def refresh_request(self, tokens: TokenSet) -> httpx.Request:
        """The request that trades ``tokens`` for fresh ones."""

    @abc.abstractmethod
    def parse_refresh(self, response: httpx.Response, tokens: TokenSet, now: float) -> TokenSet:
        """The fresh tokens, or raise (:class:`LoginRequired` when the grant is dead)."""

    def can_refresh(self, tokens: TokenSet) -> bool:
        return tokens.refresh_token is not None

    # -- state -------------------------------------------------------------------

    @property
    def tokens(self) -> TokenSet | None:
        """The tokens in use (the newest this process has seen)."""
        return self._tokens

    def set_tokens(self, tokens: TokenSet) -> None:
        """Adopt new tokens (after a sign-in): saved first, then used.

        Takes no lock, so it is safe from threads and coroutines alike; a refresh
        already in flight may still replace them with its own (valid) result.
        """
        self.storage.save(tokens)
        self._tokens, self._dead = tokens, None

    def due(self, tokens: TokenSet) -> bool:
        return tokens.due(self.leeway, self.clock())

    # -- the flow ------------------------------------------------------------------

    def flow(self, request: httpx.Request) -> Flow:
        """Attach the credential; refresh first if due; on a 401 refresh once and retry once.

        Returns the final response (for flows built on this one).
        """
        started = self._tokens
        if started is None or self.due(started):
            try:
                yield from self.refresh_flow(started, force=False)
            except TokenEndpointError as exc:
                # An early refresh that failed for a passing reason (5xx, 429) need not
                # fail the request while the token in hand has not actually expired.
                if not exc.retryable or started is None or started.expires_within(0, self.clock()):
                    raise
        used = self._tokens
        if used is None:
            raise LoginRequired("no tokens: sign in first", error=None)
        self.authorize(request, used)
        response = yield request
        if response is None or response.status_code != 401 or not self.can_refresh(used):
            return response
        yield from self.refresh_flow(used, force=True)
        fresh = self._tokens
        if fresh is not None and fresh.access_token != used.access_token:
            self.authorize(request, fresh)
            response = yield request  # the retry's response is final, 401 or not: no loop
        return response

    def refresh_flow(self, seen: TokenSet | None, *, force: bool) -> Flow:
        """Refresh under the lock, unless someone else already replaced ``seen``; the tokens now.

        ``force`` (after a 401, or on demand) refreshes whenever the tokens are
        still the ones the caller saw; otherwise only when the current ones are due.
        """
        yield LOCK
        try:
            yield from self._refresh_locked(seen, force)
        except Exception:
            yield UNLOCK
            raise
        yield UNLOCK
        return self._tokens

    def _refresh_locked(self, seen: TokenSet | None, force: bool) -> Flow:
        current = self._adopt_stored()
        if current is None:
            raise LoginRequired("no tokens: sign in first", error=None)
        replaced = seen is None or current.access_token != seen.access_token
        wanted = not replaced if force else self.due(current)
        if not wanted:
            return
        if not self.can_refresh(current):
            if force:  # asked to refresh what cannot be: no refresh token, window passed
                raise LoginRequired("these tokens cannot be refreshed: sign in again", error=None)
            return  # a due token goes out as it is; the server decides
        if self._dead is not None and self._dead == current:
            raise LoginRequired("the grant was refused before: sign in again")
        request = self.refresh_request(current)
        request.extensions.setdefault("timeout", self.timeout.as_dict())
        response = yield Fetch(request)
        assert response is not None
        try:
            fresh = self.parse_refresh(response, current, self.clock())
        except LoginRequired:
            self._dead = current
            raise
        # Persist before use: with rotation, `current` is spent from this moment on.
        self.storage.save(fresh)
        self._tokens = fresh

    def _adopt_stored(self) -> TokenSet | None:
        """Prefer what the storage holds: another process sharing it may have refreshed."""
        stored = self.storage.load()
        if stored is not None and stored != self._tokens:
            self._tokens = stored
        return self._tokens

    # -- drivers ---------------------------------------------------------------------

    def auth_flow(self, request: httpx.Request) -> HttpxFlow:
        return self.sync_auth_flow(request)

    def sync_auth_flow(self, request: httpx.Request) -> HttpxFlow:
        if self.requires_request_body:
            request.read()
        driver = SyncDriver(self.flow(request), self._lock)
        try:
            step = driver.start()
            while step is not None:
                response = yield step
                step = driver.send(response)
        finally:
            driver.close()

    async def async_auth_flow(self, request: httpx.Request) -> AsyncHttpxFlow:
        if self.requires_request_body:
            await request.aread()
        driver = AsyncDriver(self.flow(request), self._lock, self._loop_locks)
        try:
            step = await driver.start()
            while step is not None:
                response = yield step
                step = await driver.send(response)
        finally:
            driver.close()

    def refresh(self, client: httpx.Client) -> TokenSet:
        """Refresh now through ``client`` (unless another thread just did); the fresh tokens."""
        result: TokenSet = run_sync(self.refresh_flow(self._tokens, force=True), client, self._lock)
        return result

    async def arefresh(self, client: httpx.AsyncClient) -> TokenSet:
        """Refresh now through ``client`` (unless another task just did); the fresh tokens."""
        result: TokenSet = await run_async(self.refresh_flow(self._tokens, force=True), client,
                                           self._lock, self._loop_locks)
        return result
