"""``authgate store migrate``: a populated store moves to another backend and nobody notices.

The source is a real SQLite store filled through :class:`AuthGate`; the target
is every backend (the same fixtures as the contract suite), so SQLite ->
PostgreSQL, -> Redis, -> file and -> Azure Blob are all exercised.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import pytest

from authgate import cli
from authgate.cli import store_cmd
from authgate.clock import FrozenClock
from authgate.codes import CodeGrant
from authgate.config import Settings
from authgate.errors import ConfigError, InvalidGrant, StoreError
from authgate.keystore import LocalKeys, new_sealing_key
from authgate.sealing import Sealer
from authgate.service import AuthGate
from authgate.store import Backend, Record, SealedStore
from authgate.store.kinds import KINDS
from authgate.store.migrate import Checkpoint, KindProgress, migrate, same_store

from ..conftest import STORE_BACKENDS
from .conftest import MARKS, opened

PASSWORD = "correct horse battery staple"
SRC = Path(__file__).parents[2] / "src" / "authgate"


@dataclass
class Population:
    """What a signed-in world looks like: credentials the target must still honour."""

    user_id: str
    refresh: str
    rotated: str
    client_secret: str
    sso_cookie: str
    access_token: str
    denied_jti: str
    expired_code: str


def settings(url: str, tmp_path: Path) -> Settings:
    return Settings(public_url="http://localhost", store=url, data_dir=str(tmp_path))


async def populate(gate: AuthGate, clock: FrozenClock) -> Population:
    """Users, clients, a rotated refresh family, SSO, denylist, audit, two signing keys, and
    an expired code."""
    user = await gate.accounts.add("alice", PASSWORD, email="alice@example.com")
    await gate.accounts.add("bob", PASSWORD)
    web, secret = await gate.clients.add("web", redirect_uris=["https://app.example/cb"])
    assert secret is not None
    await gate.clients.add("spa", public=True, redirect_uris=["https://spa.example/cb"])
    first = await gate.refresh.issue(family="fam-1", user_id=user.id, client=web,
                                     scope="openid offline_access", auth_time=clock.now())
    second, _grant, _scope = await gate.refresh.rotate(first, web, None)
    cookie, _session = await gate.sso.start(user.id)
    token, _claims = gate.access.mint(sub=user.id, client_id="web", scope="openid")
    await gate.denylist.deny_jti("revoked-jti", clock.now() + 3600)
    code = await gate.codes.issue(CodeGrant("web", user.id, "https://app.example/cb", "openid",
                                            "fam-2", clock.now()))
    await gate.keys.rotate()  # two signing keys: one active, one retiring
    clock.advance(120)  # the code expires; the refresh grace window is over
    return Population(user.id, second, first, secret, cookie, token, "revoked-jti",
                      gate.codes.key(code))


@pytest.fixture
def keys() -> LocalKeys:
    return LocalKeys([new_sealing_key()], os.urandom(32))


@pytest.fixture
async def source(tmp_path: Path, keys: LocalKeys, clock: FrozenClock
                 ) -> AsyncIterator[tuple[AuthGate, Population]]:
    gate = await AuthGate.open(settings(f"sqlite:///{tmp_path}/source.db", tmp_path),
                               clock=clock, local_keys=keys)
    try:
        yield gate, await populate(gate, clock)
    finally:
        await gate.close()


async def live_counts(backend: Backend, now: float) -> dict[str, int]:
    counts = {}
    for kind in KINDS:
        records = await backend.scan(kind, limit=100_000)
        counts[kind] = sum(r.live(now) for r in records)
    return counts


def test_every_kind_in_the_package_is_listed() -> None:
    """A new record kind that is missing from KINDS would be left behind by migrate."""
    found = set()
    for path in SRC.rglob("*.py"):
        found.update(re.findall(r'^(?:KIND|THROTTLE) = "([a-z_]+)"$', path.read_text(), re.M))
    assert "refresh_token" in found
    assert found <= set(KINDS)


@pytest.mark.parametrize(
    "target_backend", [pytest.param(n, marks=MARKS.get(n, ())) for n in STORE_BACKENDS])
async def test_migrated_store_keeps_everyone_signed_in(
    target_backend: str, store_url: Callable[[str], str], tmp_path: Path, keys: LocalKeys,
    clock: FrozenClock, source: tuple[AuthGate, Population],
) -> None:
    """After the move users log in, refresh tokens rotate, reuse is caught and counts match."""
    gate, pop = source
    url = store_url(target_backend)
    checkpoint = Checkpoint.load(tmp_path / "cp.json", gate.settings.store_url, url)
    async with opened(url) as target:
        report = await migrate(gate.store.backend, target, gate.sealer, checkpoint,
                               batch=3, clock=clock)
        assert report.complete
        assert report.expired == 1  # the authorization code
        assert await target.find("code", pop.expired_code, now=clock.now() - 1000) is None
        assert report.live == await live_counts(gate.store.backend, clock.now())
        assert report.live == await live_counts(target, clock.now())
        assert report.live["user"] == 2
        assert report.live["signing_key"] == 2
        assert report.sampled == sum(report.live.values())  # small kinds are read back whole
    assert not checkpoint.path.exists()

    moved = await AuthGate.open(settings(url, tmp_path), clock=clock, local_keys=keys)
    try:
        assert await moved.accounts.authenticate("alice", PASSWORD) is not None
        web = await moved.clients.get("web")
        assert web is not None
        assert moved.clients.check_secret(web, pop.client_secret)
        assert (await moved.sso.get(pop.sso_cookie)) is not None
        assert (await moved.access.verify(pop.access_token))["sub"] == pop.user_id
        assert moved.denylist.denies({"jti": pop.denied_jti, "sub": pop.user_id})
        successor, grant, _ = await moved.refresh.rotate(pop.refresh, web, None)
        assert grant.family == "fam-1"
        assert successor != pop.refresh
        with pytest.raises(InvalidGrant, match="already used"):
            await moved.refresh.rotate(pop.rotated, web, None)  # consumed_at came along
    finally:
        await moved.close()


class Flaky:
    """A target that fails after ``fail_after`` upserts, like a crash mid-batch."""

    def __init__(self, backend: Backend, fail_after: int | None = None) -> None:
        self.backend = backend
        self.fail_after = fail_after
        self.upserts = 0

    def __getattr__(self, name: str) -> object:
        return getattr(self.backend, name)

    async def upsert(self, record: Record, *, now: float) -> None:
        if self.fail_after is not None and self.upserts >= self.fail_after:
            raise ConnectionError("target went away")
        self.upserts += 1
        await self.backend.upsert(record, now=now)


async def fill(backend: Backend, sealer: Sealer, clock: FrozenClock, n: int) -> None:
    store = SealedStore(backend, sealer, clock)
    for kind in ("user", "audit"):
        for i in range(n):
            await store.put(kind, f"{kind}-{i:05d}", {"i": i})


async def test_resumes_after_interruption(tmp_path: Path, clock: FrozenClock) -> None:
    """A stopped run leaves a checkpoint; the rerun copies only the rest and verifies."""
    src_url, dst_url = f"sqlite:///{tmp_path}/a.db", f"sqlite:///{tmp_path}/b.db"
    sealer = Sealer([new_sealing_key()])
    async with opened(src_url) as src, opened(dst_url) as dst:
        await fill(src, sealer, clock, 250)
        first = Flaky(dst)
        cp = Checkpoint.load(tmp_path / "cp.json", src_url, dst_url)
        stopped = await migrate(src, first, sealer, cp, batch=100,  # type: ignore[arg-type]
                                clock=clock, max_batches=4)
        assert not stopped.complete
        assert first.upserts == 350
        saved = Checkpoint.load(tmp_path / "cp.json", src_url, dst_url)
        assert saved.kinds["user"].done
        assert saved.kinds["audit"].after == "audit-00099"

        crashing = Flaky(dst, fail_after=50)  # dies half-way through the next batch
        with pytest.raises(ConnectionError):
            await migrate(src, crashing, sealer, saved, batch=100,  # type: ignore[arg-type]
                          clock=clock)
        again = Flaky(dst)
        seen: list[KindProgress] = []
        resumed = Checkpoint.load(tmp_path / "cp.json", src_url, dst_url)
        report = await migrate(src, again, sealer, resumed, batch=100,  # type: ignore[arg-type]
                               clock=clock, progress=lambda p: seen.append(replace(p)))
        assert report.complete
        assert again.upserts == 150
        assert report.live == {**dict.fromkeys(KINDS, 0), "user": 250, "audit": 250}
        assert seen[0].kind == "user"
        assert seen[0].done
        assert await dst.count() == 500


async def test_expired_records_are_left_behind(tmp_path: Path, clock: FrozenClock) -> None:
    """Only live records are copied; expiry, grant, subject and consumed_at come along."""
    now = clock.now()
    sealer = Sealer([new_sealing_key()])
    async with opened(f"sqlite:///{tmp_path}/a.db") as src, \
            opened(f"sqlite:///{tmp_path}/b.db") as dst:
        sealed = SealedStore(src, sealer, clock)
        live = replace(sealed.record("refresh_token", "live", {}, expires_at=now + 60,
                                     grant_id="fam", subject="user-1"), consumed_at=now - 5)
        await src.upsert(live, now=now)
        await sealed.put("refresh_token", "dead", {}, expires_at=now - 1)
        await sealed.put("sso", "dead", {}, expires_at=now)
        cp = Checkpoint(tmp_path / "cp.json", "sqlite:///a", "sqlite:///b")
        report = await migrate(src, dst, sealer, cp, clock=clock)
        assert report.expired == 2
        assert report.copied == 1
        assert await dst.scan("refresh_token") == [live]
        assert await dst.count() == 1


async def test_refuses_a_non_empty_target(tmp_path: Path, clock: FrozenClock) -> None:
    """Merging into a store in use would mix two installations: refused up front."""
    async with opened(f"sqlite:///{tmp_path}/a.db") as src, \
            opened(f"sqlite:///{tmp_path}/b.db") as dst:
        await dst.upsert(Record("user", "u", b"p"), now=clock.now())
        cp = Checkpoint(tmp_path / "cp.json", "sqlite:///a", "sqlite:///b")
        with pytest.raises(StoreError, match=r"not empty \(1 records\)"):
            await migrate(src, dst, Sealer([new_sealing_key()]), cp, clock=clock)
        assert not cp.path.exists()


class Lossy(Flaky):
    """A target that silently drops or alters records."""

    def __init__(self, backend: Backend, drop: str = "", alter: str = "") -> None:
        super().__init__(backend)
        self.drop, self.alter = drop, alter

    async def upsert(self, record: Record, *, now: float) -> None:
        if record.id == self.drop:
            return
        if record.id == self.alter:
            record = replace(record, consumed_at=None)
        await self.backend.upsert(record, now=now)


@pytest.mark.parametrize(("lossy", "reason"), [
    ({"drop": "rt-3"}, "3 live refresh_token records in the source, 2 in the target"),
    ({"alter": "rt-1"}, "refresh_token record rt-1… differs in the target"),
])
async def test_verification_catches_a_bad_copy(
    tmp_path: Path, clock: FrozenClock, lossy: dict[str, str], reason: str,
) -> None:
    """A missing or changed record fails the run; the next run copies everything again."""
    sealer = Sealer([new_sealing_key()])
    now = clock.now()
    async with opened(f"sqlite:///{tmp_path}/a.db") as src, \
            opened(f"sqlite:///{tmp_path}/b.db") as dst:
        sealed = SealedStore(src, sealer, clock)
        for i in (1, 2, 3):
            rec = sealed.record("refresh_token", f"rt-{i}", {"n": i}, expires_at=now + 60)
            await src.upsert(replace(rec, consumed_at=now), now=now)
        cp = Checkpoint(tmp_path / "cp.json", "sqlite:///a", "sqlite:///b")
        with pytest.raises(StoreError, match=re.escape(reason)):
            await migrate(src, Lossy(dst, **lossy), sealer, cp,  # type: ignore[arg-type]
                          clock=clock)
        assert Checkpoint.load(cp.path, "sqlite:///a", "sqlite:///b").kinds == {}


async def test_verification_needs_the_right_sealing_keys(
    tmp_path: Path, clock: FrozenClock, source: tuple[AuthGate, Population],
) -> None:
    """Migrating with another installation's keys is caught: the sample does not open."""
    gate, _ = source
    url = f"sqlite:///{tmp_path}/b.db"
    async with opened(url) as dst:
        cp = Checkpoint(tmp_path / "cp.json", gate.settings.store_url, url)
        with pytest.raises(StoreError, match="does not open with the sealing keys"):
            await migrate(gate.store.backend, dst, Sealer([new_sealing_key()]), cp, clock=clock)


def test_same_store_is_recognised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One file under two spellings is the same store; another prefix or schema is not."""
    monkeypatch.chdir(tmp_path)
    assert same_store("sqlite:///a.db", f"sqlite:///{tmp_path}/a.db")
    assert same_store("postgres://u:x@DB/app", "postgresql+asyncpg://u:y@db/app")
    assert not same_store("redis://h/0?prefix=a", "redis://h/0?prefix=b")
    assert not same_store("postgresql://db/app", "postgresql://db/app?schema=other")


def test_checkpoint_of_another_pair_is_refused(tmp_path: Path) -> None:
    """A checkpoint only resumes the migration it was written by."""
    Checkpoint(tmp_path / "cp.json", "sqlite:///a", "sqlite:///b").save()
    with pytest.raises(ConfigError, match="between other stores"):
        Checkpoint.load(tmp_path / "cp.json", "sqlite:///a", "sqlite:///c")
    (tmp_path / "cp.json").write_text("{")
    with pytest.raises(ConfigError, match="not a migration checkpoint"):
        Checkpoint.load(tmp_path / "cp.json", "sqlite:///a", "sqlite:///b")


class TTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_bar_draws_on_a_terminal_only() -> None:
    """Per-kind bar with counts and rate on a TTY; nothing at all elsewhere."""
    quiet = io.StringIO()
    store_cmd.ProgressBar(quiet)(KindProgress("user", total=4, scanned=4, done=True))
    assert quiet.getvalue() == ""
    tty = TTY()
    bar = store_cmd.ProgressBar(tty)
    bar(KindProgress("audit", total=10))
    bar(KindProgress("audit", total=10, scanned=10, copied=9, expired=1, done=True))
    bar(KindProgress("user", total=2, scanned=2, copied=2, done=True))
    lines = tty.getvalue().split("\n")
    assert "audit" in lines[0]
    assert "10/10 100%" in lines[0]
    assert "records/s" in lines[0]
    assert "(1 expired, skipped)" in lines[0]
    assert "copied by an earlier run" in lines[1]


# -- the command line -----------------------------------------------------------------


@pytest.fixture
def run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> Callable[..., tuple[int, str, str]]:
    """``authgate ARGV`` in-process in a fresh working directory, with ``store`` registered."""
    for name in list(os.environ):
        if name.startswith("AUTHGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    if store_cmd not in cli.COMMANDS:
        monkeypatch.setattr(cli, "COMMANDS", (*cli.COMMANDS, store_cmd))

    def go(*argv: str, stdin: str = "") -> tuple[int, str, str]:
        capsys.readouterr()
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
        code = cli.main(list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    assert go("init")[0] == 0
    assert go("users", "add", "alice", "--password-stdin", stdin=PASSWORD + "\n")[0] == 0
    return go


def test_cli_migrate_then_stats(run: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    """Not on a terminal: no progress output, one result line; the copy is usable at once."""
    target = f"sqlite:///{tmp_path}/moved.db"
    code, out, err = run("store", "migrate", "--to", target, "--batch", "2")
    assert (code, err) == (0, "")
    assert out.startswith("migrated ")
    assert "verified: live counts equal for 12 kinds" in out
    assert not (tmp_path / ".authgate" / "store-migrate.json").exists()
    code, out, _ = run("store", "stats", "--store", target)
    assert code == 0
    assert re.search(r"^user\s+1\s+1\s+0$", out, re.M)


def test_cli_migrate_refusals(run: Callable[..., tuple[int, str, str]], tmp_path: Path) -> None:
    """Same store, a non-empty target or a bad batch size: one error line, non-zero exit."""
    code, _, err = run("store", "migrate", "--to", "sqlite:///.authgate/authgate.db")
    assert code == 2
    assert err.strip() == "authgate: error: --from and --to name the same store"
    other = f"sqlite:///{tmp_path}/other.db"
    assert run("store", "migrate", "--to", other)[0] == 0
    code, _, err = run("store", "migrate", "--to", other)
    assert code == 1
    assert "not empty" in err
    assert len(err.splitlines()) == 1
    code, _, err = run("store", "migrate", "--to", other, "--batch", "0")
    assert code == 2
    assert "must be at least 1" in err

