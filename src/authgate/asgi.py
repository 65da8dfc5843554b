"""In-process mode: authgate as ASGI middleware around a Starlette / FastAPI app.

::

    from authgate.asgi import AuthGateMiddleware, identity, tokens

    app = FastAPI()
    app.add_middleware(AuthGateMiddleware, settings=load_settings("authgate.toml"))

    @app.get("/profile")
    async def profile(request: Request):
        who = identity(request)                 # authgate Identity, or None
        grants = await tokens(request)          # the user's provider tokens, fresh

The middleware serves authgate's whole ``/.auth/*`` surface (login, logout,
``/.auth/me``, refresh, the OAuth 2.0 server) and applies the gateway policy
to every other request exactly like the reverse proxy: excluded paths,
``unauthenticated_action``, client-sent ``X-MS-*`` headers stripped and
authgate's injected (code written for Easy Auth keeps working). On top of
that, without a network hop:

- ``scope["authgate.identity"]``: the :class:`~authgate.gateway.identity.Identity`, or None;
- ``scope["authgate.tokens"]``: the signed-in provider's fresh
  :class:`~authgate.gateway.provider_tokens.ProviderTokens` (a list; empty when
  token headers are off or nothing is stored) -- :func:`tokens` fetches every
  provider's on demand;
- ``scope["user"]`` / ``scope["auth"]``: Starlette's ``request.user`` (an
  :class:`AuthGateUser`; ``.who`` is the Identity) and ``request.auth``, so
  ``@requires("authenticated")`` works.

Give it ``settings`` (authgate opens its store in the app's lifespan) or an
opened ``gate`` (which the caller closes).
"""

from __future__ import annotations

from contextlib import AsyncExitStack
from typing import Any

from starlette.authentication import AuthCredentials, BaseUser, UnauthenticatedUser
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .config import Settings
from .gateway import Gateway
from .gateway.headers import strip_identity
from .gateway.identity import Identity
from .gateway.policy import answer, policy_of
from .gateway.provider_tokens import ProviderTokens
from .service import AuthGate

__all__ = ["AuthGateMiddleware", "AuthGateUser", "identity", "tokens"]


class AuthGateUser(BaseUser):
    """``request.user`` for a signed-in request."""

    def __init__(self, who: Identity) -> None:
        self.who = who

    @property
    def is_authenticated(self) -> bool:
        return True

    @property
    def display_name(self) -> str:
        return self.who.name

    @property
    def identity(self) -> str:
        return self.who.user_id


class AuthGateMiddleware:
    def __init__(self, app: ASGIApp, settings: Settings | None = None, *,
                 gate: AuthGate | None = None) -> None:
        from .app import create_app

        self.app = app
        self.authgate = create_app(settings, gate=gate)

    @property
    def gateway(self) -> Gateway:
        gw: Gateway = self.authgate.state.gateway
        return gw

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(scope, receive, send)
            return
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        if scope["path"].startswith("/.auth/"):
            await self.authgate(scope, receive, send)
            return
        gw = self.gateway
        outcome = await policy_of(gw).authenticate(HTTPConnection(scope))
        if outcome.denial is not None:
            await answer(outcome.denial, scope, receive, send)
            return
        who = outcome.identity
        scope = dict(scope)
        scope["headers"] = [*strip_identity(scope["headers"]), *outcome.headers]
        scope["authgate.gateway"] = gw
        scope["authgate.identity"] = who
        scope["authgate.tokens"] = [outcome.tokens] if outcome.tokens is not None else []
        scope["user"] = AuthGateUser(who) if who is not None else UnauthenticatedUser()
        scope["auth"] = AuthCredentials(["authenticated"] if who is not None else [])
        await self.app(scope, receive, send)

    async def _lifespan(self, scope: Scope, receive: Receive, send: Send) -> None:
        """authgate opens before the app starts and closes after it has shut down."""
        stack = AsyncExitStack()

        async def receive_() -> Message:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await stack.enter_async_context(
                    self.authgate.router.lifespan_context(self.authgate))
            return message

        async def send_(message: Message) -> None:
            if message["type"].startswith("lifespan.shutdown."):
                await stack.aclose()
            await send(message)

        try:
            await self.app(scope, receive_, send_)
        finally:
            await stack.aclose()


def identity(conn: HTTPConnection) -> Identity | None:
    """Who made this request (None: anonymous), as :class:`AuthGateMiddleware` found."""
    who: Identity | None = conn.scope.get("authgate.identity")
    return who


async def tokens(conn: HTTPConnection, provider: str | None = None) -> list[ProviderTokens]:
    """The signed-in user's provider tokens (one provider's with ``provider``), refreshed if due.

    Tokens whose refresh failed are left out, as they are from the headers.
    """
    who = identity(conn)
    gw: Any = conn.scope.get("authgate.gateway")
    if who is None or gw is None:
        return []
    policy = policy_of(gw)
    stored = [provider] if provider is not None else [
        t.provider for t in await gw.provider_tokens.of_user(who.user_key)]
    fresh = [await policy.fresh_tokens(who, name) for name in stored]
    return [t for t in fresh if t is not None]
