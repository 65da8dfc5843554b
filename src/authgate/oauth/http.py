"""HTTP plumbing shared by the OAuth endpoints: strict form bodies and responses.

RFC 6749 §3.2 / §5: token requests are ``application/x-www-form-urlencoded``
POSTs; parameters sent without a value are treated as omitted; a parameter
must not be included more than once; responses carry
``Cache-Control: no-store``. Bodies are size-limited before they are read in
full and decoded strictly: bad percent-encoding, invalid UTF-8, NUL or other
control characters are an ``invalid_request``, never a 500.

The token, revocation and introspection endpoints -- form POSTs answered with
JSON, the per-request hot path of every OAuth client -- are
:class:`FormEndpoint`\\ s: plain ASGI apps that read the same strict form
straight off the ASGI scope and send pre-encoded JSON, without building a
Starlette ``Request`` and ``JSONResponse`` per call. Errors are still raised as
:class:`OAuthError`\\ s and rendered by the app's one handler.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse
from starlette.types import Receive, Scope, Send

from ..errors import InvalidRequest, MethodNotAllowed, OAuthError, RequestTooLarge

if TYPE_CHECKING:
    from ..service import AuthGate

MAX_FORM_BYTES = 64 * 1024
MAX_VALUE_CHARS = 4096
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _check_declared(declared: str | None, limit: int) -> None:
    if declared is not None:
        try:
            if int(declared) > limit:
                raise RequestTooLarge(f"request body exceeds {limit} bytes")
        except ValueError:
            raise InvalidRequest("bad Content-Length") from None


def _form_type(ctype: str) -> None:
    if ctype.split(";", 1)[0].strip().lower() != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")


async def read_body(request: Request, limit: int = MAX_FORM_BYTES) -> bytes:
    _check_declared(request.headers.get("content-length"), limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def _decode(raw: bytes) -> str:
    try:
        text = unquote_to_bytes(raw.replace(b"+", b" ")).decode("utf-8", "strict")
    except UnicodeDecodeError:
        raise InvalidRequest("parameters must be UTF-8") from None
    if _CONTROL.search(text):
        raise InvalidRequest("parameters must not contain control characters")
    if len(text) > MAX_VALUE_CHARS:
        raise InvalidRequest("a parameter is too long")
    return text


def parse_form(body: bytes) -> dict[str, str]:
    """Parse a urlencoded body strictly; duplicates are an error, empty values are absent."""
    out: dict[str, str] = {}
    if not body:
        return out
    for part in body.split(b"&"):
        if not part:
            continue
        name_raw, _, value_raw = part.partition(b"=")
        if b"%" in part:
            for seg in (name_raw, value_raw):
                i = seg.find(b"%")
                while i != -1:
                    hexpart = seg[i + 1 : i + 3]
                    if len(hexpart) != 2 or not all(c in b"0123456789abcdefABCDEF" for c in hexpart):
                        raise InvalidRequest("malformed percent-encoding")
                    i = seg.find(b"%", i + 1)
        name, value = _decode(name_raw), _decode(value_raw)
        if name in out:
            raise InvalidRequest(f"parameter {name!r} is repeated")
        out[name] = value
    return {k: v for k, v in out.items() if v != ""}


async def read_form(request: Request) -> dict[str, str]:
    if request.method != "POST":
        raise MethodNotAllowed("use POST")
    _form_type(request.headers.get("content-type", ""))
    return parse_form(await read_body(request))


def json_response(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={**NO_STORE, **(headers or {})})


def error_response(exc: OAuthError) -> JSONResponse:
    headers = dict(exc.headers())
    if exc.status_code == 405:
        headers["Allow"] = "POST"
    return json_response(exc.body(), exc.status_code, headers)


class FormRequest:
    """A form POST to an OAuth endpoint, as read by :class:`FormEndpoint`."""

    __slots__ = ("authorization", "form", "host", "scope")

    def __init__(self, scope: Scope, form: dict[str, str], authorization: str | None) -> None:
        self.scope = scope
        self.form = form
        self.authorization = authorization
        """The first ``Authorization`` header, if any (as Starlette's ``headers.get``)."""
        client = scope.get("client")
        self.host: str = client[0] if client else "-"

    @property
    def gate(self) -> AuthGate:
        gate: AuthGate = self.scope["app"].state.gate
        return gate


Handler = Callable[[FormRequest], Awaitable[dict[str, Any] | None]]

_JSON = json.JSONEncoder(allow_nan=False, separators=(",", ":"))
"""Built once. ASCII-escaped (unlike Starlette's ``JSONResponse``): the same JSON values,
and CPython's ASCII encoder is several times faster on the long token strings."""
_NO_STORE = [(b"cache-control", b"no-store"), (b"pragma", b"no-cache")]


class FormEndpoint:
    """An OAuth endpoint taking a strict form POST and answering 200 with JSON.

    The same rules as :func:`read_form` (POST only, the urlencoded content type, the
    size limit declared and actual, :func:`parse_form`), applied to the raw ASGI
    messages. ``handler`` returns the JSON body, or None for an empty 200
    (RFC 7009 §2.2); every response carries ``Cache-Control: no-store``.
    """

    def __init__(self, handler: Handler, limit: int = MAX_FORM_BYTES) -> None:
        self.handler = handler
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["method"] != "POST":
            raise MethodNotAllowed("use POST")
        ctype = declared = authorization = None
        for name, value in scope["headers"]:
            if name == b"content-type":
                ctype = ctype if ctype is not None else value.decode("latin-1")
            elif name == b"content-length":
                declared = declared if declared is not None else value.decode("latin-1")
            elif name == b"authorization":
                authorization = authorization if authorization is not None else value.decode("latin-1")
        _form_type(ctype or "")
        _check_declared(declared, self.limit)
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ClientDisconnect()
            chunk = message.get("body", b"")
            if len(body) + len(chunk) > self.limit:
                raise RequestTooLarge(f"request body exceeds {self.limit} bytes")
            body += chunk
            more = message.get("more_body", False)
        data = await self.handler(FormRequest(scope, parse_form(body), authorization))
        content = b"" if data is None else _JSON.encode(data).encode("utf-8")
        headers = [(b"content-length", str(len(content)).encode("latin-1")), *_NO_STORE]
        if data is not None:
            headers.append((b"content-type", b"application/json"))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": content})
