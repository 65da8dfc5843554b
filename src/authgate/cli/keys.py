"""``authgate keys``: signing keys (in the store) and sealing keys (local).

Signing keys sign our JWTs and are published in the JWKS. Rotation adds a new
active key; the previous one stops signing but keeps verifying -- and stays in
the JWKS -- until every token it signed has expired, so no client sees a
signature failure.

Sealing keys encrypt the store itself and therefore live outside it
(``keys.json`` or ``AUTHGATE_SEALING_KEYS``). ``--sealing`` puts a new key
first in that list: it seals from now on, the older ones still open what they
sealed, and records move to the new key as they are next written (``authgate
store reseal`` does it eagerly). Nothing is ever re-encrypted in place here,
so an interrupted rotation cannot lose data.
"""

from __future__ import annotations

import argparse

from ..keystore import load_local_keys, new_sealing_key, save_local_keys
from ..service import AuthGate
from ..signing import SigningKey
from ._common import (
    EXIT_USAGE,
    CLIError,
    Subparsers,
    command,
    group,
    iso,
    load,
    plural,
    table,
    with_gate,
)

ALGS = ("ES256", "EdDSA", "RS256")


def register(sub: Subparsers, parents: list[argparse.ArgumentParser]) -> None:
    keys = group(sub, "keys", "list and rotate signing and sealing keys", parents)
    command(keys, "list", "list signing keys (never the key material)", parents, list_)
    p = command(keys, "rotate", "make a new signing key active (or, with --sealing, a new "
                "sealing key)", parents, rotate)
    p.add_argument("--alg", choices=ALGS,
                   help="algorithm of the new signing key (default: tokens.signing_alg, ES256)")
    p.add_argument("--sealing", action="store_true",
                   help="rotate the local sealing key that encrypts the store instead")


def _status(key: SigningKey, active: SigningKey | None) -> str:
    if active is not None and key.kid == active.kid:
        return "active"
    if key.retire_at is not None:
        return f"retiring, verifies until {iso(key.retire_at)}"
    return "standby"


def list_(args: argparse.Namespace) -> int:
    async def go(gate: AuthGate) -> int:
        active = gate.keys.active
        keys = sorted(gate.keys.keys.values(), key=lambda k: k.created_at, reverse=True)
        table(["KID", "ALG", "CREATED", "STATUS"],
              [[k.kid, k.alg, iso(k.created_at), _status(k, active)] for k in keys],
              empty="no signing keys")
        return 0

    return with_gate(load(args), go)


def rotate(args: argparse.Namespace) -> int:
    if args.sealing:
        if args.alg is not None:
            raise CLIError("--alg applies to signing keys, not to --sealing", EXIT_USAGE)
        return _rotate_sealing(args)

    async def go(gate: AuthGate) -> int:
        previous = [k for k in gate.keys.keys.values() if k.retire_at is None]
        new = await gate.keys.rotate(args.alg)
        print(f"new signing key {new.kid} ({new.alg}) is active")
        for old in previous:
            kept = gate.keys.keys.get(old.kid)
            until = iso(kept.retire_at) if kept is not None else "now"
            print(f"previous key {old.kid} ({old.alg}) stops signing but keeps verifying until "
                  f"{until}, when the last token it signed has expired; then it is dropped")
        print("running instances pick the new key up within 30 s (at once with PostgreSQL/Redis notifications)")
        configured = gate.settings.tokens.signing_alg
        if new.alg != configured:
            print(f"note: tokens.signing_alg is {configured}; a rotation without --alg "
                  f"goes back to it")
        return 0

    return with_gate(load(args), go)


def _rotate_sealing(args: argparse.Namespace) -> int:
    settings = load(args)
    keys = load_local_keys(settings.data_dir, create=False)
    new = new_sealing_key()
    keys.sealing.insert(0, new)
    save_local_keys(keys)
    print(f"new sealing key {new.kid} seals from now on; "
          f"{plural(len(keys.sealing) - 1, 'older key')} kept to open what they sealed")
    print("records are re-sealed lazily, when they are next written "
          "(`authgate store reseal` does all of them now)")
    print(f"copy {keys.path} to every instance sharing this store and restart them: "
          "an instance without the new key cannot open records sealed with it")
    return 0
