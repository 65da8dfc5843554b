"""``authgate serve``: run the gateway and authorization server under uvicorn.

With no configuration at all this is the embedded default: SQLite in
``./.authgate/``, keys generated on first start. The service is opened once
before uvicorn starts -- to generate keys, apply migrations and report what
is missing (no user yet) on the terminal -- and closed again; the app's
lifespan then opens its own in uvicorn's event loop, since connections of
some backends belong to the loop that made them.

uvicorn runs with uvloop + httptools (DESIGN.md §5) and ``proxy_headers``
off: client addresses from ``X-Forwarded-For`` are only believed for the
``gateway.trusted_proxies`` authgate itself is configured with.
"""

from __future__ import annotations

import argparse
import copy
import secrets
from typing import Any

from ..config import Settings
from ..service import AuthGate
from ._common import (
    EXIT_USAGE,
    CLIError,
    Subparsers,
    command,
    fields,
    load,
    redact_url,
    warn,
    with_gate,
)

LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")
DEMO_USER = "demo"


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "serve", "run the gateway and OAuth 2.0 / OpenID Connect server",
                parents, run)
    p.add_argument("--host", help="listen address (default: the host setting, 127.0.0.1)")
    p.add_argument("--port", type=int, help="listen port (default: the port setting, 8080)")
    p.add_argument("--demo", action="store_true",
                   help="run the bundled demo app behind the gateway (unless `upstream` is set) and, "
                        "if there is no user, create user 'demo' (random password, printed once)")
    p.add_argument("--access-log", action="store_true", help="log every request (default: off)")


def _follow_port(settings: Settings) -> None:
    """With the default public_url, ``--port 9000`` should also move the issuer to 9000."""
    if settings.public_url == Settings().public_url and settings.port != Settings().port:
        settings.public_url = f"http://localhost:{settings.port}"


def _listen_url(settings: Settings) -> str:
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    return f"http://{host}:{settings.port}"


async def _prepare(gate: AuthGate, demo: bool) -> bool:
    """Create the demo user and client if asked; True when at least one user exists."""
    has_users = bool(await gate.accounts.list())
    if not demo:
        return has_users
    if not has_users:
        password = secrets.token_urlsafe(12)
        await gate.accounts.add(DEMO_USER, password, name="Demo User")
        print(f"demo user created: {DEMO_USER}")
        print(f"demo password (shown once): {password}")
        has_users = True
    elif await gate.accounts.by_username(DEMO_USER) is not None:
        print(f"demo user: {DEMO_USER} (forgot the password? `authgate users passwd {DEMO_USER}`)")
    return has_users


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup, with authgate's own loggers on the same handler."""
    from uvicorn.config import LOGGING_CONFIG

    config: dict[str, Any] = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"]["authgate"] = {"handlers": ["default"], "propagate": False,
                                     "level": "DEBUG" if level == "trace" else level.upper()}
    return config


def run(args: argparse.Namespace) -> int:
    settings = load(args, host=args.host, port=args.port)
    level = settings.log_level.lower()
    if level not in LOG_LEVELS:
        raise CLIError(f"log_level must be one of {', '.join(LOG_LEVELS)}", EXIT_USAGE)
    if not 0 < settings.port < 65536:
        raise CLIError(f"port must be 1-65535, got {settings.port}", EXIT_USAGE)
    _follow_port(settings)
    for message in settings.warnings():
        warn(message)
    try:
        from ..app import create_app
    except ImportError as exc:
        raise CLIError(f"the web application cannot be loaded: {exc}") from None
    has_users = with_gate(settings, lambda gate: _prepare(gate, args.demo), create_keys=True)

    print(f"authgate listening on {_listen_url(settings)}  (issuer {settings.issuer})", flush=True)
    source = "none, embedded defaults" if settings.source == "defaults" else settings.source
    fields([("config", source), ("store", redact_url(settings.store_url))])
    if not has_users:
        print("no users yet: create the first one with `authgate users add NAME`")
    print(flush=True)
    demo = None
    if args.demo and not settings.upstream:
        from ..demo import DemoServer

        demo = DemoServer()
        settings.upstream = demo.start()
        print(f"demo app (the upstream) on {settings.upstream}; open {settings.public_url.rstrip('/')}/ "
              "and sign in", flush=True)
    try:
        _run_uvicorn(create_app(settings), settings, level, args.access_log)
    finally:
        if demo is not None:
            demo.stop()
    return 0


def _run_uvicorn(app: Any, settings: Any, level: str, access_log: bool) -> None:
    import uvicorn

    from ..http_server import HttpProtocol

    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        loop="uvloop",
        http=HttpProtocol,
        proxy_headers=False,
        server_header=False,
        lifespan="on",
        log_level=level,
        log_config=_log_config(level),
        access_log=access_log,
    )
