"""File backend specifics: tampering is detected, files are private, processes share it safely."""

from __future__ import annotations

import asyncio
import json
import os
import stat
import sys
import textwrap
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from authgate.clock import FrozenClock
from authgate.errors import ConfigError, CorruptRecord
from authgate.store import Record
from authgate.store.file import FileBackend, file_root

from .conftest import opened


def only(pattern: str, root: Path) -> Path:
    [path] = root.glob(pattern)
    return path


@pytest.fixture
async def store(tmp_path: Path, clock: FrozenClock) -> FileBackend:
    backend = FileBackend(f"file://{tmp_path}/store")
    await backend.open()
    now = clock.now()
    await backend.upsert(Record("client", "c1", b"client-payload"), now=now)
    await backend.upsert(Record("refresh_token", "rt1", b"rt-payload", expires_at=now + 60,
                                grant_id="fam", subject="alice"), now=now)
    return backend


def flip(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda p: p.write_bytes(p.read_bytes()[:-7]), id="truncated"),
        pytest.param(lambda p: p.write_bytes(b""), id="emptied"),
        pytest.param(lambda p: flip(p, -3), id="bit-flip-in-content"),
        pytest.param(lambda p: flip(p, 30), id="bit-flip-in-mac"),
    ],
)
async def test_damaged_files_raise_corrupt_record(
    store: FileBackend, clock: FrozenClock, damage: Callable[[Path], object]
) -> None:
    """A truncated or bit-flipped record, subject or grant file raises CorruptRecord."""
    root = store.root
    reads: list[tuple[str, Callable[[], Awaitable[object]]]] = [
        ("records/client/*.json", lambda: store.find("client", "c1", now=clock.now())),
        ("subjects/refresh_token/*.json",
         lambda: store.find_by_subject("refresh_token", "alice", now=clock.now())),
        ("grants/*.json", lambda: store.revoke_by_grant("fam")),
    ]
    for pattern, read in reads:
        path = only(pattern, root)
        original = path.read_bytes()
        damage(path)
        with pytest.raises(CorruptRecord):
            await read()
        path.write_bytes(original)
    assert await store.find("refresh_token", "rt1", now=clock.now()) is not None


async def test_a_file_copied_over_another_is_detected(tmp_path: Path, clock: FrozenClock) -> None:
    """Each file's MAC covers its own path, so a valid file moved elsewhere does not verify."""
    backend = FileBackend(f"file://{tmp_path}/store")
    await backend.open()
    await backend.upsert(Record("client", "a", b"A"), now=clock.now())
    await backend.upsert(Record("client", "b", b"B"), now=clock.now())
    files = {json.loads(p.read_bytes().split(b"\n", 1)[1])["id"]: p
             for p in (tmp_path / "store" / "records" / "client").glob("*.json")}
    files["b"].write_bytes(files["a"].read_bytes())
    with pytest.raises(CorruptRecord):
        await backend.find("client", "b", now=clock.now())
    assert await backend.find("client", "a", now=clock.now()) == Record("client", "a", b"A")


async def test_edited_content_with_a_stale_mac_is_detected(store: FileBackend,
                                                           clock: FrozenClock) -> None:
    """Changing the expiry inside a file (valid JSON, old MAC) is caught."""
    path = only("subjects/refresh_token/*.json", store.root)
    header, body = path.read_bytes().split(b"\n", 1)
    data = json.loads(body)
    data["records"]["rt1"]["expires_at"] = None
    path.write_bytes(header + b"\n" + json.dumps(data).encode())
    with pytest.raises(CorruptRecord):
        await store.find("refresh_token", "rt1", now=clock.now())


async def test_key_and_files_are_private(store: FileBackend) -> None:
    """The key file and every data file are mode 0600; names do not reveal ids or subjects."""
    key = store.root / ".filekey"
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert len(key.read_bytes()) == 32
    files = [p for p in store.root.rglob("*.json")]
    assert len(files) == 4  # client, pointer, alice's file, the family index
    for path in files:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        for secret in ("alice", "rt1", "fam"):
            assert secret not in str(path.relative_to(store.root))


async def test_reopen_keeps_the_key(tmp_path: Path, clock: FrozenClock) -> None:
    """A second open (another process, a restart) reads the same key and the same records."""
    url = f"file://{tmp_path}/store"
    async with opened(url) as first:
        await first.upsert(Record("client", "c", b"x"), now=clock.now())
    async with opened(url) as second:
        assert await second.find("client", "c", now=clock.now()) == Record("client", "c", b"x")


def test_url_mapping(tmp_path: Path) -> None:
    """file:///abs/dir is absolute, file://rel/dir relative; anything else is a ConfigError."""
    assert file_root("file:///var/lib/authgate") == Path("/var/lib/authgate")
    assert file_root("file://data/store") == Path("data/store")
    for bad in ("file://", "file:///x?y=1", "http://x/y"):
        with pytest.raises(ConfigError):
            file_root(bad)


WORKER = textwrap.dedent("""
    import asyncio, sys
    from authgate.store.file import FileBackend

    async def main(url, now):
        backend = FileBackend(url)
        await backend.open()
        won = [i for i, r in zip(range(20), await asyncio.gather(
            *(backend.consume("code", f"c{i}", now=now) for i in range(20))))
            if r is not None and r.consumed_at is None]
        print(" ".join(map(str, won)))
        await backend.close()

    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
""")


async def test_consume_is_single_use_across_processes(tmp_path: Path, clock: FrozenClock) -> None:
    """Four processes consuming the same 20 codes: each code is won exactly once."""
    url = f"file://{tmp_path}/store"
    async with opened(url) as backend:
        for i in range(20):
            await backend.upsert(Record("code", f"c{i}", b"x", expires_at=clock.now() + 60),
                                 now=clock.now())
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [await asyncio.create_subprocess_exec(
        sys.executable, "-c", WORKER, url, repr(clock.now()),
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, env=env) for _ in range(4)]
    try:
        async with asyncio.timeout(60):
            outputs = await asyncio.gather(*(p.communicate() for p in procs))
    finally:
        for proc in procs:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err.decode()
    wins = sorted(int(w) for out, _ in outputs for w in out.split())
    assert wins == list(range(20))
