"""node-oidc-provider as an independent upstream OpenID Connect provider.

Tests use it as "any OIDC provider" (DESIGN.md §2, ``type = "oidc"``); the
benchmark uses it as the reference server (DESIGN.md §5). The node project in
``oidc-provider/`` is installed once per version into a cache directory
(``~/.cache/authgate-test/oidc-provider-<hash>``, or under
``$AUTHGATE_TEST_CACHE``) and started per test module. Its ``sqlite`` adapter
uses better-sqlite3, a native module that npm compiles with node-gyp where no
prebuilt binary can be downloaded (g++, make, python3, node's headers)::

    with running({"clients": [client("rp", "s3cret...", redirect_uris=[CB])]}) as issuer:
        url = scripted_login(authorize_url(issuer, ...))   # -> CB?code=...&state=...

Missing node or npm raises :class:`PeerError`: a test that needs the peer
fails with that message instead of being skipped.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

SOURCE = Path(__file__).with_name("oidc-provider")
PROJECT_FILES = ("package.json", "package-lock.json")
START_TIMEOUT = 60.0
INSTALL_TIMEOUT = 600.0

__all__ = [
    "Peer",
    "PeerError",
    "authorize_url",
    "cache_dir",
    "client",
    "install",
    "mint_refresh_tokens",
    "running",
    "scripted_login",
    "scripted_login_async",
    "start",
    "stop",
]


class PeerError(RuntimeError):
    """The peer could not be installed, started or driven."""


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise PeerError(
            f"{tool!r} is not on PATH: the oidc-provider peer needs Node.js 20+ and npm "
            "(Debian: apt-get install nodejs npm). Tests that use it fail rather than skip."
        )
    return path


def cache_dir() -> Path:
    """Where this version of the node project is installed, for this ``node``.

    Keyed by package.json and package-lock.json (a change installs afresh) and by
    the ``node`` binary, since better-sqlite3's native module is built for one.
    """
    digest = hashlib.sha256()
    for name in PROJECT_FILES:
        if (SOURCE / name).exists():
            digest.update(name.encode() + b"\0" + (SOURCE / name).read_bytes())
    if node := shutil.which("node"):
        real = Path(node).resolve()
        stat = real.stat()
        digest.update(f"node\0{real}\0{stat.st_size}\0{stat.st_mtime_ns}".encode())
    if root := os.environ.get("AUTHGATE_TEST_CACHE"):
        base = Path(root)
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "authgate-test"
    return base / f"oidc-provider-{digest.hexdigest()[:16]}"


def _npm_env(node: str) -> dict[str, str]:
    """npm's environment, pointing node-gyp at the headers of the ``node`` that runs the peer.

    better-sqlite3 first tries to download a prebuilt binary, which fails where only
    package registries are reachable; it then compiles with node-gyp, which would
    download node's headers too unless ``npm_config_nodedir`` names an install that
    has them (``<prefix>/include/node``). A value already set is left alone.
    """
    env = dict(os.environ)
    if not any(name.lower() == "npm_config_nodedir" for name in env):
        prefix = Path(node).resolve().parent.parent
        if (prefix / "include" / "node" / "node.h").exists():
            env["npm_config_nodedir"] = str(prefix)
    return env


def _build_hint(env: Mapping[str, str]) -> str:
    nodedir = next((v for k, v in env.items() if k.lower() == "npm_config_nodedir"), "(unset)")
    return ("better-sqlite3 compiles with node-gyp when no prebuilt binary can be fetched: "
            f"that needs g++, make, python3 and node's headers (npm_config_nodedir={nodedir})")


# Loads the native module (better-sqlite3 opens it on the first Database, not on require).
_NATIVE_CHECK = "new (require('better-sqlite3'))(':memory:').close()"


def _native_problem(node: str, project: Path, env: Mapping[str, str]) -> str:
    """Why better-sqlite3 cannot be loaded in ``project``, or ``""``."""
    try:
        done = subprocess.run([node, "-e", _NATIVE_CHECK], cwd=project, capture_output=True,
                              text=True, timeout=60, check=False, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return "node -e \"require('better-sqlite3')\" took over 60s"
    if done.returncode == 0:
        return ""
    return (f"node -e \"require('better-sqlite3')\" failed (exit {done.returncode}): "
            f"{done.stderr[-2000:]}\n{_build_hint(env)}")


def install() -> Path:
    """Install the node project (once per version) and return its directory."""
    node = _require("node")
    npm = _require("npm")
    target = cache_dir()
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs install once
        if not (target / "node_modules" / "oidc-provider" / "package.json").exists():
            staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
            for name in PROJECT_FILES:
                if (SOURCE / name).exists():
                    shutil.copy2(SOURCE / name, staging / name)
            verb = "ci" if (staging / "package-lock.json").exists() else "install"
            env = _npm_env(node)
            try:
                done = subprocess.run(
                    [npm, verb, "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=staging, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                    check=False, stdin=subprocess.DEVNULL, env=env,
                )
            except subprocess.TimeoutExpired:
                shutil.rmtree(staging, ignore_errors=True)
                raise PeerError(f"npm {verb} of the oidc-provider peer took over "
                                f"{INSTALL_TIMEOUT:.0f}s") from None
            output = f"{done.stdout[-3000:]}{done.stderr[-3000:]}"
            if done.returncode != 0:
                shutil.rmtree(staging, ignore_errors=True)
                hint = f"\n{_build_hint(env)}" if "gyp" in output else ""
                raise PeerError(f"npm {verb} of the oidc-provider peer failed "
                                f"(exit {done.returncode}):\n{output}{hint}")
            if problem := _native_problem(node, staging, env):
                shutil.rmtree(staging, ignore_errors=True)
                raise PeerError(f"npm {verb} of the oidc-provider peer succeeded, but {problem}\n"
                                f"npm output:\n{output}")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        server = (SOURCE / "server.mjs").read_bytes()
        if not (target / "server.mjs").exists() or (target / "server.mjs").read_bytes() != server:
            (target / "server.mjs").write_bytes(server)
    return target


def client(client_id: str, client_secret: str | None = None, *,
           redirect_uris: Sequence[str] = (),
           grant_types: Sequence[str] = ("authorization_code", "refresh_token"),
           **metadata: Any) -> dict[str, Any]:
    """Client metadata for the peer's ``clients`` list (RFC 7591 names)."""
    out: dict[str, Any] = {"client_id": client_id, "grant_types": list(grant_types),
                           "redirect_uris": list(redirect_uris)}
    if client_secret is None:
        out["token_endpoint_auth_method"] = "none"
    else:
        out["client_secret"] = client_secret
    out.update(metadata)
    return out


@dataclass
class Peer:
    """A running peer process."""

    issuer: str
    process: subprocess.Popen[bytes]
    logs: Path

    def stderr(self) -> str:
        return _read(self.logs / "stderr.log")


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return ""


def start(config: Mapping[str, Any] | None = None, *, timeout: float = START_TIMEOUT,
          cpu: int | None = None) -> Peer:
    """Start the peer with ``config`` (see server.mjs) and wait for its READY line.

    ``cpu`` pins it to one core with ``taskset`` (benchmarks).
    """
    node = _require("node")
    project = install()
    logs = Path(tempfile.mkdtemp(prefix="authgate-oidc-peer-"))
    argv = [node, "server.mjs"]
    if cpu is not None:
        argv = [_require("taskset"), "-c", str(cpu), *argv]
    env = {**os.environ, "OIDC_PEER_CONFIG": json.dumps(dict(config or {}))}
    with open(logs / "stdout.log", "wb") as out, open(logs / "stderr.log", "wb") as err:
        process = subprocess.Popen(argv, cwd=project, env=env, stdin=subprocess.DEVNULL,
                                   stdout=out, stderr=err)
    deadline = time.monotonic() + timeout
    while True:
        for line in _read(logs / "stdout.log").splitlines():
            if line.startswith("READY "):
                return Peer(line.split(" ", 1)[1].strip(), process, logs)
        code = process.poll()
        if code is not None or time.monotonic() > deadline:
            why = f"exited with status {code}" if code is not None else (
                f"printed no READY line within {timeout:.0f}s")
            stop(Peer("", process, logs), keep_logs=True)
            stderr = _read(logs / "stderr.log")[-3000:]
            shutil.rmtree(logs, ignore_errors=True)
            raise PeerError(f"oidc-provider peer {why}; stderr:\n{stderr}")
        time.sleep(0.05)


def stop(peer: Peer, *, keep_logs: bool = False) -> None:
    """Terminate the peer (SIGTERM, then SIGKILL after 5 s) and reap it."""
    if peer.process.poll() is None:
        peer.process.terminate()
        try:
            peer.process.wait(5)
        except subprocess.TimeoutExpired:
            peer.process.kill()
            peer.process.wait()
    if not keep_logs:
        shutil.rmtree(peer.logs, ignore_errors=True)


@contextlib.contextmanager
def running(config: Mapping[str, Any] | None = None, *, timeout: float = START_TIMEOUT,
            cpu: int | None = None) -> Iterator[str]:
    """Run the peer for the duration of the block; yields its issuer URL."""
    peer = start(config, timeout=timeout, cpu=cpu)
    try:
        yield peer.issuer
    finally:
        stop(peer)


def mint_refresh_tokens(issuer: str, client_id: str, count: int, *,
                        account: str = "bench-user",
                        scope: str = "openid offline_access") -> list[str]:
    """Refresh tokens minted inside the peer, one grant each (needs ``testApi: true``)."""
    response = httpx.post(f"{issuer}/__peer/refresh-tokens", timeout=120.0, json={
        "client_id": client_id, "count": count, "account": account, "scope": scope})
    if response.status_code != 200:
        raise PeerError(f"minting refresh tokens failed: HTTP {response.status_code} "
                        f"{response.text[:500]} (is testApi enabled in the peer config?)")
    tokens: list[str] = response.json()["refresh_tokens"]
    return tokens


def authorize_url(issuer: str, client_id: str, redirect_uri: str, **params: str) -> str:
    """The peer's authorization endpoint URL (``/auth``) with a code-flow query."""
    query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
             "scope": "openid", **params}
    return f"{issuer}/auth?{urlencode(query)}"


# --- scripted, browser-less login ---------------------------------------------

MAX_STEPS = 20
_LOGIN_FIELDS = ("login", "username", "email")


class _Forms(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[tuple[str, str, dict[str, str]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.forms.append((a.get("action", ""), a.get("method", "get").lower(), {}))
        elif tag in ("input", "button") and self.forms and a.get("name") and (
                a.get("type", "").lower() not in ("checkbox", "radio") or "checked" in a):
            self.forms[-1][2][a["name"]] = a.get("value", "")


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc


@dataclass
class _Login:
    """The state of one scripted login; ``step`` decides what the browser would do next."""

    start: str
    login: str
    password: str
    redirect_uri: str | None

    def leaves(self, url: str) -> bool:
        if self.redirect_uri is not None and url.startswith(self.redirect_uri):
            return True
        return _origin(url) != _origin(self.start)

    def step(self, response: httpx.Response) -> tuple[str, str, dict[str, str] | None] | str:
        """The next request (method, url, form) or the final redirect URL."""
        here = str(response.url)
        if response.is_redirect:
            target = urljoin(here, response.headers["location"])
            return target if self.leaves(target) else ("GET", target, None)
        parser = _Forms()
        if response.status_code == 200 and "html" in response.headers.get("content-type", ""):
            parser.feed(response.text)
        if not parser.forms:
            raise PeerError(f"scripted login stuck at {here}: HTTP {response.status_code} "
                            f"{response.text[:800]}")
        posts = [f for f in parser.forms if f[1] == "post"]
        action, method, fields = (posts or parser.forms)[0]
        target = urljoin(here, action) if action else here
        for name in fields:
            if name in _LOGIN_FIELDS:
                fields[name] = self.login
            elif name == "password":
                fields[name] = self.password
        if self.leaves(target):  # response_mode=form_post: hand back what would be posted
            return f"{target}{'&' if '?' in target else '?'}{urlencode(fields)}"
        return (method.upper(), target, fields)


def scripted_login(authorization_url: str, *, login: str = "alice", password: str = "password",
                   redirect_uri: str | None = None, http: httpx.Client | None = None) -> str:
    """Log in at the peer without a browser; returns the redirect URL carrying ``code``/``state``.

    Follows redirects and submits the devInteractions login and consent forms
    with a cookie-keeping client, and stops at the first redirect that leaves
    the origin of ``authorization_url`` (or reaches ``redirect_uri``), without
    following it. So start at the provider's authorization URL -- for a login
    through authgate, the ``Location`` its ``/.auth/login/<provider>`` answered.
    An ``error=`` redirect is returned like any other: the caller checks.
    """
    state = _Login(authorization_url, login, password, redirect_uri)
    with contextlib.ExitStack() as stack:
        if http is None:
            http = stack.enter_context(httpx.Client(timeout=30.0))
        request: tuple[str, str, dict[str, str] | None] = ("GET", authorization_url, None)
        for _ in range(MAX_STEPS):
            method, url, form = request
            nxt = state.step(http.request(method, url, data=form, follow_redirects=False))
            if isinstance(nxt, str):
                return nxt
            request = nxt
    raise PeerError(f"scripted login did not finish within {MAX_STEPS} steps")


async def scripted_login_async(authorization_url: str, *, login: str = "alice",
                               password: str = "password", redirect_uri: str | None = None,
                               http: httpx.AsyncClient | None = None) -> str:
    """:func:`scripted_login` for async tests (e.g. an ASGI-transport client)."""
    state = _Login(authorization_url, login, password, redirect_uri)
    async with contextlib.AsyncExitStack() as stack:
        if http is None:
            http = await stack.enter_async_context(httpx.AsyncClient(timeout=30.0))
        request: tuple[str, str, dict[str, str] | None] = ("GET", authorization_url, None)
        for _ in range(MAX_STEPS):
            method, url, form = request
            nxt = state.step(await http.request(method, url, data=form, follow_redirects=False))
            if isinstance(nxt, str):
                return nxt
            request = nxt
    raise PeerError(f"scripted login did not finish within {MAX_STEPS} steps")
