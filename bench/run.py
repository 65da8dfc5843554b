"""authgate benchmark: throughput and latency per case, next to same-run references.

    .venv/bin/python bench/run.py [--only authgate] [--duration 5] [--warmup 1]

The server runs on core 0 (``taskset -c 0``), the load generator on core 1,
both on loopback; every case is bounded in time (warm-up + measurement), so a
full run ends by itself in a few minutes. See bench/README.md.

Cases live in ``CASES``; each names the server it needs, builds its request
from the started server, and names the references its figure is compared to.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import load
import references
import servers
import verify_inproc
from load import LoadResult, RequestSpec

SERVER_CPU, LOAD_CPU = 0, 1
POOL_WARMUP = 1_000
POOL_MAX = 400_000
BENCH_USER = "bench-user"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


# --- the authgate hook: a pool of valid refresh tokens ---------------------------

def mint_refresh_tokens(env: Mapping[str, str], client_id: str, n: int) -> list[str]:
    """``n`` refresh tokens for ``client_id``, each the first of its own family.

    Written through authgate's Python API straight into the data directory the
    running server uses (``AUTHGATE_DATA_DIR``/``AUTHGATE_CONFIG`` in ``env``), so
    each benchmark request can present a different valid token -- rotation
    makes every token single-use, and separate families keep one reuse (a
    wrapped-around pool) from revoking the rest.
    """
    from authgate.config import load_settings
    from authgate.hashing import new_id
    from authgate.service import AuthGate

    async def go() -> list[str]:
        gate = await AuthGate.open(load_settings(environ={**os.environ, **env}))
        try:
            client = await gate.clients.get(client_id)
            if client is None:
                raise RuntimeError(f"authgate has no client {client_id!r}")
            user = await gate.accounts.by_username(BENCH_USER)
            if user is None:
                user = await gate.accounts.add(BENCH_USER, new_id())
            now = gate.clock.now()
            return [await gate.refresh.issue(family=new_id(), user_id=user.id, client=client,
                                             scope="openid offline_access", auth_time=now)
                    for _ in range(n)]
        finally:
            await gate.close()

    return asyncio.run(go())


# --- cases -----------------------------------------------------------------------

def basic(client: tuple[str, str]) -> dict[str, str]:
    raw = f"{client[0]}:{client[1]}".encode()
    return {"Authorization": "Basic " + base64.b64encode(raw).decode()}


def client_credentials(token_path: str) -> Callable[[Any], RequestSpec]:
    def build(server: Any) -> RequestSpec:
        return RequestSpec("POST", token_path, {**FORM, **basic(server.CC)},
                           urlencode({"grant_type": "client_credentials", "scope": "api:read"}))
    return build


def introspection(token_path: str, introspect_path: str) -> Callable[[Any], RequestSpec]:
    def build(server: Any) -> RequestSpec:
        got = httpx.post(server.base_url + token_path, auth=server.CC, timeout=30.0,
                         data={"grant_type": "client_credentials", "scope": "api:read"})
        got.raise_for_status()
        body = urlencode({"token": got.json()["access_token"]})
        return RequestSpec("POST", introspect_path, {**FORM, **basic(server.CC)}, body)
    return build


def refresh(token_path: str) -> Callable[[Any], RequestSpec]:
    def build(server: Any) -> RequestSpec:
        return RequestSpec("POST", token_path, {**FORM, **basic(server.RP)})
    return build


@dataclass
class Case:
    name: str
    server: str
    """``in-process``, or a server (``SERVERS``): ``bare``, ``oidc-provider`` (Map adapter),
    ``oidc-provider-sqlite``, ``authgate``, ``gateway``."""
    request: Callable[[Any], RequestSpec] | None = None
    pooled: bool = False
    """Each request carries a fresh refresh token from ``server.mint(n)``."""
    ops: Callable[[float], float] | None = None
    refs: tuple[str, ...] = ()
    note: str = ""
    connections: int | None = None
    """Overrides ``--connections`` (1: latency without queueing)."""
    added_to: str | None = None
    """Report this case's p50 minus that case's p50 (latency a hop adds)."""


CASES: list[Case] = [
    Case("ES256 sign (cryptography)", "in-process", ops=references.es256_sign),
    Case("ES256 verify (cryptography)", "in-process", ops=references.es256_verify),
    Case("ES256 JWT verify (joserfc)", "in-process", ops=references.joserfc_jwt_verify,
         refs=("ES256 verify (cryptography)",)),
    Case("authgate verify, token seen before", "in-process", ops=verify_inproc.seen_before,
         refs=("ES256 verify (cryptography)",), note="cache; expiry + denylist checked"),
    Case("authgate verify, fresh token", "in-process", ops=verify_inproc.fresh,
         refs=("ES256 verify (cryptography)",), note="ES256 + RFC 9068 checks"),
    Case("bare GET /json", "bare", lambda s: RequestSpec("GET", "/json")),
    Case("bare POST /form", "bare", lambda s: RequestSpec(
        "POST", "/form", {**FORM, **basic(("bench-cc", "x" * 43))},
        "grant_type=client_credentials&scope=api%3Aread")),
    Case("oidc-provider client_credentials", "oidc-provider", client_credentials("/token"),
         refs=("bare POST /form",), note="Map adapter"),
    Case("oidc-provider introspection", "oidc-provider",
         introspection("/token", "/token/introspection"), refs=("bare POST /form",),
         note="opaque token"),
    Case("oidc-provider refresh_token (Map adapter)", "oidc-provider", refresh("/token"),
         pooled=True, refs=("bare POST /form",), note="rotating, ES256 id_token"),
    Case("oidc-provider refresh_token (SQLite adapter)", "oidc-provider-sqlite", refresh("/token"),
         pooled=True, refs=("bare POST /form",),
         note="rotating, ES256 id_token, persisted: WAL, synchronous=NORMAL"),
    Case("authgate client_credentials", "authgate", client_credentials("/.auth/oauth2/token"),
         refs=("oidc-provider client_credentials", "bare POST /form")),
    Case("authgate introspection", "authgate",
         introspection("/.auth/oauth2/token", "/.auth/oauth2/introspect"),
         refs=("oidc-provider introspection", "bare POST /form")),
    Case("authgate refresh_token", "authgate", refresh("/.auth/oauth2/token"), pooled=True,
         refs=("oidc-provider refresh_token (Map adapter)",
               "oidc-provider refresh_token (SQLite adapter)", "bare POST /form"),
         note="rotating, SQLite"),
    Case("gateway GET, cookie", "gateway", lambda s: RequestSpec("GET", "/json", {"Cookie": s.cookie}),
         refs=("bare GET /json",), note="proxied to the bare app"),
    Case("gateway GET, session token", "gateway",
         lambda s: RequestSpec("GET", "/json", {"X-ZUMO-AUTH": s.session_token}),
         refs=("bare GET /json",), note="proxied to the bare app"),
    Case("gateway /.auth/verify, session token", "gateway",
         lambda s: RequestSpec("GET", "/.auth/verify", {"X-ZUMO-AUTH": s.session_token}),
         refs=("bare GET /json",)),
    Case("bare GET /json, 1 connection", "bare", lambda s: RequestSpec("GET", "/json"),
         connections=1, note="latency reference"),
    Case("gateway GET, cookie, 1 connection", "gateway",
         lambda s: RequestSpec("GET", "/json", {"Cookie": s.cookie}), connections=1,
         refs=("bare GET /json, 1 connection",), added_to="bare GET /json, 1 connection",
         note="gateway-added latency"),
]

SERVERS: dict[str, Callable[[], servers.Server]] = {
    "bare": servers.Bare,
    "oidc-provider": servers.OidcProvider,
    "oidc-provider-sqlite": lambda: servers.OidcProvider("sqlite"),
    "authgate": lambda: servers.Authgate(mint_refresh_tokens),
    "gateway": servers.Gateway,
}


# --- running -----------------------------------------------------------------------

@dataclass
class Outcome:
    rate: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    errors: int = 0
    requests: int = 0
    failure: str = ""
    detail: str = ""


@contextlib.contextmanager
def pinned_to(cpu: int | None) -> Iterator[None]:
    if cpu is None:
        yield
        return
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpu})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


def _bodies_file(tokens: list[str]) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        for t in tokens:
            f.write(urlencode({"grant_type": "refresh_token", "refresh_token": t}) + "\n")
        return f.name


def measure(case: Case, server: servers.Server, args: argparse.Namespace) -> Outcome:
    assert case.request is not None
    spec = case.request(server)
    files: list[str] = []

    def go(seconds: float) -> LoadResult:
        return load.run(server.base_url, spec, seconds, tool=args.loadgen, cpu=args.load_cpu,
                        connections=case.connections or args.connections)

    try:
        detail = ""
        if not case.pooled:
            go(args.warmup)
        else:
            # Warm up on a small pool, growing it while the warm-up drains it, so
            # that the rate estimate (successes only) sizes the measured pool.
            pool = POOL_WARMUP
            while True:
                files.append(_bodies_file(server.mint(pool)))
                spec.bodies_file = files[-1]
                warm = go(args.warmup)
                ok = warm.requests - warm.errors
                if ok < 0.9 * pool or pool * 4 > POOL_MAX:
                    break
                pool *= 4
            need = min(POOL_MAX, int(ok / warm.seconds * args.duration * 1.6) + 1_000)
        for attempt in (1, 2):
            if case.pooled:
                t0 = time.perf_counter()
                files.append(_bodies_file(server.mint(need)))
                spec.bodies_file = files[-1]
                detail += f"pool of {need:,} tokens minted in {time.perf_counter() - t0:.1f}s"
            result = go(args.duration)
            if not case.pooled or result.requests <= need or need >= POOL_MAX or attempt == 2:
                break
            # The pool wrapped around (a server warms up faster than its warm-up said):
            # reused tokens are fast errors, not a measurement. Size it from this run, again.
            need = min(POOL_MAX, int(result.requests * 1.6) + 1_000)
            detail += f" ran dry at {result.requests:,} requests; measured again on a "
    finally:
        for f in files:
            Path(f).unlink(missing_ok=True)
    return Outcome(result.rps, result.p50_ms, result.p99_ms, result.errors, result.requests,
                   detail=detail)


def select(names: list[str] | None, skip_authgate: bool) -> list[Case]:
    by_name = {c.name: c for c in CASES}
    chosen = [c for c in CASES
              if (not names or any(n.lower() in c.name.lower() for n in names))
              and not (skip_authgate and c.server == "authgate")]
    wanted = {c.name for c in chosen}
    for case in chosen:
        wanted |= {r for r in case.refs if r in by_name}  # references run in the same run
    return [c for c in CASES if c.name in wanted]


def run(cases: list[Case], args: argparse.Namespace) -> dict[str, Outcome]:
    out: dict[str, Outcome] = {}
    for kind in dict.fromkeys(c.server for c in cases):
        group = [c for c in cases if c.server == kind]
        print(f"-- {kind}: {', '.join(c.name for c in group)}", flush=True)
        if kind == "in-process":
            with pinned_to(args.server_cpu):
                for c in group:
                    assert c.ops is not None
                    out[c.name] = Outcome(rate=c.ops(args.crypto_seconds))
            continue
        server = SERVERS[kind]()
        try:
            server.start(args.server_cpu)
        except Exception as exc:
            server.stop()
            for c in group:
                out[c.name] = Outcome(failure=f"{kind} did not start: {exc}")
            continue
        try:
            for c in group:
                try:
                    out[c.name] = measure(c, server, args)
                except Exception as exc:
                    out[c.name] = Outcome(failure=f"{type(exc).__name__}: {exc}")
        finally:
            server.stop()
    return out


# --- reporting ---------------------------------------------------------------------

def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} ms"


def table(cases: list[Case], results: dict[str, Outcome]) -> str:
    w = max([36, *(len(c.name) for c in cases)])
    lines = [f"{'case':<{w}} {'rate':>12} {'p50':>10} {'p99':>10} {'errors':>7}  "
             "vs same-run reference"]
    for c in cases:
        r = results.get(c.name)
        if r is None:
            continue
        if r.failure:
            lines.append(f"{c.name:<{w}} FAILED: {r.failure.splitlines()[0][:200]}")
            continue
        unit = "ops/s" if c.server == "in-process" else "/s"
        ratios = [f"{r.rate / results[ref].rate:.2f}x {ref}" for ref in c.refs
                  if ref in results and results[ref].rate > 0 and not results[ref].failure]
        base = results.get(c.added_to or "")
        if base is not None and r.p50_ms is not None and base.p50_ms is not None:
            ratios.insert(0, f"p50 +{r.p50_ms - base.p50_ms:.2f} ms over {c.added_to}")
        notes = "; ".join(ratios + ([f"({c.note})"] if c.note else []))
        errors = "-" if c.server == "in-process" else f"{r.errors:,}"
        lines.append(f"{c.name:<{w}} {f'{r.rate:,.0f}{unit}':>12} {_ms(r.p50_ms):>10} "
                     f"{_ms(r.p99_ms):>10} {errors:>7}  {notes}")
        if r.errors:
            lines.append(f"{'':<{w}} ! {r.errors:,} of {r.requests:,} requests failed: "
                         "the rate includes error responses")
        if r.detail:
            lines.append(f"{'':<{w}}   {r.detail}")
    return "\n".join(lines)


def environment(args: argparse.Namespace) -> str:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    node = "-"
    if shutil.which("node"):
        node = subprocess.run(["node", "--version"], capture_output=True, text=True,
                              check=False).stdout.strip()
    busy = os.getloadavg()[0]
    warning = (f"\n! load average {busy:.1f} before the run: other work shares these cores, "
               "absolute figures (and less so ratios) are unreliable" if busy > 0.5 else "")
    pin = (f"server on core {args.server_cpu}, load on core {args.load_cpu}"
           if args.server_cpu is not None else "NOT pinned (fewer than 2 cores or no taskset)")
    return (f"authgate bench  {time.strftime('%Y-%m-%d %H:%M')}  {cpu}, {os.cpu_count()} cores\n"
            f"python {platform.python_version()}, node {node}; {pin}; load: {args.loadgen}, "
            f"{args.connections} connections, {args.warmup:g}s warm-up + {args.duration:g}s "
            f"per case{warning}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", action="append", metavar="TEXT",
                   help="run cases whose name contains TEXT (repeatable), plus their references")
    p.add_argument("--skip-authgate", action="store_true", help="references only")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per case")
    p.add_argument("--warmup", type=float, default=1.0, help="seconds of warm-up per case")
    p.add_argument("--crypto-seconds", type=float, default=2.0,
                   help="seconds per in-process reference")
    p.add_argument("--connections", type=int, default=load.CONNECTIONS)
    p.add_argument("--loadgen", choices=["auto", "wrk", "python"], default="auto")
    p.add_argument("--upstream-core", choices=["load", "server"], default="load",
                   help="where the app behind the gateway runs: on the load generator's core "
                        "(default: authgate has the server core to itself) or on the server "
                        "core with authgate")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    p.add_argument("--list", action="store_true", help="list the cases and exit")
    args = p.parse_args(argv)

    if args.list:
        width = max(len(c.server) for c in CASES)
        for c in CASES:
            print(f"{c.server:<{width}}  {c.name}")
        return 0
    if args.loadgen == "auto":
        args.loadgen = "wrk" if load.have_wrk() else "python"
    can_pin = (os.cpu_count() or 1) >= 2 and shutil.which("taskset") is not None
    args.server_cpu = SERVER_CPU if can_pin else None
    args.load_cpu = LOAD_CPU if can_pin else None
    if args.upstream_core == "load":
        servers.Gateway.upstream_cpu = args.load_cpu

    cases = select(args.only, args.skip_authgate)
    print(environment(args), flush=True)
    results = run(cases, args)
    print()
    print(table(cases, results))
    failures = dict.fromkeys(o.failure for o in results.values() if o.failure)
    for failure in failures:
        print(f"\nFAILED:\n{failure[-3000:]}")
    if args.json:
        Path(args.json).write_text(json.dumps({name: vars(o) for name, o in results.items()},
                                              indent=2))
    return 1 if any(o.failure for o in results.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
