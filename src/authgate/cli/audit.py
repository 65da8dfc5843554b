"""``authgate audit``: the grant history of one user (or client).

Answers "why was I signed out?": every issue, rotation, grace hit, reuse and
revocation, with its reason. Audit events never hold a token, only the family
id, so this output is safe to paste into a ticket.
"""

from __future__ import annotations

import argparse
import json

from ..audit import Event
from ..service import AuthGate
from ._common import (
    EXIT_USAGE,
    CLIError,
    Subparsers,
    clean,
    command,
    find_user,
    iso,
    load,
    table,
    with_gate,
)

FETCH_LIMIT = 100_000
"""The log is read oldest first; read this many to show the newest ``--limit``."""


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "audit", "show the audit log of a user or client", parents, run)
    who = p.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", metavar="NAME", help="events of this user")
    who.add_argument("--client", metavar="CLIENT_ID",
                     help="events recorded for a client without a user (client_credentials)")
    p.add_argument("--limit", type=int, default=50, metavar="N",
                   help="show the newest N events (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print a JSON array instead of a table")


def _row(e: Event) -> dict[str, str | None]:
    return {"time": iso(e.at), "event": e.event, "user": e.user, "client": e.client,
            "family": e.family, "reason": e.reason}


def run(args: argparse.Namespace) -> int:
    if args.limit < 1:
        raise CLIError("--limit must be at least 1", EXIT_USAGE)

    async def go(gate: AuthGate) -> int:
        subject = (await find_user(gate, args.user)).id if args.user is not None else f"client:{args.client}"
        events = (await gate.audit.for_subject(subject, limit=FETCH_LIMIT))[-args.limit:]
        if args.json:
            print(json.dumps([_row(e) for e in events], indent=2))
            return 0
        table(["TIME", "EVENT", "CLIENT", "FAMILY", "REASON"],
              [[iso(e.at), e.event, e.client or "-", e.family or "-", e.reason or "-"]
               for e in events],
              empty=f"no audit events for {clean(args.user or args.client)!r}")
        return 0

    return with_gate(load(args), go)
