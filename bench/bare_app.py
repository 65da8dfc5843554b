"""The framework ceiling: a bare Starlette app under the same uvicorn settings.

``GET /json`` answers a small JSON document; ``POST /form`` parses an
``application/x-www-form-urlencoded`` body (as the token endpoint must) and
answers JSON. Anything authgate does per request is measured against these.
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route


async def get_json(request: Request) -> JSONResponse:
    return JSONResponse({"status": "ok", "service": "bare"})


async def post_form(request: Request) -> JSONResponse:
    form = await request.form()
    return JSONResponse({"grant_type": form.get("grant_type"), "fields": len(form)},
                        headers={"Cache-Control": "no-store"})


app = Starlette(routes=[
    Route("/json", get_json, methods=["GET"]),
    Route("/form", post_form, methods=["POST"]),
])
