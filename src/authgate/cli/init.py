"""``authgate init``: a commented config file, the data directory, keys and store.

Re-running with ``--force`` rewrites the config file only. Existing key
material is always kept: a new ``keys.json`` would make every sealed record
and every stored token hash unreadable, which is data loss, not a reset.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..config import Settings, load_settings
from ..keystore import KEYS_FILE
from ..service import AuthGate
from ._common import CLIError, Subparsers, command, fields, redact_url, with_gate
from ._template import render


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    p = command(sub, "init", "write authgate.toml and create the data directory, keys and store",
                parents, run)
    p.add_argument("--force", action="store_true",
                   help="overwrite an existing config file (keys and data are always kept)")


def run(args: argparse.Namespace) -> int:
    path = Path(args.config or os.environ.get("AUTHGATE_CONFIG") or "authgate.toml")
    if path.exists() and not args.force:
        raise CLIError(f"{path} already exists; pass --force to overwrite it "
                       "(keys and data are kept)")
    defaults = Settings()
    if args.data_dir is not None:
        defaults.data_dir = args.data_dir
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(defaults), encoding="utf-8")
    try:
        # Validate the new file together with the environment before it replaces anything.
        settings = load_settings(tmp)
    except BaseException:
        tmp.unlink()
        raise
    os.replace(tmp, path)
    settings.source = str(path)

    data_dir = Path(settings.data_dir)
    existed = (data_dir / KEYS_FILE).is_file()
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    async def go(gate: AuthGate) -> int:
        active = gate.keys.active
        if gate.local_keys.path is None:
            keys = "from the environment (AUTHGATE_SEALING_KEYS, AUTHGATE_HASH_KEY)"
        else:
            keys = f"{gate.local_keys.path} ({'kept' if existed else 'generated'}, mode 0600)"
        print(f"wrote {path}")
        fields([
            ("data dir", data_dir),
            ("keys", keys),
            ("store", redact_url(settings.store_url)),
            ("signing key", f"{active.kid} ({active.alg}, active)" if active else "-"),
        ])
        print()
        opt = f" --config {path}" if args.config and path != Path("authgate.toml") else ""
        print("next:")
        print(f"  authgate{opt} users add NAME     create the first user")
        print(f"  authgate{opt} serve              start on {settings.public_url}")
        return 0

    return with_gate(settings, go, create_keys=True)
