"""What every command shares: settings, the opened service, errors and output.

Commands are plain functions ``run(args) -> exit code``. They raise
:class:`CLIError` (or let :class:`~authgate.errors.AuthGateError` /
``OSError`` escape) and :func:`authgate.cli.main` turns that into exactly one
``authgate: error: ...`` line on stderr -- an operator reading a cron mail
wants the reason, not a traceback. Output goes through :func:`table` and
:func:`iso`, which sanitise what users typed (names, e-mails) so a crafted
value cannot smuggle terminal escape sequences onto an admin's screen.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import hmac
import sys
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeAlias, TypeVar
from urllib.parse import urlsplit

from ..accounts import User
from ..config import Settings, load_settings
from ..keystore import load_local_keys
from ..service import AuthGate

T = TypeVar("T")

EXIT_FAILURE = 1
"""Not found, already exists, refused: the command was understood but cannot be done."""
EXIT_USAGE = 2
"""Bad arguments or configuration: fix the command line or the config file."""


class CLIError(Exception):
    """A failure to report as one line, with the exit code to leave with."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit code 2) like every other error."""

    def error(self, message: str) -> NoReturn:
        where = self.prog.removeprefix("authgate").strip()
        prefix = f"{where}: " if where else ""
        raise CLIError(f"{prefix}{message} (see '{self.prog} --help')", EXIT_USAGE)


def add_global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """``--config``/``--data-dir``/``--debug``, accepted before and after the command.

    On subcommands the defaults are suppressed so a value given before the
    command is not overwritten by the subcommand's default.
    """
    default = argparse.SUPPRESS if suppress else None
    parser.add_argument("--config", metavar="PATH", default=default,
                        help="config file (default: $AUTHGATE_CONFIG, else ./authgate.toml "
                             "if present)")
    parser.add_argument("--data-dir", metavar="DIR", default=default,
                        help="data directory for keys and the SQLite store (overrides data_dir)")
    parser.add_argument("--debug", action="store_true",
                        default=argparse.SUPPRESS if suppress else False,
                        help="show a traceback on unexpected errors")


def load(args: argparse.Namespace, **overrides: Any) -> Settings:
    """Settings from defaults < file < environment < command-line flags."""
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    given = {k: v for k, v in overrides.items() if v is not None}
    return load_settings(args.config, overrides=given)


def with_gate(settings: Settings, fn: Callable[[AuthGate], Awaitable[T]], *,
              create_keys: bool = False) -> T:
    """Open the service, run ``fn`` and close it again, in one event loop.

    Management commands refuse to invent key material (``create_keys=False``):
    a mistyped ``--data-dir`` must not silently start a second, empty
    installation whose users nobody can log in with.
    """

    async def go() -> T:
        keys = None if create_keys else load_local_keys(settings.data_dir, create=False)
        gate = await AuthGate.open(settings, local_keys=keys)
        try:
            return await fn(gate)
        finally:
            await gate.close()

    return asyncio.run(go())


async def find_user(gate: AuthGate, username: str) -> User:
    user = await gate.accounts.by_username(username)
    if user is None:
        raise CLIError(f"no user named {clean(username)!r}")
    return user


# -- secrets from the terminal or stdin --------------------------------------------


def read_line(what: str) -> str:
    """One line from stdin (``--password-stdin``, ``--secret-stdin``), newline removed."""
    value = sys.stdin.readline().rstrip("\r\n")
    if not value:
        raise CLIError(f"no {what} on stdin", EXIT_USAGE)
    return value


def read_new_password(from_stdin: bool) -> str:
    """The new password: from stdin, or typed twice at a terminal (never echoed)."""
    if from_stdin:
        return read_line("password")
    if not sys.stdin.isatty():
        raise CLIError("stdin is not a terminal: pass the password with --password-stdin",
                       EXIT_USAGE)
    try:
        first = getpass.getpass("New password: ")
        second = getpass.getpass("Repeat password: ")
    except EOFError:
        raise CLIError("no password given", EXIT_USAGE) from None
    if not hmac.compare_digest(first.encode(), second.encode()):
        raise CLIError("the passwords do not match", EXIT_USAGE)
    return first


# -- output ------------------------------------------------------------------------------


def clean(value: object) -> str:
    """Printable text only: no control characters or escape sequences reach the terminal."""
    return "".join(ch if ch.isprintable() else "?" for ch in str(value))


def iso(ts: float | None) -> str:
    """ISO 8601 UTC to the second, ``-`` when unknown or never."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def format_duration(seconds: float) -> str:
    """The largest unit that states the value exactly: ``90d``, ``8h``, ``30s``."""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], *, empty: str) -> None:
    """Left-aligned columns separated by two spaces; ``empty`` when there is no row."""
    if not rows:
        print(empty)
        return
    cells = [[clean(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    for line in ([*headers], *cells):
        print("  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip())


def fields(pairs: Sequence[tuple[str, object]]) -> None:
    """``label  value`` lines with the values aligned."""
    width = max(len(label) for label, _ in pairs)
    for label, value in pairs:
        print(f"  {label.ljust(width)}  {clean(value)}")


def warn(message: str) -> None:
    print(f"WARNING: {message}", file=sys.stderr)


def redact_url(url: str) -> str:
    """A store URL fit to print: no password, no query (SAS tokens live there)."""
    parts = urlsplit(url)
    out = url.partition("#")[0].partition("?")[0]
    if parts.password is not None:
        user = parts.netloc.rpartition("@")[0].partition(":")[0]
        host = parts.netloc.rpartition("@")[2]
        out = out.replace(parts.netloc, f"{user}:***@{host}" if user else f"***@{host}", 1)
    return out + ("?<redacted>" if parts.query else "")


# -- parser construction -------------------------------------------------------------

Subparsers: TypeAlias = "argparse._SubParsersAction[argparse.ArgumentParser]"
"""What ``add_subparsers`` returns; each command module registers into one."""


def command(sub: Subparsers, name: str, help: str, parents: list[argparse.ArgumentParser],
            func: Callable[[argparse.Namespace], int], description: str | None = None
            ) -> argparse.ArgumentParser:
    """Add one (sub)command that runs ``func``; its docstring-level help is ``help``."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=description or help,
                                                parents=parents)
    p.set_defaults(func=func)
    return p


def group(sub: Subparsers, name: str, help: str, parents: list[argparse.ArgumentParser]
          ) -> Subparsers:
    """A command group (``users``, ``clients`` ...) whose action is required."""
    p: argparse.ArgumentParser = sub.add_parser(name, help=help, description=help, parents=parents)
    actions: Subparsers = p.add_subparsers(dest="action", metavar="ACTION", required=True,
                                           parser_class=ArgumentParser)
    return actions
