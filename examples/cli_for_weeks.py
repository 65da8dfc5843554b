"""A command-line tool that calls an API for weeks after one sign-in.

It signs in once in the browser (authorization code + PKCE, loopback
redirect per RFC 8252), keeps the tokens in the OS keyring when the optional
``keyring`` package is installed and in a 0600 encrypted file otherwise, and
then calls the API every ``--every`` seconds. ``OAuth2Auth`` refreshes the
access token shortly before it expires (and once after a 401), saving each
rotated refresh token *before* using it, so a crash or Ctrl-C never loses the
sign-in. The next run picks up the stored tokens without a browser.

Try it without any setup (a throwaway authgate with 10-second access tokens
and a scripted browser; about 30 seconds)::

    python examples/cli_for_weeks.py --demo

Against your authgate: register the client once, then run::

    authgate clients add cli --redirect-uri http://127.0.0.1/callback \\
        --grant-type authorization_code --grant-type refresh_token \\
        --scope openid --scope offline_access
    export AUTHGATE_CLIENT_SECRET=...       # printed by `clients add`
    export AUTHGATE_TOKEN_PASSPHRASE=...    # for the encrypted file (prompted if unset)
    python examples/cli_for_weeks.py --issuer https://id.example/.auth --client-id cli \\
        --api https://id.example/.auth/oauth2/userinfo --every 3600
"""

from __future__ import annotations

import argparse
import getpass
import hashlib
import os
import secrets
import sys
import threading
import time
import webbrowser
from base64 import urlsafe_b64encode
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from authgate.client import (
    EncryptedFileStorage,
    KeyringStorage,
    KeyringUnavailable,
    LoginRequired,
    OAuth2Auth,
    TokenSet,
    TokenStorage,
)


def open_storage(path: Path, client_id: str) -> TokenStorage:
    """The OS keyring if we can, else an encrypted file (saying why)."""
    try:
        return KeyringStorage("authgate-cli-example", client_id)
    except KeyringUnavailable as exc:
        print(f"note: {exc}", file=sys.stderr)
    passphrase = os.environ.get("AUTHGATE_TOKEN_PASSPHRASE") or getpass.getpass(
        f"passphrase for {path}: ")
    return EncryptedFileStorage(path, passphrase=passphrase)


def sign_in(issuer: str, client_id: str, secret: str | None,
            open_browser: Callable[[str], object] = webbrowser.open) -> TokenSet:
    """Authorization code + PKCE through the browser, received on a loopback port."""
    verifier = secrets.token_urlsafe(48)
    challenge = urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).decode().rstrip("=")
    state = secrets.token_urlsafe(16)
    received: dict[str, str] = {}

    class Callback(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            received.update({k: v[0] for k, v in parse_qs(urlsplit(self.path).query).items()})
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.end_headers()
            self.wfile.write(b"Signed in. You can close this window.\n")

        def log_message(self, format: str, *args: object) -> None:
            pass

    with HTTPServer(("127.0.0.1", 0), Callback) as listener:
        redirect_uri = f"http://127.0.0.1:{listener.server_address[1]}/callback"
        url = f"{issuer}/oauth2/authorize?" + urlencode({
            "response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
            "scope": "openid offline_access", "state": state, "code_challenge": challenge,
            "code_challenge_method": "S256"})
        print(f"Sign in at: {url}")
        threading.Thread(target=open_browser, args=(url,), daemon=True).start()
        listener.timeout = 300
        listener.handle_request()
    if received.get("state") != state or "code" not in received:
        raise SystemExit(f"sign-in failed: {received.get('error', 'no code received')}")
    form = {"grant_type": "authorization_code", "code": received["code"],
            "redirect_uri": redirect_uri, "code_verifier": verifier}
    auth = (client_id, secret) if secret else None
    if secret is None:
        form["client_id"] = client_id
    r = httpx.post(f"{issuer}/oauth2/token", data=form, auth=auth)
    r.raise_for_status()
    return TokenSet.from_response(r.json(), now=time.time())


def run(issuer: str, client_id: str, secret: str | None, api: str, storage: TokenStorage, *,
        every: float, count: int | None, open_browser: Callable[[str], object]) -> None:
    if storage.load() is None:
        storage.save(sign_in(issuer, client_id, secret, open_browser))
    auth = OAuth2Auth(f"{issuer}/oauth2/token", client_id, secret, storage=storage)
    calls, last = 0, ""
    with httpx.Client(auth=auth, timeout=30) as http:
        while count is None or calls < count:
            try:
                r = http.get(api)
                access = auth.tokens.access_token if auth.tokens else ""
                seen = hashlib.sha256(access.encode()).hexdigest()[:8]  # never print tokens
                note = "" if seen == last or not last else "  (refreshed, saved first)"
                last = seen
                print(f"{time.strftime('%H:%M:%S')} GET {api} -> {r.status_code}"
                      f"  access token #{seen}{note}")
            except LoginRequired as exc:  # revoked, or unused for too long: sign in again
                print(f"signed out ({exc}); signing in again")
                auth.set_tokens(sign_in(issuer, client_id, secret, open_browser))
                continue
            except httpx.TransportError as exc:
                print(f"{time.strftime('%H:%M:%S')} network trouble: {exc!r}; will retry")
            calls += 1
            if count is None or calls < count:
                time.sleep(every)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--demo", action="store_true", help="run against a throwaway local authgate")
    p.add_argument("--issuer", help="e.g. https://id.example/.auth")
    p.add_argument("--client-id", default="cli")
    p.add_argument("--api", help="the URL to call (default: the issuer's userinfo endpoint)")
    p.add_argument("--every", type=float, default=3600.0, help="seconds between calls")
    p.add_argument("--count", type=int, help="stop after this many calls (default: never)")
    p.add_argument("--tokens", type=Path,
                   default=Path.home() / ".config" / "authgate-example" / "tokens")
    args = p.parse_args(argv)
    if args.demo:
        import tempfile

        from _demo import browser_sign_in, demo_server

        with demo_server() as demo, tempfile.TemporaryDirectory() as tmp:
            password = demo.users["demo"]
            run(demo.issuer, demo.client_id, demo.client_secret, f"{demo.issuer}/oauth2/userinfo",
                EncryptedFileStorage(Path(tmp) / "tokens", passphrase="demo passphrase"),
                every=2, count=args.count or 12,
                open_browser=lambda url: browser_sign_in(url, "demo", password))
        return
    if not args.issuer:
        p.error("--issuer is required (or try --demo)")
    secret = os.environ.get("AUTHGATE_CLIENT_SECRET")  # None: a public client
    run(args.issuer, args.client_id, secret, args.api or f"{args.issuer}/oauth2/userinfo",
        open_storage(args.tokens, args.client_id), every=args.every, count=args.count,
        open_browser=webbrowser.open)


if __name__ == "__main__":
    main()
