"""``authgate users``: the built-in accounts of the ``local`` provider.

Disabling a user or changing a password also signs the user out everywhere
(every refresh-token family, SSO session and outstanding access token): a
password change is how people recover from a leak, so it must end whatever
the leak let an attacker start (SECURITY.md).
"""

from __future__ import annotations

import argparse

from ..service import AuthGate
from ._common import (
    CLIError,
    Subparsers,
    clean,
    command,
    fields,
    find_user,
    group,
    iso,
    load,
    plural,
    read_new_password,
    table,
    with_gate,
)


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    users = group(sub, "users", "manage built-in accounts", parents)
    p = command(users, "add", "create a user (asks for the password twice)", parents, add)
    p.add_argument("username", metavar="NAME")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password as one line from stdin instead of prompting")
    p.add_argument("--name", default="", help="display name (default: the username)")
    p.add_argument("--email", default="", help="e-mail address")
    command(users, "list", "list users", parents, list_)
    p = command(users, "disable", "disable a user and sign them out everywhere", parents, disable)
    p.add_argument("username", metavar="NAME")
    p = command(users, "enable", "re-enable a disabled user", parents, enable)
    p.add_argument("username", metavar="NAME")
    p = command(users, "passwd", "set a new password and sign the user out everywhere",
                parents, passwd)
    p.add_argument("username", metavar="NAME")
    p.add_argument("--password-stdin", action="store_true",
                   help="read the password as one line from stdin instead of prompting")


def add(args: argparse.Namespace) -> int:
    async def go(gate: AuthGate) -> int:
        if await gate.accounts.by_username(args.username) is not None:
            raise CLIError(f"user {clean(args.username)!r} already exists")
        password = read_new_password(args.password_stdin)
        user = await gate.accounts.add(args.username, password, name=args.name, email=args.email)
        print(f"added user {user.username!r}")
        fields([("id", user.id), ("name", user.name), ("email", user.email or "-")])
        return 0

    return with_gate(load(args), go)


def list_(args: argparse.Namespace) -> int:
    async def go(gate: AuthGate) -> int:
        users = sorted(await gate.accounts.list(), key=lambda u: u.username)
        table(["USERNAME", "ID", "NAME", "EMAIL", "DISABLED", "CREATED"],
              [[u.username, u.id, u.name, u.email or "-", "yes" if u.disabled else "no",
                iso(u.created_at)] for u in users],
              empty="no users yet: create one with `authgate users add NAME`")
        return 0

    return with_gate(load(args), go)


def disable(args: argparse.Namespace) -> int:
    async def go(gate: AuthGate) -> int:
        user = await find_user(gate, args.username)
        user.disabled = True
        await gate.accounts.save(user)
        grants = await gate.sign_out_everywhere(user.id, reason="user disabled")
        print(f"disabled user {user.username!r}; "
              f"signed out everywhere ({plural(grants, 'grant')} revoked)")
        return 0

    return with_gate(load(args), go)


def enable(args: argparse.Namespace) -> int:
    async def go(gate: AuthGate) -> int:
        user = await find_user(gate, args.username)
        if not user.disabled:
            print(f"user {user.username!r} is already enabled")
            return 0
        user.disabled = False
        await gate.accounts.save(user)
        print(f"enabled user {user.username!r}")
        return 0

    return with_gate(load(args), go)


def passwd(args: argparse.Namespace) -> int:
    async def go(gate: AuthGate) -> int:
        user = await find_user(gate, args.username)
        password = read_new_password(args.password_stdin)
        await gate.accounts.set_password(user, password)
        grants = await gate.sign_out_everywhere(user.id, reason="password changed")
        print(f"changed the password of {user.username!r}; "
              f"signed out everywhere ({plural(grants, 'grant')} revoked)")
        return 0

    return with_gate(load(args), go)
