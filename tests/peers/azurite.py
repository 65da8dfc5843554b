"""Azurite, Microsoft's Azure Storage emulator (npm): the peer the azureblob backend runs on.

The azureblob backend is only trusted once it has run against a real Blob
service implementation, ETag conditions and listing order included; Azurite
is that implementation without a cloud account. It is installed once into
``~/.cache/authgate-test/azurite`` (or under ``$AUTHGATE_TEST_CACHE``) and
started once per test session on a free loopback port::

    with running() as azurite:
        url = azurite.store_url("tokens")   # azureblob://127.0.0.1:<port>/devstoreaccount1/tokens?<SAS>

Missing node or npm, a failed install or a server that does not come up
raise :class:`AzuriteError`: the tests that need it fail with that message,
never skip.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from azure.core.exceptions import ResourceExistsError
from azure.storage.blob import BlobServiceClient, ContainerSasPermissions, generate_container_sas

# Azurite's fixed development account (public, documented by Microsoft; not a secret).
ACCOUNT = "devstoreaccount1"
ACCOUNT_KEY = (
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
)
START_TIMEOUT = 30.0
INSTALL_TIMEOUT = 600.0


class AzuriteError(RuntimeError):
    """Azurite could not be installed or started."""


def _require(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise AzuriteError(
            f"{tool!r} is not on PATH: the azureblob tests need Node.js and npm to run Azurite "
            "(Debian: apt-get install nodejs npm). They fail rather than skip."
        )
    return path


def cache_dir() -> Path:
    if root := os.environ.get("AUTHGATE_TEST_CACHE"):
        return Path(root) / "azurite"
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "authgate-test" / "azurite"


def install() -> Path:
    """Install Azurite into the cache (once) and return the ``azurite-blob`` executable."""
    _require("node")
    target = cache_dir()
    binary = target / "node_modules" / ".bin" / "azurite-blob"
    target.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".azurite.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test runs install once
        if binary.exists():
            return binary
        npm = _require("npm")
        if not (target / "package.json").exists():
            (target / "package.json").write_text('{"name": "authgate-azurite", "private": true}\n')
        try:
            done = subprocess.run(
                [npm, "install", "--no-audit", "--no-fund", "--loglevel=error", "azurite"],
                cwd=target, capture_output=True, text=True, timeout=INSTALL_TIMEOUT,
                check=False, stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise AzuriteError(f"npm install azurite took over {INSTALL_TIMEOUT:.0f}s") from None
        if done.returncode != 0 or not binary.exists():
            raise AzuriteError(f"npm install azurite failed (exit {done.returncode}):\n"
                               f"{done.stderr[-3000:]}")
    return binary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@dataclass
class Azurite:
    """A running Azurite blob service."""

    port: int
    process: subprocess.Popen[bytes]
    workdir: Path

    @property
    def account_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    def create_container(self, name: str) -> None:
        with BlobServiceClient(self.account_url, credential=ACCOUNT_KEY) as service:
            with contextlib.suppress(ResourceExistsError):
                service.create_container(name)
            service.get_container_client(name).get_container_properties()  # raises if missing

    def store_url(self, container: str, *, prefix: str = "") -> str:
        """An ``azureblob://`` store URL for ``container`` with a two-hour SAS."""
        sas = generate_container_sas(
            ACCOUNT, container, account_key=ACCOUNT_KEY,
            permission=ContainerSasPermissions(read=True, add=True, create=True, write=True,
                                               delete=True, list=True),
            expiry=datetime.now(UTC) + timedelta(hours=2),
        )
        extra = f"&prefix={prefix}" if prefix else ""
        return f"azureblob://127.0.0.1:{self.port}/{ACCOUNT}/{container}?{sas}{extra}"


def start(*, timeout: float = START_TIMEOUT) -> Azurite:
    binary = install()
    workdir = Path(tempfile.mkdtemp(prefix="authgate-azurite-"))
    port = _free_port()
    argv = [str(binary), "--blobHost", "127.0.0.1", "--blobPort", str(port),
            "--location", str(workdir / "data"), "--skipApiVersionCheck", "--loose"]
    with open(workdir / "azurite.log", "wb") as log:
        process = subprocess.Popen(argv, cwd=workdir, stdin=subprocess.DEVNULL,
                                   stdout=log, stderr=subprocess.STDOUT)
    azurite = Azurite(port, process, workdir)
    deadline = time.monotonic() + timeout
    while not _listening(port):
        code = process.poll()
        if code is not None or time.monotonic() > deadline:
            why = f"exited with status {code}" if code is not None else (
                f"did not listen on 127.0.0.1:{port} within {timeout:.0f}s")
            output = (workdir / "azurite.log").read_text(errors="replace")[-3000:]
            stop(azurite)
            raise AzuriteError(f"Azurite {why}; output:\n{output}")
        time.sleep(0.05)
    return azurite


def stop(azurite: Azurite) -> None:
    """Terminate Azurite (SIGTERM, then SIGKILL after 5 s), reap it and drop its data."""
    if azurite.process.poll() is None:
        azurite.process.terminate()
        try:
            azurite.process.wait(5)
        except subprocess.TimeoutExpired:
            azurite.process.kill()
            azurite.process.wait()
    shutil.rmtree(azurite.workdir, ignore_errors=True)


@contextlib.contextmanager
def running(*, timeout: float = START_TIMEOUT) -> Iterator[Azurite]:
    azurite = start(timeout=timeout)
    try:
        yield azurite
    finally:
        stop(azurite)
