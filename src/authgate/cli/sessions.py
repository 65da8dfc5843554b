"""``authgate sessions``: who is signed in where.

A user's "sessions" are of two kinds: refresh-token families (one per login
at one client: apps that stay signed in) and SSO browser sessions (the
issuer's own login cookie). Both are listed by their public identifiers --
the family id and the ``sid`` -- never by a token.
"""

from __future__ import annotations

import argparse

from ..accounts import User
from ..service import AuthGate
from ._common import Subparsers, command, find_user, group, iso, load, table, with_gate
from .tokens import add_revoke


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    sessions = group(sub, "sessions", "list or revoke signed-in sessions", parents)
    p = command(sessions, "list", "list refresh-token families and SSO browser sessions",
                parents, list_)
    p.add_argument("--user", metavar="NAME", help="only this user (default: every user)")
    add_revoke(sessions, parents)


def list_(args: argparse.Namespace) -> int:
    async def go(gate: AuthGate) -> int:
        users: list[User]
        if args.user is not None:
            users = [await find_user(gate, args.user)]
        else:
            users = sorted(await gate.accounts.list(), key=lambda u: u.username)
        families: list[list[object]] = []
        browsers: list[list[object]] = []
        for user in users:
            for family, e in sorted((await gate.refresh.families_of(user.id)).items()):
                d = e.data
                families.append([user.username, family, d.get("client_id", "-"),
                                 d.get("scope", ""), iso(d.get("auth_time")),
                                 iso(d.get("issued_at")), iso(e.expires_at)])
            for s in sorted(await gate.sso.of_user(user.id), key=lambda s: s.auth_time):
                browsers.append([user.username, s.sid, iso(s.auth_time), iso(s.expires_at)])
        print("Refresh-token families (apps that stay signed in)")
        table(["USER", "FAMILY", "CLIENT", "SCOPE", "AUTHENTICATED", "LAST_ROTATED", "EXPIRES"],
              families, empty="  none")
        print()
        print("SSO browser sessions")
        table(["USER", "SID", "AUTHENTICATED", "EXPIRES"], browsers, empty="  none")
        return 0

    return with_gate(load(args), go)
