"""HTTP plumbing shared by the OAuth endpoints: strict form bodies and responses.

RFC 6749 §3.2 / §5: token requests are ``application/x-www-form-urlencoded``
POSTs; parameters sent without a value are treated as omitted; a parameter
must not be included more than once; responses carry
``Cache-Control: no-store``. Bodies are size-limited before they are read in
full and decoded strictly: bad percent-encoding, invalid UTF-8, NUL or other
control characters are an ``invalid_request``, never a 500.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import unquote_to_bytes

from starlette.requests import Request
from starlette.responses import JSONResponse

from ..errors import InvalidRequest, MethodNotAllowed, OAuthError, RequestTooLarge

MAX_FORM_BYTES = 64 * 1024
MAX_VALUE_CHARS = 4096
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


async def read_body(request: Request, limit: int = MAX_FORM_BYTES) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > limit:
                raise RequestTooLarge(f"request body exceeds {limit} bytes")
        except ValueError:
            raise InvalidRequest("bad Content-Length") from None
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
    ctype = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise InvalidRequest("the body must be application/x-www-form-urlencoded")
    return parse_form(await read_body(request))


def json_response(data: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(data, status_code=status, headers={**NO_STORE, **(headers or {})})


def error_response(exc: OAuthError) -> JSONResponse:
    headers = dict(exc.headers())
    if exc.status_code == 405:
        headers["Allow"] = "POST"
    return json_response(exc.body(), exc.status_code, headers)
