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


def refusal(scope: Scope, max_header_bytes: int) -> tuple[int, str] | None:
    """Why an HTTP request must be refused before any endpoint runs (status, reason), or None."""
    size = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
    if size > max_header_bytes:
        return 431, "request headers are too large"
    query: bytes = scope.get("query_string", b"")
    if query and scope["path"].startswith("/.auth/") and (
        query.startswith(b"access_token=") or b"&access_token=" in query
    ):
        return 400, "access tokens are not accepted in the URL; use the Authorization header"
    return None


async def reject(send: Send, why: tuple[int, str]) -> None:
    await _reject(send, why[0], "invalid_request", why[1])


class LimitsMiddleware:
    def __init__(self, app: ASGIApp, max_header_bytes: int = 16 * 1024) -> None:
        self.app = app
        self.max_header_bytes = max_header_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and (why := refusal(scope, self.max_header_bytes)):
            await reject(send, why)
            return
        await self.app(scope, receive, send)
