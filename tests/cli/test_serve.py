"""``authgate serve`` as a real process: embedded default, discovery answered.

The one test here that crosses a process boundary: uvicorn with uvloop and
httptools on a free loopback port, from an empty directory, no config.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

STARTUP_SECONDS = 30


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_serve_embedded_default(tmp_path: Path) -> None:
    """With no config, serve creates ./.authgate, the demo user, and answers discovery."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AUTHGATE_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "authgate", "serve", "--port", str(port), "--demo"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}/.auth/.well-known/openid-configuration"
    response = None
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                response = httpx.get(url, timeout=2)
                break
            except httpx.TransportError:
                time.sleep(0.1)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=15)
    assert response is not None, f"server did not come up (exit {proc.returncode}):\n{out}\n{err}"
    assert response.status_code == 200, response.text
    assert response.json()["issuer"] == f"http://localhost:{port}/.auth"
    assert f"authgate listening on http://127.0.0.1:{port}" in out
    assert "demo password (shown once): " in out
    assert "sqlite:///.authgate/authgate.db" in out
    assert "Traceback" not in err
    assert (tmp_path / ".authgate" / "keys.json").is_file()
