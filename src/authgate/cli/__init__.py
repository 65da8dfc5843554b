"""The ``authgate`` command line (DESIGN.md §2.6).

One module per command group, each with a ``register(subparsers, parents)``;
this module only assembles the parser and turns every failure into one line
``authgate: error: <reason>`` on stderr and an exit code: 2 for usage and
configuration errors, 1 when a command cannot be done (not found, already
exists), 130 when interrupted. Operators script these commands, so errors
must be parseable and stack traces must not leak internals into their logs.
"""

from __future__ import annotations

import sys
import traceback
from collections.abc import Sequence

from .._version import __version__
from ..errors import AuthGateError, ConfigError
from . import audit, clients, config_cmd, init, keys, refresher, serve, sessions, store_cmd, tokens, users
from ._common import EXIT_FAILURE, EXIT_USAGE, ArgumentParser, CLIError, add_global_options, clean

__all__ = ["build_parser", "main"]

COMMANDS = (init, serve, users, clients, keys, tokens, sessions, audit, store_cmd, config_cmd, refresher)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="authgate",
        description="Self-hosted authentication gateway and OAuth 2.0 / OpenID Connect server.",
        epilog="Run 'authgate COMMAND --help' for the options of a command.",
    )
    add_global_options(parser, suppress=False)
    parser.add_argument("--version", action="version", version=f"authgate {__version__}")
    common = ArgumentParser(add_help=False)
    add_global_options(common, suppress=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True,
                                parser_class=ArgumentParser)
    for module in COMMANDS:
        module.register(sub, [common])
    return parser


def _fail(message: object, code: int) -> int:
    text = " ".join(clean(message).split()) or "unknown error"
    print(f"authgate: error: {text}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (the console script exits with it)."""
    args = None
    try:
        args = build_parser().parse_args(argv)
        code: int = args.func(args)
        return code
    except CLIError as exc:
        return _fail(exc, exc.code)
    except ConfigError as exc:
        return _fail(exc, EXIT_USAGE)
    except AuthGateError as exc:
        return _fail(exc, EXIT_FAILURE)
    except OSError as exc:
        return _fail(exc, EXIT_FAILURE)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except Exception as exc:
        if args is not None and getattr(args, "debug", False):
            traceback.print_exc()
        return _fail(f"unexpected {type(exc).__name__}: {exc} (run with --debug for details)",
                     EXIT_FAILURE)
