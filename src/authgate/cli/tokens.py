"""``authgate tokens revoke --user NAME``: sign a user out everywhere.

Revokes every refresh-token family of the user (and, through the denylist,
every access token issued from them), ends the user's SSO browser sessions,
and denies access tokens issued before now. It is what to run after a stolen
laptop or a leaked password; ``authgate sessions revoke`` is the same command.
"""

from __future__ import annotations

import argparse

from ..service import AuthGate
from ._common import Subparsers, command, find_user, group, load, plural, with_gate


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    tokens = group(sub, "tokens", "revoke the tokens authgate issued", parents)
    add_revoke(tokens, parents)


def add_revoke(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    """``revoke --user NAME``, shared by ``tokens`` and ``sessions``."""
    p = command(sub, "revoke", "sign a user out everywhere: revoke every refresh token, "
                "SSO session and outstanding access token", parents, revoke)
    p.add_argument("--user", required=True, metavar="NAME", help="the user to sign out")
    p.add_argument("--reason", default="revoked by an administrator",
                   help="recorded in the audit log (default: %(default)r)")


def revoke(args: argparse.Namespace) -> int:
    async def go(gate: AuthGate) -> int:
        user = await find_user(gate, args.user)
        sessions = len(await gate.sso.of_user(user.id))
        grants = await gate.sign_out_everywhere(user.id, reason=args.reason)
        print(f"signed {user.username!r} out everywhere: {plural(grants, 'grant')} revoked, "
              f"{plural(sessions, 'SSO session')} ended, access tokens issued until now denied")
        return 0

    return with_gate(load(args), go)
