"""Request limits applied before any endpoint runs.

Oversized header sections are answered 431 (RFC 6585 §5) before anything is
parsed -- a 100 KB bearer token never reaches the JWT code (SECURITY.md 15);
access tokens in the query string (``?access_token=``) are refused
(RFC 9700 §4.3.2, SECURITY.md 16).
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Receive, Scope, Send


async def _reject(send: Send, status: int, error: str, description: str) -> None:
    body = json.dumps({"error": error, "error_description": description}).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
        (b"cache-control", b"no-store")]})
    await send({"type": "http.response.body", "body": body})


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, max_header_bytes: int = 16 * 1024) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if size > self.max_header_bytes:
            await _reject(send, 431, "invalid_request", "request headers are too large")
            return
        query: bytes = scope.get("query_string", b"")
        if query and scope["path"].startswith("/.auth/") and (
            query.startswith(b"access_token=") or b"&access_token=" in query
        ):
            await _reject(send, 400, "invalid_request",
                          "access tokens are not accepted in the URL; use the Authorization header")
            return
        await self.app(scope, receive, send)
