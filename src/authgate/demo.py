"""The bundled demo upstream: a page showing what the gateway tells the app about its user.

``authgate serve --demo`` runs it on a loopback side port as ``upstream``::

    with DemoServer() as url:          # http://127.0.0.1:<free port>
        settings.upstream = url
        uvicorn.run(create_app(settings), ...)

It renders every ``X-MS-*`` header it receives -- ``X-MS-CLIENT-PRINCIPAL``
decoded to its claims, token values masked (a demo page is often screenshotted
or shared) -- with links to ``/.auth/me``, ``/.auth/refresh`` and
``/.auth/logout``. ``GET /headers.json`` gives the same as JSON, masked too.
"""

from __future__ import annotations

import base64
import binascii
import html
import json
import socket
import threading
import time
from types import TracebackType
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

__all__ = ["DemoServer", "demo_app", "mask"]

_CSP = "default-src 'none'; style-src 'unsafe-inline'"
_STYLE = ("body{font-family:system-ui,sans-serif;max-width:60rem;margin:2rem auto;padding:0 1rem}"
          "table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:.3rem .6rem;"
          "text-align:left;vertical-align:top}code{word-break:break-all}nav a{margin-right:1rem}")


def mask(value: str) -> str:
    """Enough of a secret to recognise it, not to use it."""
    return value if len(value) <= 8 else f"{value[:6]}… ({len(value)} characters)"


def _decode_principal(value: str) -> dict[str, Any] | None:
    try:
        doc = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _seen(request: Request) -> dict[str, Any]:
    headers = {k.lower(): v for k, v in request.headers.items() if k.lower().startswith("x-ms-")}
    shown = {k: (mask(v) if k.startswith("x-ms-token-") and not k.endswith("-expires-on") else v)
             for k, v in sorted(headers.items())}
    principal = headers.get("x-ms-client-principal")
    return {"signed_in": principal is not None, "headers": shown,
            "principal": _decode_principal(principal) if principal else None}


async def headers_json(request: Request) -> Response:
    return JSONResponse(_seen(request), headers={"Cache-Control": "no-store"})


def _rows(pairs: list[tuple[str, str]]) -> str:
    return "".join(f"<tr><th>{html.escape(k)}</th><td><code>{html.escape(v)}</code></td></tr>"
                   for k, v in pairs)


async def page(request: Request) -> Response:
    seen = _seen(request)
    if seen["signed_in"]:
        who = html.escape(request.headers.get("x-ms-client-principal-name", ""))
        status = (f"<p>Signed in as <b>{who}</b> with "
                  f"<b>{html.escape(request.headers.get('x-ms-client-principal-idp', ''))}</b>.</p>")
    else:
        status = ('<p>Not signed in. <a href="/.auth/login/local?post_login_redirect_uri=/">'
                  "Sign in with the local provider</a>.</p>")
    claims = (seen["principal"] or {}).get("claims") or []
    body = (
        "<!doctype html><html><head><meta charset=utf-8><title>authgate demo</title>"
        f"<style>{_STYLE}</style></head><body><h1>authgate demo app</h1>{status}"
        '<nav><a href="/.auth/me">/.auth/me</a><a href="/.auth/refresh">/.auth/refresh</a>'
        '<a href="/.auth/logout?post_logout_redirect_uri=/">/.auth/logout</a>'
        '<a href="/headers.json">headers.json</a></nav>'
        "<h2>X-MS-* headers the app received</h2>"
        f"<table>{_rows(list(seen['headers'].items())) or '<tr><td>none</td></tr>'}</table>"
        "<h2>Claims in X-MS-CLIENT-PRINCIPAL</h2>"
        f"<table>{_rows([(str(c.get('typ')), str(c.get('val'))) for c in claims])}</table>"
        "<p>Token values are masked on this page.</p></body></html>")
    return HTMLResponse(body, headers={"Cache-Control": "no-store", "Content-Security-Policy": _CSP,
                                       "X-Content-Type-Options": "nosniff"})


def demo_app() -> Starlette:
    return Starlette(routes=[Route("/", page), Route("/headers.json", headers_json)])


class DemoServer:
    """The demo app under its own uvicorn server in a background thread (loopback by default).

    ``port=0`` picks a free port; the socket is bound before the thread starts,
    so the URL is valid as soon as :meth:`start` returns.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> str:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(demo_app(), log_level="warning", lifespan="off",
                                server_header=False)
        self._server = server = uvicorn.Server(config)
        self._thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]},
                                        name="authgate-demo", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                self.stop()
                raise RuntimeError("the demo app did not start")
            time.sleep(0.01)
        return self.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(10)
        self._server = self._thread = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
