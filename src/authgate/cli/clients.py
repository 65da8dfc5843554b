"""``authgate clients``: OAuth client registration (RFC 6749 §2).

A confidential client gets a generated 256-bit secret unless one is piped in
with ``--secret-stdin``. authgate stores only its HMAC, so ``clients add`` is
the one and only moment the secret can be shown -- it is printed once,
labelled, and no other command can ever print it again.
"""

from __future__ import annotations

import argparse
from typing import Any

from ..clients import GRANT_TYPES
from ..config import parse_duration
from ..service import AuthGate
from ._common import (
    CLIError,
    Subparsers,
    clean,
    command,
    fields,
    format_duration,
    group,
    iso,
    load,
    read_line,
    table,
    with_gate,
)

_LIFETIMES = ("refresh_absolute_lifetime", "refresh_inactivity_lifetime", "access_token_lifetime")


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    clients = group(sub, "clients", "manage OAuth clients", parents)
    p = command(clients, "add", "register a client (confidential with a generated secret "
                "unless --public or --secret-stdin)", parents, add)
    p.add_argument("client_id", metavar="CLIENT_ID")
    kind = p.add_mutually_exclusive_group()
    kind.add_argument("--public", action="store_true",
                      help="public client (SPA, mobile, CLI): no secret, PKCE only")
    kind.add_argument("--secret-stdin", action="store_true",
                      help="read the client secret (at least 32 characters) as one line from stdin")
    p.add_argument("--redirect-uri", action="append", default=[], metavar="URI",
                   dest="redirect_uris", help="allowed redirect URI (repeatable)")
    p.add_argument("--post-logout-redirect-uri", action="append", default=[], metavar="URI",
                   dest="post_logout_redirect_uris",
                   help="allowed post-logout redirect URI (repeatable)")
    p.add_argument("--grant-type", action="append", metavar="GRANT", dest="grant_types",
                   help=f"allowed grant (repeatable): {', '.join(GRANT_TYPES)} "
                        "(default: authorization_code and refresh_token)")
    p.add_argument("--scope", action="append", metavar="SCOPE", dest="scopes",
                   help="allowed scope (repeatable; default: openid profile email offline_access)")
    p.add_argument("--name", default="", help="display name shown on the consent/login page")
    p.add_argument("--refresh-absolute-lifetime", metavar="DURATION",
                   help="refresh-token family lifetime from login (default: tokens setting, 90d)")
    p.add_argument("--refresh-inactivity-lifetime", metavar="DURATION",
                   help="refresh token dies when unused this long (default: tokens setting, 14d)")
    p.add_argument("--access-token-lifetime", metavar="DURATION",
                   help="access token lifetime (default: tokens setting, 1h)")
    command(clients, "list", "list clients (never their secrets)", parents, list_)
    p = command(clients, "remove", "delete a client", parents, remove)
    p.add_argument("client_id", metavar="CLIENT_ID")


def _options(args: argparse.Namespace) -> dict[str, Any]:
    """Only what was given, so the registry's defaults apply to the rest."""
    options: dict[str, Any] = {"name": args.name, "redirect_uris": args.redirect_uris,
                               "post_logout_redirect_uris": args.post_logout_redirect_uris}
    if args.grant_types is not None:
        options["grant_types"] = args.grant_types
    if args.scopes is not None:
        options["scopes"] = args.scopes
    for name in _LIFETIMES:
        value = getattr(args, name)
        if value is not None:
            seconds = parse_duration(value, "--" + name.replace("_", "-"))
            if seconds <= 0:
                raise CLIError(f"--{name.replace('_', '-')} must be positive", 2)
            options[name] = seconds
    return options


def add(args: argparse.Namespace) -> int:
    options = _options(args)

    async def go(gate: AuthGate) -> int:
        if await gate.clients.get(args.client_id) is not None:
            raise CLIError(f"client {clean(args.client_id)!r} already exists")
        given = read_line("client secret") if args.secret_stdin else None
        client, secret = await gate.clients.add(args.client_id, public=args.public, secret=given,
                                                **options)
        kind = "public" if client.public else "confidential"
        print(f"added {kind} client {client.client_id!r}")
        rows: list[tuple[str, object]] = [
            ("grants", ", ".join(client.grant_types)),
            ("scopes", " ".join(client.scopes)),
            ("redirect URIs", ", ".join(client.redirect_uris) or "-"),
        ]
        rows += [(n.replace("_", " "), format_duration(getattr(client, n)))
                 for n in _LIFETIMES if getattr(client, n) is not None]
        fields(rows)
        if secret is not None and given is None:
            print()
            print("client secret (shown once, store it now; authgate keeps only a hash):")
            print(f"  {secret}")
        return 0

    return with_gate(load(args), go)


def list_(args: argparse.Namespace) -> int:
    async def go(gate: AuthGate) -> int:
        clients = sorted(await gate.clients.list(), key=lambda c: c.client_id)
        table(["CLIENT_ID", "TYPE", "NAME", "GRANTS", "SCOPES", "REDIRECT_URIS", "CREATED"],
              [[c.client_id, "public" if c.public else "confidential", c.name or "-",
                ",".join(c.grant_types), " ".join(c.scopes), " ".join(c.redirect_uris) or "-",
                iso(c.created_at)] for c in clients],
              empty="no clients yet: register one with `authgate clients add CLIENT_ID`")
        return 0

    return with_gate(load(args), go)


def remove(args: argparse.Namespace) -> int:
    async def go(gate: AuthGate) -> int:
        revoked = await gate.remove_client(args.client_id)
        if revoked is None:
            raise CLIError(f"no client {clean(args.client_id)!r}")
        print(f"removed client {args.client_id!r} and revoked its {revoked} grant(s): "
              "its refresh tokens and access tokens no longer work")
        return 0

    return with_gate(load(args), go)
