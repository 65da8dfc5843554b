"""``authgate config``: configuration tools.

``authgate config import-easyauth FILE [--output PATH] [--force]`` turns an
Easy Auth v2 ``auth.json`` / ``authsettingsV2`` document into authgate TOML
(:mod:`authgate.easyauth`). The TOML goes to stdout, or to ``--output``
(never overwriting a file without ``--force``); what could not be mapped is
listed on stderr as well as in the file.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..easyauth import import_easyauth, load_document
from ._common import EXIT_FAILURE, CLIError, Subparsers, clean, command, group, warn

__all__ = ["add_parser", "import_easyauth_cmd", "register"]


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    config = group(sub, "config", "configuration tools", parents)
    p = command(config, "import-easyauth",
                "convert an Easy Auth v2 auth.json / authsettingsV2 document to authgate TOML",
                parents, import_easyauth_cmd)
    p.add_argument("file", metavar="FILE", help="the Easy Auth JSON document")
    p.add_argument("--output", "-o", metavar="PATH",
                   help="write the TOML here (default: standard output)")
    p.add_argument("--force", action="store_true", help="overwrite --output if it exists")


def add_parser(sub: Subparsers, parents: list[argparse.ArgumentParser] | None = None) -> None:
    """Alias of :func:`register`."""
    register(sub, parents or [])


def import_easyauth_cmd(args: argparse.Namespace) -> int:
    result = import_easyauth(load_document(args.file), source=Path(args.file).name)
    if args.output is None:
        sys.stdout.write(result.toml)
    else:
        out = Path(args.output)
        if out.exists() and not args.force:
            raise CLIError(f"{clean(out)} exists; pass --force to overwrite it", EXIT_FAILURE)
        out.write_text(result.toml, encoding="utf-8")
        print(f"wrote {clean(out)}", file=sys.stderr)
    for note in result.notes:
        warn(clean(f"not imported: {note}"))
    return 0
