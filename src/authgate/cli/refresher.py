"""``authgate refresher``: keep users' provider tokens fresh while they are away.

Apps that call provider APIs from background jobs need access tokens even when
nobody is signed in. This refreshes every stored grant that expires within
``gateway.refresh_skew`` (or is past half its lifetime) and reports grants the
provider no longer honours -- those users must sign in again. ``serve`` does the
same in the background when ``gateway.refresher_interval`` is set.
"""

from __future__ import annotations

import argparse

from ..config import parse_duration
from ..service import AuthGate
from ._common import EXIT_USAGE, CLIError, Subparsers, command, load, with_gate


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "refresher", "refresh stored provider tokens before they expire "
                "(offline access for background jobs)", parents, run)
    p.add_argument("--once", action="store_true", help="make one pass, print its report and exit")
    p.add_argument("--interval", default="5m", help="time between passes (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    try:
        interval = parse_duration(args.interval, "--interval")
    except Exception as exc:
        raise CLIError(str(exc), EXIT_USAGE) from None
    if interval <= 0:
        raise CLIError("--interval must be positive", EXIT_USAGE)

    async def go(gate: AuthGate) -> int:
        from ..gateway import Gateway
        from ..gateway.freshness import run_refresher

        gw = Gateway(gate)
        gate.cluster.attach(gw)
        try:
            report = await run_refresher(gw, interval, once=args.once)
        finally:
            await gw.close()
        print(f"checked {report.checked}, refreshed {report.refreshed}, dead {len(report.dead)}, "
              f"provider unavailable {len(report.unavailable)}")
        for grant in report.dead:
            print(f"  {grant.user_key} at {grant.provider} must sign in again: {grant.reason}")
        return 0

    return with_gate(load(args), go)
