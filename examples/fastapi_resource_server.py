"""An API that accepts authgate access tokens: FastAPI, or plain Starlette without it.

``RequireAccessToken`` verifies the bearer token per RFC 9068 -- signature
with the issuer's published keys (fetched once, refetched on an unknown
``kid`` at most once a minute), ``typ: at+jwt``, exact ``iss``, ``aud``,
``exp`` with a bounded leeway, algorithms ES256/EdDSA/RS256 only -- and
answers 401 ``invalid_token`` or 403 ``insufficient_scope`` as RFC 6750 says.
It is a plain callable taking a Starlette ``Request``, so FastAPI uses it with
``Depends`` and Starlette endpoints simply ``await`` it.

Try it without any setup (a throwaway authgate, this API, and a client
calling it; uses FastAPI when installed, else the Starlette version)::

    python examples/fastapi_resource_server.py --demo

Serve it for your authgate (FastAPI: ``pip install fastapi``)::

    AUTHGATE_ISSUER=https://id.example/.auth AUTHGATE_AUDIENCE=https://id.example \\
        uvicorn --app-dir examples fastapi_resource_server:app --port 8000

``AUTHGATE_AUDIENCE`` is authgate's ``public_url``: its access tokens carry
that as ``aud``.
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from authgate.client import AccessToken, RequireAccessToken

try:
    from fastapi import Depends, FastAPI  # type: ignore[import-not-found, unused-ignore]
except ImportError:  # FastAPI is optional: the Starlette app below needs nothing extra
    FastAPI = None

FASTAPI_MISSING = ("FastAPI is not installed (pip install fastapi); "
                   "serving the plain Starlette version of this API instead.")


def fastapi_app(require: RequireAccessToken, require_admin: RequireAccessToken) -> Any:
    """The FastAPI version: the dependency goes into ``Depends``."""
    if FastAPI is None:
        raise RuntimeError(FASTAPI_MISSING)
    api = FastAPI(title="things API")

    async def things(token: AccessToken = Depends(require)) -> dict[str, Any]:  # noqa: B008
        return {"owner": token.sub, "things": ["teapot", "kettle"]}

    async def purge(token: AccessToken = Depends(require_admin)) -> dict[str, Any]:  # noqa: B008
        return {"purged_by": token.sub}

    api.add_api_route("/things", things, methods=["GET"])  # i.e. @api.get("/things")
    api.add_api_route("/things", purge, methods=["DELETE"])
    return api


def starlette_app(require: RequireAccessToken, require_admin: RequireAccessToken) -> Starlette:
    """The same API in plain Starlette: ``await`` the dependency; its HTTPException answers."""
    async def things(request: Request) -> Response:
        token = await require(request)
        return JSONResponse({"owner": token.sub, "things": ["teapot", "kettle"]})

    async def purge(request: Request) -> Response:
        token = await require_admin(request)
        return JSONResponse({"purged_by": token.sub})

    return Starlette(routes=[Route("/things", things, methods=["GET"]),
                             Route("/things", purge, methods=["DELETE"])])


def build(issuer: str, audience: str) -> Any:
    require = RequireAccessToken(issuer=issuer, audience=audience)
    require_admin = RequireAccessToken(issuer=issuer, audience=audience, scopes=["admin"],
                                       jwks=require.jwks)  # one key cache for both
    if FastAPI is None:
        print(FASTAPI_MISSING, file=sys.stderr)
        return starlette_app(require, require_admin)
    return fastapi_app(require, require_admin)


def _from_environment() -> Any:
    issuer = os.environ.get("AUTHGATE_ISSUER")
    if not issuer:
        return None
    return build(issuer, os.environ.get("AUTHGATE_AUDIENCE") or issuer.removesuffix("/.auth"))


app = _from_environment()  # for `uvicorn fastapi_resource_server:app`


def demo() -> None:
    import threading
    import time

    import httpx
    import uvicorn
    from _demo import browser_sign_in, demo_server
    from cli_for_weeks import sign_in

    from authgate.client import OAuth2Auth

    with demo_server() as idp:
        api = build(idp.issuer, idp.base_url)
        server = uvicorn.Server(uvicorn.Config(api, host="127.0.0.1", port=0, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        url = f"http://127.0.0.1:{port}/things"
        try:
            print("no token      ->", httpx.get(url).status_code, httpx.get(url).headers.get(
                "www-authenticate"))
            print("garbage token ->", httpx.get(url, headers={"Authorization": "Bearer x.y.z"})
                  .status_code)
            tokens = sign_in(idp.issuer, idp.client_id, idp.client_secret,
                             lambda u: browser_sign_in(u, "demo", idp.users["demo"]))
            auth = OAuth2Auth(f"{idp.issuer}/oauth2/token", idp.client_id, idp.client_secret,
                              tokens=tokens)
            with httpx.Client(auth=auth) as http:
                print("signed in     ->", http.get(url).status_code, http.get(url).json())
                print("needs admin   ->", http.delete(url).status_code)
                before = auth.tokens
                time.sleep(6)  # past half of the 10 s token lifetime: refreshed before the call
                status = http.get(url).status_code
                print("6 s later     ->", status, "refreshed first:", auth.tokens != before)
        finally:
            server.should_exit = True
            thread.join(10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--demo", action="store_true", help="run against a throwaway authgate")
    if not parser.parse_args().demo:
        parser.error("serve it with uvicorn (see the docstring), or try --demo")
    demo()
