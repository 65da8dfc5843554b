"""``authgate store``: move the token store, purge it, re-seal it, see what it holds.

``migrate`` copies a store onto another backend as sealed bytes, so nobody is
signed out; it resumes from a checkpoint when interrupted and verifies the
copy before it says it is done. ``purge`` deletes what has expired, in small
batches, and is safe while the server runs (``serve`` also purges every 10
minutes). ``reseal`` moves every record onto the active sealing key after
``authgate keys rotate --sealing``; ``stats`` shows which keys are still in
use, and ``reseal --retire KID`` drops a key once nothing needs it.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TextIO

from ..clock import SystemClock
from ..config import Settings
from ..keystore import load_local_keys
from ..sealing import Sealer
from ..store.base import Backend
from ..store.factory import create_backend
from ..store.maintenance import (
    PURGE_BATCH,
    RESEAL_BATCH,
    UNREADABLE,
    check_retirable,
    purge_expired,
    reseal,
    retire_sealing_key,
    usage,
)
from ..store.migrate import CHECKPOINT_FILE, Checkpoint, KindProgress, migrate, same_store
from ..store.sealed import SealedStore
from ._common import (
    EXIT_USAGE,
    CLIError,
    Subparsers,
    command,
    group,
    load,
    plural,
    redact_url,
    table,
    warn,
)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    store = group(sub, "store", "migrate, purge, re-seal and inspect the token store", parents)
    p = command(store, "migrate", "copy every record to another store; users stay signed in",
                parents, migrate_)
    p.add_argument("--from", dest="source", metavar="URL",
                   help="the store to copy (default: the configured store)")
    p.add_argument("--to", dest="target", metavar="URL", required=True,
                   help="the empty store to copy into")
    p.add_argument("--batch", type=_positive, default=500, metavar="N",
                   help="records per batch (default: %(default)s)")
    p.add_argument("--checkpoint", metavar="PATH",
                   help=f"progress file for resuming (default: DATA_DIR/{CHECKPOINT_FILE})")
    p = command(store, "purge", "delete expired records in small batches", parents, purge_)
    _store_option(p)
    p.add_argument("--batch", type=_positive, default=PURGE_BATCH, metavar="N",
                   help="records per batch (default: %(default)s)")
    p.add_argument("--max-batches", type=_positive, metavar="N",
                   help="stop after N batches (default: until nothing expired is left)")
    p = command(store, "reseal", "re-seal every record with the active sealing key",
                parents, reseal_)
    _store_option(p)
    p.add_argument("--batch", type=_positive, default=RESEAL_BATCH, metavar="N",
                   help="records per batch (default: %(default)s)")
    p.add_argument("--retire", metavar="KID",
                   help="then remove sealing key KID from keys.json, if no live record uses it")
    _store_option(command(store, "stats", "count records per kind and per sealing key",
                          parents, stats_))


def _store_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="URL",
                   help="act on this store (default: the configured store)")


@asynccontextmanager
async def _backend(url: str) -> AsyncIterator[Backend]:
    backend = create_backend(url)
    try:
        await backend.open()
        yield backend
    finally:
        await backend.close()


def _sealer(settings: Settings) -> Sealer:
    """The installation's sealing keys; never invented (a mistyped --data-dir must fail)."""
    return Sealer(load_local_keys(settings.data_dir, create=False).sealing)


class ProgressBar:
    """Per-kind progress on a terminal (stderr), redrawn at most ten times a second.

    Not on a terminal (cron, CI logs) it stays silent: carriage-return
    animations make unreadable logs, and the command prints its result anyway.
    """

    WIDTH = 24

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.tty = stream.isatty()
        self._kind: str | None = None
        self._since = (0.0, 0)
        self._drawn = 0.0
        self._open = False

    def __call__(self, p: KindProgress) -> None:
        if not self.tty:
            return
        now = time.monotonic()
        if p.kind != self._kind:
            self._kind, self._since = p.kind, (now, p.scanned)
        elif not p.done and now - self._drawn < 0.1:
            return
        self._drawn = now
        fraction = min(1.0, p.scanned / p.total) if p.total else 1.0
        filled = round(fraction * self.WIDTH)
        line = (f"{p.kind:<15}[{'#' * filled}{'.' * (self.WIDTH - filled)}] "
                f"{p.scanned}/{p.total} {fraction:4.0%}")
        elapsed, moved = now - self._since[0], p.scanned - self._since[1]
        if elapsed > 0 and moved:
            line += f"  {moved / elapsed:,.0f} records/s"
        elif elapsed == 0 and p.done and p.scanned:
            line += "  (copied by an earlier run)"
        if p.expired:
            line += f"  ({p.expired} expired, skipped)"
        self.stream.write("\r\x1b[K" + line + ("\n" if p.done else ""))
        self.stream.flush()
        self._open = not p.done

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self._open = False


def migrate_(args: argparse.Namespace) -> int:
    settings = load(args)
    source_url: str = args.source or settings.store_url
    if same_store(source_url, args.target):
        raise CLIError("--from and --to name the same store", EXIT_USAGE)
    sealer = _sealer(settings)
    path = Path(args.checkpoint or Path(settings.data_dir) / CHECKPOINT_FILE)
    checkpoint = Checkpoint.load(path, source_url, args.target)
    resumed = checkpoint.existed
    bar = ProgressBar(sys.stderr)
    started = time.monotonic()

    async def go() -> int:
        async with _backend(source_url) as source, _backend(args.target) as target:
            report = await migrate(source, target, sealer, checkpoint, batch=args.batch,
                                   progress=bar)
        bar.close()
        print(f"migrated {plural(report.copied, 'record')} from {redact_url(source_url)} to "
              f"{redact_url(args.target)}{' (resumed)' if resumed else ''} in "
              f"{time.monotonic() - started:.1f}s, {report.expired} expired left behind; "
              f"verified: live counts equal for {len(report.live)} kinds, "
              f"{report.sampled} sampled records read back and opened")
        print("point `store` in the configuration at the new URL and restart every instance")
        return 0

    try:
        return asyncio.run(go())
    finally:
        bar.close()


def purge_(args: argparse.Namespace) -> int:
    settings = load(args)

    async def go() -> int:
        async with _backend(args.store or settings.store_url) as backend:
            report = await purge_expired(backend, SystemClock(), batch=args.batch,
                                         max_batches=args.max_batches, per_kind=True)
        batches = "1 batch" if report.batches == 1 else f"{report.batches} batches"
        print(f"purged {plural(report.removed, 'expired record')} in {batches}")
        if report.by_kind:
            table(["KIND", "REMOVED"], sorted(report.by_kind.items()), empty="")
        if not report.complete:
            print(f"stopped after --max-batches {args.max_batches}; more may be left")
        return 0

    return asyncio.run(go())


def reseal_(args: argparse.Namespace) -> int:
    settings = load(args)
    keys = load_local_keys(settings.data_dir, create=False)
    if args.retire is not None:
        check_retirable(keys, args.retire)  # before the long walk, not after it
        if keys.path is None:
            raise CLIError("the sealing keys come from AUTHGATE_SEALING_KEYS; remove the key "
                           "there (after `authgate store stats` shows it unused)", EXIT_USAGE)

    async def go() -> int:
        async with _backend(args.store or settings.store_url) as backend:
            store = SealedStore(backend, Sealer(keys.sealing), SystemClock())
            report = await reseal(store, batch=args.batch)
            print(f"re-sealed {plural(report.resealed, 'record')} with the active key "
                  f"{store.sealer.active_kid}; {report.current} already used it, "
                  f"{report.expired} expired (left to purge), "
                  f"{report.vanished} deleted meanwhile")
            if report.by_kind:
                table(["KIND", "RESEALED"], sorted(report.by_kind.items()), empty="")
            if report.unreadable:
                warn(f"{plural(report.unreadable, 'record')} open with none of the sealing "
                     "keys and stay as they are (see the log)")
            if args.retire is not None:
                await retire_sealing_key(store, keys, args.retire)
                print(f"sealing key {args.retire} retired: removed from {keys.path}; copy that "
                      "file to every instance sharing this store")
        return 0

    return asyncio.run(go())


def stats_(args: argparse.Namespace) -> int:
    settings = load(args)
    sealer = _sealer(settings)

    async def go() -> int:
        async with _backend(args.store or settings.store_url) as backend:
            u = await usage(SealedStore(backend, sealer, SystemClock()))
        table(["KIND", "STORED", "LIVE", "EXPIRED"],
              [[kind, k.stored, k.live, k.stored - k.live] for kind, k in u.kinds.items()],
              empty="no kinds")
        print()
        print("Live records per sealing key")
        by_kid = u.by_kid
        rows: list[list[object]] = []
        for i, key in enumerate(sealer.keys):
            n = by_kid.pop(key.kid, 0)
            status = ("active" if i == 0 else "in use: run `authgate store reseal`" if n
                      else "unused: may be retired")
            rows.append([key.kid, n, status])
        for kid, n in sorted(by_kid.items()):
            rows.append([kid, n, "not sealed records" if kid == UNREADABLE
                         else "unknown key: these records cannot be opened"])
        table(["KID", "RECORDS", "STATUS"], rows, empty="  none")
        return 0

    return asyncio.run(go())
