"""Load generators: wrk when installed, else a small keep-alive one of our own.

Both take a :class:`RequestSpec` and a time budget and return a
:class:`LoadResult` (requests, errors, p50/p99). Each runs as its own process
so it can be pinned to the load core (``taskset -c 1``) apart from the server.

``python bench/load.py SPEC.json`` runs the fallback generator and prints the
result as one JSON line; ``run.py`` calls it that way.

A spec with ``bodies_file`` sends a different body per request (one line each,
in order): refresh tokens are single-use. When the lines run out the generator
wraps around, so a too-small pool shows up as errors rather than as a silently
shorter run.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONNECTIONS = 32


@dataclass
class RequestSpec:
    method: str
    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: str = ""
    bodies_file: str | None = None
    """One body per line, each sent once (single-use credentials)."""


@dataclass
class LoadResult:
    requests: int
    seconds: float
    errors: int
    """Responses with status >= 400 plus socket errors and timeouts."""
    p50_ms: float
    p99_ms: float
    tool: str

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


# --- wrk ------------------------------------------------------------------------

_LUA_DONE = r"""
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '\nRESULT {"requests":%d,"duration_us":%d,"status_errors":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, e.status, e.connect + e.read + e.write + e.timeout,
    latency:percentile(50), latency:percentile(99)))
end
"""


def _lua_string(s: str) -> str:
    """A Lua string literal; for ASCII, JSON's escapes (\\, \") are Lua's too."""
    if not s.isascii():
        raise ValueError("wrk scripts take ASCII strings only")
    return json.dumps(s)


def wrk_script(spec: RequestSpec) -> str:
    lines = [f"wrk.method = {_lua_string(spec.method)}",
             f"wrk.path = {_lua_string(spec.path)}"]
    lines += [f"wrk.headers[{_lua_string(k)}] = {_lua_string(v)}" for k, v in spec.headers.items()]
    if spec.bodies_file:
        lines += [
            "local bodies = {}",
            f"for line in io.lines({_lua_string(spec.bodies_file)}) do",
            "  bodies[#bodies + 1] = line",
            "end",
            "local i = 0",
            "request = function()",
            "  i = i + 1",
            "  return wrk.format(nil, nil, nil, bodies[(i - 1) % #bodies + 1])",
            "end",
        ]
    elif spec.body:
        lines.append(f"wrk.body = {_lua_string(spec.body)}")
    return "\n".join(lines) + "\n" + _LUA_DONE


def run_wrk(base_url: str, spec: RequestSpec, seconds: float, *, cpu: int | None,
            connections: int = CONNECTIONS) -> LoadResult:
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as f:
        f.write(wrk_script(spec))
        script = f.name
    argv = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "5s",
            "-s", script, base_url]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                              check=False, stdin=subprocess.DEVNULL)
    finally:
        Path(script).unlink(missing_ok=True)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            r = json.loads(line[len("RESULT "):])
            return LoadResult(r["requests"], r["duration_us"] / 1e6,
                              r["status_errors"] + r["socket_errors"],
                              r["p50_us"] / 1000, r["p99_us"] / 1000, "wrk")
    raise RuntimeError(f"wrk printed no result (exit {done.returncode}):\n"
                       f"{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


# --- our own: asyncio, raw keep-alive HTTP/1.1 -------------------------------------

def _request_bytes(spec: RequestSpec, host: str, body: str) -> bytes:
    head = [f"{spec.method} {spec.path} HTTP/1.1", f"Host: {host}"]
    head += [f"{k}: {v}" for k, v in spec.headers.items()]
    data = body.encode()
    if data or spec.method not in ("GET", "HEAD"):
        head.append(f"Content-Length: {len(data)}")
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


async def _read_response(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip()
               for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def _generate(base_url: str, requests: list[bytes], seconds: float,
                    connections: int) -> LoadResult:
    host, _, port = base_url.split("://", 1)[1].rstrip("/").partition(":")
    latencies: list[int] = []
    errors = 0
    counter = 0
    deadline = time.perf_counter() + seconds

    async def connection() -> None:
        nonlocal errors, counter
        reader, writer = await asyncio.open_connection(host, int(port or 80))
        try:
            while time.perf_counter() < deadline:
                payload = requests[counter % len(requests)]
                counter += 1
                t0 = time.perf_counter_ns()
                writer.write(payload)
                try:
                    status = await asyncio.wait_for(_read_response(reader), 5.0)
                except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    errors += 1
                    return
                latencies.append(time.perf_counter_ns() - t0)
                if status >= 400:
                    errors += 1
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()

    start = time.perf_counter()
    await asyncio.gather(*(connection() for _ in range(connections)), return_exceptions=True)
    elapsed = time.perf_counter() - start
    latencies.sort()

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] / 1e6

    return LoadResult(len(latencies), elapsed, errors, pct(0.50), pct(0.99), "bench/load.py")


def run_python(base_url: str, spec: RequestSpec, seconds: float, *, cpu: int | None,
               connections: int = CONNECTIONS) -> LoadResult:
    """Run the fallback generator in its own (pinned) process."""
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump({"base_url": base_url, "spec": asdict(spec), "seconds": seconds,
                   "connections": connections}, f)
        job = f.name
    argv = [sys.executable, str(Path(__file__).resolve()), job]
    if cpu is not None:
        argv = ["taskset", "-c", str(cpu), *argv]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60,
                              check=False, stdin=subprocess.DEVNULL)
    finally:
        Path(job).unlink(missing_ok=True)
    if done.returncode != 0:
        raise RuntimeError(f"bench/load.py failed (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return LoadResult(**json.loads(done.stdout.strip().splitlines()[-1]))


def have_wrk() -> bool:
    return shutil.which("wrk") is not None


def run(base_url: str, spec: RequestSpec, seconds: float, *, tool: str, cpu: int | None,
        connections: int = CONNECTIONS) -> LoadResult:
    if tool == "wrk":
        return run_wrk(base_url, spec, seconds, cpu=cpu, connections=connections)
    return run_python(base_url, spec, seconds, cpu=cpu, connections=connections)


def main(job_path: str) -> None:
    job: dict[str, Any] = json.loads(Path(job_path).read_text())
    run_loop: Any = asyncio.run
    with contextlib.suppress(ImportError):
        import uvloop

        run_loop = uvloop.run
    spec = RequestSpec(**job["spec"])
    host_port = job["base_url"].split("://", 1)[1].rstrip("/")
    bodies = (Path(spec.bodies_file).read_text().splitlines() if spec.bodies_file
              else [spec.body])
    requests = [_request_bytes(spec, host_port, b) for b in bodies]
    result = run_loop(_generate(job["base_url"], requests, job["seconds"], job["connections"]))
    print(json.dumps(asdict(result)))


if __name__ == "__main__":
    main(sys.argv[1])
