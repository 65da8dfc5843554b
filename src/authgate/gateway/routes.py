"""The gateway's routes: Easy Auth's ``/.auth/*`` surface, forward-auth, and the proxy."""

from __future__ import annotations

from starlette.routing import BaseRoute, Route

from . import login, logout, me, refresh, verify


def routes() -> list[BaseRoute]:
    """Forward-auth first: a front proxy asks it once per request, so it should not wait
    for every other pattern to be tried (Starlette matches routes in order)."""
    return [
        Route("/.auth/verify", verify.endpoint, methods=["GET", "HEAD"]),
        Route("/.auth/login/done", login.done, methods=["GET"]),
        Route("/.auth/login/{provider}", login.start, methods=["GET"]),
        Route("/.auth/login/{provider}", login.client_directed, methods=["POST"]),
        Route("/.auth/login/{provider}/callback", login.callback, methods=["GET", "POST"]),
        Route("/.auth/logout", logout.endpoint, methods=["GET", "POST"]),
        Route("/.auth/me", me.endpoint, methods=["GET"]),
        Route("/.auth/refresh", refresh.endpoint, methods=["GET", "POST"]),
    ]
