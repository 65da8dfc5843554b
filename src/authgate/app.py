"""The ASGI application: every authgate surface under ``/.auth/``.

``create_app`` wires the endpoints (one module each) to an :class:`AuthGate`,
opened in the lifespan unless one is passed in (tests share one with a frozen
clock). Errors a client provoked are :class:`OAuthError`\\ s rendered by one
handler; anything else is logged and answered 500 without details.
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .app_state import gate_of
from .config import Settings
from .errors import OAuthError
from .gateway import Gateway
from .gateway.freshness import run_refresher
from .gateway.proxy import GatewayProxy
from .gateway.routes import routes as gateway_routes
from .limits import LimitsMiddleware, refusal, reject
from .oauth import (
    authorize,
    discovery,
    introspection,
    logout,
    revocation,
    token,
    userinfo,
)
from .oauth.http import error_response
from .service import AuthGate
from .store.maintenance import purge_periodically
from .web import login

log = logging.getLogger("authgate")

__all__ = ["AuthGateApp", "create_app", "gate_of", "routes"]


def routes() -> list[BaseRoute]:
    return [
        Route("/.auth/.well-known/openid-configuration", discovery.openid_configuration, methods=["GET"]),
        Route("/.auth/keys", discovery.jwks, methods=["GET"]),
        Route("/.auth/oauth2/authorize", authorize.endpoint, methods=["GET", "POST"]),
        Route("/.auth/oauth2/token", token.endpoint, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/.auth/oauth2/revoke", revocation.endpoint, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/.auth/oauth2/introspect", introspection.endpoint, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        Route("/.auth/oauth2/userinfo", userinfo.endpoint, methods=["GET", "POST"]),
        Route("/.auth/oauth2/logout", logout.endpoint, methods=["GET", "POST"]),
        Route("/.auth/account/login", login.endpoint, methods=["GET", "POST"]),
    ]


async def _oauth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, OAuthError)
    log.info("%s %s -> %s %s: %s", request.method, request.url.path, exc.status_code, exc.error,
             exc.description)
    return error_response(exc)


async def _server_error(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return JSONResponse({"error": "server_error", "error_description": "internal error"},
                        status_code=500, headers={"Cache-Control": "no-store"})


class AuthGateApp(Starlette):
    """authgate's ASGI app, with two short paths past Starlette's middleware stack and router.

    - With an upstream, requests outside ``/.auth/`` go straight to the proxy. It applies
      the header limit itself and answers its own errors (JSON 500 included).
    - A request for one of the app's fixed paths (the token endpoint, introspection,
      ``/.auth/verify``, ``/.auth/me``...) with a method its route takes goes straight to
      that route's endpoint, with the same request limits (:mod:`authgate.limits`) and the
      same error answers as the full stack (:func:`_oauth_error`, :func:`_server_error`).
      Everything else -- routes with parameters, wrong methods (405), unknown paths --
      takes the full stack. Middleware added later turns the short path off.
    """

    proxy: GatewayProxy | None = None
    max_header_bytes: int = 16 * 1024
    _direct: dict[str, tuple[ASGIApp, set[str]]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            direct = self._direct if self._direct is not None else self._build_direct()
            hit = direct.get(scope["path"])
            if hit is not None and scope["method"] in hit[1]:
                scope["app"] = self
                await self._answer(hit[0], scope, receive, send)
                return
        proxy = self.proxy
        if (proxy is not None and scope["type"] != "lifespan"
                and not scope["path"].startswith("/.auth/")):
            scope["app"] = self
            await proxy(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def _build_direct(self) -> dict[str, tuple[ASGIApp, set[str]]]:
        direct: dict[str, tuple[ASGIApp, set[str]]] = {}
        classes: list[object] = [m.cls for m in self.user_middleware]
        if classes == [LimitsMiddleware]:
            for route in self.routes:
                if (isinstance(route, Route) and route.methods and "{" not in route.path
                        and route.path not in direct):
                    direct[route.path] = (route.app, route.methods)
        self._direct = direct
        return direct

    async def _answer(self, endpoint: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        if why := refusal(scope, self.max_header_bytes):
            await reject(send, why)
            return
        started = False

        async def sender(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await endpoint(scope, receive, sender)
        except ClientDisconnect:
            return
        except Exception as exc:
            if started:
                raise
            request = Request(scope)
            handler = _oauth_error if isinstance(exc, OAuthError) else _server_error
            await (await handler(request, exc))(scope, receive, send)


def create_app(settings: Settings | None = None, *, gate: AuthGate | None = None,
               extra_routes: list[BaseRoute] | None = None) -> AuthGateApp:
    if gate is None and settings is None:
        raise ValueError("create_app needs settings or an opened AuthGate")
    cfg = gate.settings if gate is not None else settings
    assert cfg is not None

    proxy = GatewayProxy(cfg) if cfg.upstream else None

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
        if gate is not None:  # opened by the caller, gateway built eagerly below
            try:
                yield {}
            finally:
                if proxy is not None:
                    await proxy.aclose()
            return
        opened = await AuthGate.open(cfg)
        await opened.cluster.start()  # other instances' changes reach this one's caches
        app.state.gate = opened
        app.state.gateway = gw = Gateway(opened)
        if proxy is not None:
            proxy.gateway = gw
        opened.cluster.attach(gw)  # provider-token refresh: single flight across instances
        background: list[asyncio.Task[Any]] = []
        if cfg.purge_interval > 0:
            background.append(asyncio.create_task(purge_periodically(opened.store, cfg.purge_interval)))
        if cfg.gateway.refresher_interval > 0:
            background.append(asyncio.create_task(run_refresher(gw, cfg.gateway.refresher_interval)))
        # Everything built so far lives as long as the process: keep it out of the
        # cyclic garbage collector's full passes (which would walk it every time).
        gc.collect()
        gc.freeze()
        try:
            yield {}
        finally:
            for task in background:
                task.cancel()
            await asyncio.gather(*background, return_exceptions=True)
            if proxy is not None:
                await proxy.aclose()
                proxy.gateway = None
            await gw.close()
            await opened.close()

    app = AuthGateApp(
        # The gateway's first: its forward-auth route is the per-request one. No pattern of
        # one list matches a path of the other, so the order changes only the cost.
        routes=[*gateway_routes(), *routes(), *(extra_routes or [])],
        lifespan=lifespan,
        exception_handlers={OAuthError: _oauth_error, Exception: _server_error},
    )
    if gate is not None:
        app.state.gate = gate
        app.state.gateway = Gateway(gate)
        if proxy is not None:
            proxy.gateway = app.state.gateway
    # Every path outside /.auth/ goes to the app behind the gateway (AuthGateApp.__call__).
    app.proxy = proxy
    app.max_header_bytes = cfg.gateway.max_header_bytes
    app.add_middleware(LimitsMiddleware, max_header_bytes=cfg.gateway.max_header_bytes)
    return app
