"""A background worker acting for users who are not there (``offline_access``), for weeks.

Each user signed in once -- in your web app, asking for ``offline_access`` --
and the app saved the tokens to ``<tokens-dir>/<user>.tokens`` (an
``EncryptedFileStorage`` sealed with a key file). The worker loads every
grant, lets a ``Refresher`` keep them fresh in the background (jittered so
grants issued together do not refresh together, backing off when the issuer
is down, at least twice a day so no grant dies of inactivity) and runs its
jobs with each user's ``OAuth2Auth``. A job and the refresher never refresh
one grant twice: they share its lock.

When a grant dies -- the user revoked access, or an administrator signed
them out everywhere -- ``on_dead`` is called once; this is where you would
email the user to sign in again.

Try it without any setup (a throwaway authgate with 10-second access tokens,
users alice and bob; halfway through bob revokes access; about 25 seconds)::

    python examples/offline_worker.py --demo

Against your authgate::

    export AUTHGATE_CLIENT_SECRET=...
    python examples/offline_worker.py --issuer https://id.example/.auth --client-id worker \\
        --tokens-dir /var/lib/worker/tokens --key-file /var/lib/worker/tokens.key \\
        --api https://api.example/things --every 300
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from authgate.client import EncryptedFileStorage, LoginRequired, OAuth2Auth, Refresher


def load_grants(issuer: str, client_id: str, secret: str | None, tokens_dir: Path,
                key_file: Path) -> dict[str, OAuth2Auth]:
    """One OAuth2Auth per ``<user>.tokens`` file, each saving rotated tokens back to its file."""
    return {path.stem: OAuth2Auth(f"{issuer}/oauth2/token", client_id, secret,
                                  storage=EncryptedFileStorage(path, key_file=key_file))
            for path in sorted(tokens_dir.glob("*.tokens"))}


async def work(grants: dict[str, OAuth2Auth], api: str, *, every: float,
               duration: float | None, midway: Callable[[], None] | None = None) -> Refresher:
    dead: set[str] = set()

    async def on_dead(name: str, error: LoginRequired) -> None:
        dead.add(name)
        print(f"  !! {name}'s grant is dead ({error}); ask {name} to sign in again")

    started = time.monotonic()
    async with httpx.AsyncClient(timeout=30) as http, Refresher(http, on_dead=on_dead) as refresher:
        for name, auth in grants.items():
            refresher.add(name, auth)
        while duration is None or time.monotonic() - started < duration:
            for name, auth in grants.items():
                if name in dead:
                    continue
                try:
                    r = await http.get(api, auth=auth)
                    print(f"{time.strftime('%H:%M:%S')} job for {name}: {r.status_code}")
                except LoginRequired as exc:
                    await on_dead(name, exc)
                    refresher.remove(name)
                except httpx.TransportError as exc:
                    print(f"{time.strftime('%H:%M:%S')} job for {name}: network trouble {exc!r}")
            if midway is not None and time.monotonic() - started > (duration or 0) / 2:
                midway()
                midway = None
            await asyncio.sleep(every)
    s = refresher.stats
    print(f"refresher: {s.refreshed} refreshes, {s.failures} failures, dead: {s.dead_names}")
    return refresher


def demo() -> None:
    import tempfile

    from _demo import browser_sign_in, demo_server
    from cli_for_weeks import sign_in

    with demo_server(users=("alice", "bob")) as idp, tempfile.TemporaryDirectory() as tmp:
        tokens_dir = Path(tmp)
        key = EncryptedFileStorage.generate_key_file(tokens_dir / "tokens.key")
        for name, password in idp.users.items():  # what your web app does at sign-in
            def browser(url: str, name: str = name, password: str = password) -> None:
                browser_sign_in(url, name, password)
            tokens = sign_in(idp.issuer, idp.client_id, idp.client_secret, browser)
            EncryptedFileStorage(tokens_dir / f"{name}.tokens", key_file=key).save(tokens)

        def bob_revokes_access() -> None:
            saved = EncryptedFileStorage(tokens_dir / "bob.tokens", key_file=key).load()
            assert saved is not None and saved.refresh_token
            httpx.post(f"{idp.issuer}/oauth2/revoke", auth=(idp.client_id, idp.client_secret),
                       data={"token": saved.refresh_token, "token_type_hint": "refresh_token"})
            print("  -- bob revoked the worker's access --")

        grants = load_grants(idp.issuer, idp.client_id, idp.client_secret, tokens_dir, key)
        asyncio.run(work(grants, f"{idp.issuer}/oauth2/userinfo", every=2, duration=24,
                         midway=bob_revokes_access))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", action="store_true", help="run against a throwaway authgate")
    p.add_argument("--issuer")
    p.add_argument("--client-id", default="worker")
    p.add_argument("--api")
    p.add_argument("--tokens-dir", type=Path)
    p.add_argument("--key-file", type=Path)
    p.add_argument("--every", type=float, default=300.0)
    args = p.parse_args()
    if args.demo:
        demo()
        return
    if not (args.issuer and args.api and args.tokens_dir and args.key_file):
        p.error("--issuer, --api, --tokens-dir and --key-file are required (or try --demo)")
    grants = load_grants(args.issuer, args.client_id, os.environ.get("AUTHGATE_CLIENT_SECRET"),
                         args.tokens_dir, args.key_file)
    asyncio.run(work(grants, args.api, every=args.every, duration=None))


if __name__ == "__main__":
    main()
