"""``EasyAuthClient``: a client of an Easy Auth style gateway (authgate's, or Azure App Service's).

The wire contract (DESIGN.md §2.1):

* client-directed login, ``POST /.auth/login/<provider>`` with the provider's
  token as ``{"access_token"}``, ``{"id_token"}`` or ``{"authorization_code"}``,
  answers ``{"authenticationToken", "user": {"userId"}}``;
* the session token travels as ``X-ZUMO-AUTH``;
* ``GET /.auth/refresh`` with it refreshes the provider tokens and returns a
  new session token; it accepts a session token that expired up to 72 hours
  ago (``token_refresh_extension_hours``). 401: no or dead session; 403: the
  provider refused (revoked); 400: no provider refresh token was stored;
* ``GET /.auth/me`` lists the user's provider identities and tokens.

This is the "RefreshUser" pattern of the Mobile Apps SDKs: on a 401, call
``/.auth/refresh`` once and retry once -- plus a refresh ahead of expiry, while
the session token is still inside its extension window.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx

from ._drivers import LOCK, UNLOCK, Clock, Fetch, Flow, run_async, run_sync
from ._errors import LoginRequired, TokenEndpointError
from ._flow import RefreshingAuth
from ._storage import TokenStorage
from ._tokens import TokenSet, expiry

EXTENSION = 72 * 3600.0
HEADER = "X-ZUMO-AUTH"


@dataclass(frozen=True, repr=False)
class ProviderIdentity:
    """One entry of ``/.auth/me``: who the user is at one provider, and that provider's tokens."""

    provider_name: str
    user_id: str
    user_claims: tuple[tuple[str, str], ...]
    access_token: str | None = None
    id_token: str | None = None
    refresh_token: str | None = None
    expires_on: datetime | None = None

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ProviderIdentity:
        claims = tuple((str(c.get("typ", "")), str(c.get("val", "")))
                       for c in d.get("user_claims") or [] if isinstance(c, dict))
        return cls(provider_name=str(d.get("provider_name", "")), user_id=str(d.get("user_id", "")),
                   user_claims=claims, access_token=d.get("access_token"),
                   id_token=d.get("id_token"), refresh_token=d.get("refresh_token"),
                   expires_on=_parse_time(d.get("expires_on")))

    def claim(self, typ: str) -> str | None:
        """The first value of claim ``typ``."""
        return next((v for t, v in self.user_claims if t == typ), None)

    def __repr__(self) -> str:
        return (f"ProviderIdentity(provider_name={self.provider_name!r}, user_id={self.user_id!r}, "
                f"expires_on={self.expires_on!r}, claims={len(self.user_claims)})")


def _parse_time(value: Any) -> datetime | None:
    """Easy Auth writes ``2016-05-25T17:39:46.0000000Z`` (7 fraction digits); be lenient."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip().replace("Z", "+00:00")
    if "." in text:
        head, _, tail = text.partition(".")
        digits = "".join(ch for ch in tail if ch.isdigit())
        text = f"{head}.{digits[:6]}{tail[len(digits):]}"
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        return None


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


class EasyAuthClient(RefreshingAuth):
    """Sign in to an Easy Auth gateway and send ``X-ZUMO-AUTH``; also an ``httpx.Auth``::

        easy = EasyAuthClient("https://app.example", storage=MemoryStorage())
        with httpx.Client(base_url="https://app.example", auth=easy) as http:
            easy.login(http, "google", id_token=google_id_token)
            http.get("/api/todos")          # refreshed ahead of expiry and on a 401
            profile = easy.me(http)

    Every operation has an async twin taking an ``httpx.AsyncClient``
    (``alogin``, ``ame``, ``arefresh``).
    """

    def __init__(self, base_url: str, *, session_token: str | None = None,
                 storage: TokenStorage | None = None, leeway: float = 60.0,
                 extension: float = EXTENSION, clock: Clock | None = None,
                 timeout: float = 30.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.extension = extension
        now = (clock or time.time)()
        tokens = self._session(session_token, now) if session_token is not None else None
        super().__init__(tokens=tokens, storage=storage, leeway=leeway, clock=clock,
                         timeout=timeout)

    def __repr__(self) -> str:
        return f"EasyAuthClient({self.base_url!r}, tokens={self._tokens!r})"

    @staticmethod
    def _session(token: str, now: float) -> TokenSet:
        return TokenSet(token, token_type="session", expires_at=expiry(token, None, now),
                        issued_at=now)

    @property
    def session_token(self) -> str | None:
        return self._tokens.access_token if self._tokens else None

    # -- RefreshingAuth -------------------------------------------------------------

    def authorize(self, request: httpx.Request, tokens: TokenSet) -> None:
        request.headers[HEADER] = tokens.access_token

    def can_refresh(self, tokens: TokenSet) -> bool:
        """Only inside the extension window: after it, ``/.auth/refresh`` would answer 401."""
        return tokens.expires_at is None or self.clock() < tokens.expires_at + self.extension

    def refresh_request(self, tokens: TokenSet) -> httpx.Request:
        return httpx.Request("GET", f"{self.base_url}/.auth/refresh",
                             headers={HEADER: tokens.access_token, "Accept": "application/json"})

    def parse_refresh(self, response: httpx.Response, tokens: TokenSet, now: float) -> TokenSet:
        status = response.status_code
        if status == 401:
            raise LoginRequired("the session expired beyond its refresh window or was signed out",
                                error=None, status_code=401)
        if status == 403:
            raise LoginRequired("the identity provider refused the refresh (access revoked)",
                                error=None, status_code=403)
        if status == 400:
            raise TokenEndpointError("the gateway holds no provider refresh token for this session "
                                     "(sign in asking for offline access)", status_code=400)
        if status != 200:
            raise TokenEndpointError(f"/.auth/refresh answered {status}", status_code=status,
                                     retryable=status >= 500 or status == 429)
        body = _body(response)
        token = body.get("authenticationToken") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise TokenEndpointError("/.auth/refresh returned no authenticationToken",
                                     status_code=200, retryable=True)
        return self._session(token, now)

    # -- operations ------------------------------------------------------------------

    def _login_flow(self, provider: str, body: dict[str, str]) -> Flow:
        request = httpx.Request("POST", f"{self.base_url}/.auth/login/{provider}", json=body,
                                headers={"Accept": "application/json"})
        request.extensions["timeout"] = self.timeout.as_dict()
        response = yield Fetch(request)
        assert response is not None
        data = _body(response)
        if response.status_code != 200 or not isinstance(data, dict):
            raise TokenEndpointError(f"login with {provider} was refused ({response.status_code})",
                                     status_code=response.status_code,
                                     retryable=response.status_code >= 500)
        token, user = data.get("authenticationToken"), data.get("user")
        if not isinstance(token, str) or not isinstance(user, dict) or "userId" not in user:
            raise TokenEndpointError("login answered without authenticationToken and user.userId",
                                     status_code=200)
        tokens = self._session(token, self.clock())
        yield LOCK
        self.storage.save(tokens)
        self._tokens, self._dead = tokens, None
        yield UNLOCK
        return str(user["userId"])

    def _me_flow(self) -> Flow:
        request = httpx.Request("GET", f"{self.base_url}/.auth/me",
                                headers={"Accept": "application/json"})
        request.extensions["timeout"] = self.timeout.as_dict()
        response = yield from self.flow(request)
        assert isinstance(response, httpx.Response)
        if response.status_code == 401:
            raise LoginRequired("no valid session: sign in again", error=None, status_code=401)
        response.raise_for_status()
        data = _body(response)
        if not isinstance(data, list):
            raise TokenEndpointError("/.auth/me did not answer a JSON array", status_code=200)
        return [ProviderIdentity.from_json(d) for d in data if isinstance(d, dict)]

    @staticmethod
    def _credentials(given: dict[str, str | None]) -> dict[str, str]:
        body = {k: v for k, v in given.items() if v is not None}
        kinds = body.keys() & {"access_token", "id_token", "authorization_code"}
        if "id_token" in kinds:
            kinds -= {"access_token"}
        if len(kinds) != 1:
            raise ValueError("give one of access_token=, id_token= or authorization_code= "
                             "(an id_token may come with its access_token)")
        return body

    def login(self, client: httpx.Client, provider: str, *, access_token: str | None = None,
              id_token: str | None = None, authorization_code: str | None = None,
              code_verifier: str | None = None, redirect_uri: str | None = None) -> str:
        """Client-directed login with what ``provider``'s SDK gave us; the gateway's user id.

        The session token is saved to the storage before this returns.
        """
        body = self._credentials({
            "access_token": access_token, "id_token": id_token,
            "authorization_code": authorization_code, "code_verifier": code_verifier,
            "redirect_uri": redirect_uri})
        user_id: str = run_sync(self._login_flow(provider, body), client, self._lock)
        return user_id

    async def alogin(self, client: httpx.AsyncClient, provider: str, *,
                     access_token: str | None = None, id_token: str | None = None,
                     authorization_code: str | None = None, code_verifier: str | None = None,
                     redirect_uri: str | None = None) -> str:
        body = self._credentials({
            "access_token": access_token, "id_token": id_token,
            "authorization_code": authorization_code, "code_verifier": code_verifier,
            "redirect_uri": redirect_uri})
        user_id: str = await run_async(self._login_flow(provider, body), client, self._lock,
                                       self._loop_locks)
        return user_id

    def me(self, client: httpx.Client) -> list[ProviderIdentity]:
        """``GET /.auth/me`` as typed data (refreshing the session first when needed)."""
        identities: list[ProviderIdentity] = run_sync(self._me_flow(), client, self._lock)
        return identities

    async def ame(self, client: httpx.AsyncClient) -> list[ProviderIdentity]:
        identities: list[ProviderIdentity] = await run_async(self._me_flow(), client, self._lock,
                                                             self._loop_locks)
        return identities
