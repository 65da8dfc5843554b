"""``authgate keys``: list and rotate signing keys; rotate the sealing key."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from authgate.hashing import b64url
from authgate.service import AuthGate

from .conftest import CLI, assert_one_error


def test_rotate_keeps_old_key_verifying(cli: CLI) -> None:
    """After a rotation two keys are listed: the new one active, the old one retiring."""
    before = cli.ok("keys", "list").out.splitlines()
    assert len(before) == 2
    old_kid = before[1].split()[0]
    out = cli.ok("keys", "rotate", "--alg", "EdDSA").out
    assert "(EdDSA) is active" in out
    assert f"previous key {old_kid}" in out
    assert "keeps verifying" in out
    assert "tokens.signing_alg is ES256" in out
    rows = cli.ok("keys", "list").out.splitlines()[1:]
    assert len(rows) == 2
    new, old = (r.split() for r in rows)
    assert new[1:2] == ["EdDSA"]
    assert new[3] == "active"
    assert old[0] == old_kid
    assert old[3] == "retiring,"
    jwks = cli.service(_jwks)
    assert {k["kid"] for k in jwks} == {old_kid, new[0]}
    listed = cli.ok("keys", "list").out
    assert '"d"' not in listed
    assert "PRIVATE" not in listed


async def _jwks(gate: AuthGate) -> list[dict[str, str]]:
    keys: list[dict[str, str]] = gate.keys.jwks()["keys"]
    return keys


def test_rotate_sealing_prepends_and_keeps_data(cli: CLI, alice: str, home: Path) -> None:
    """--sealing puts a new key first, keeps the old one, and existing records still open."""
    path = home / ".authgate" / "keys.json"
    old = json.loads(path.read_text())["sealing"]
    out = cli.ok("keys", "rotate", "--sealing").out
    new = json.loads(path.read_text())["sealing"]
    assert [k["kid"] for k in new[1:]] == [k["kid"] for k in old]
    assert new[0]["kid"] in out
    assert "re-sealed lazily" in out
    assert new[0]["key"] not in out
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert "alice" in cli.ok("users", "list").out
    cli.ok("users", "add", "bob", "--password-stdin", stdin="another password\n")
    assert cli.service(_sealing_kid) == new[0]["kid"]


async def _sealing_kid(gate: AuthGate) -> str:
    return gate.store.sealer.active_kid


def test_rotate_sealing_rejects_alg(cli: CLI) -> None:
    """--alg only makes sense for signing keys."""
    assert_one_error(cli("keys", "rotate", "--sealing", "--alg", "RS256"), 2, "--alg")


def test_bad_alg(cli: CLI) -> None:
    """An algorithm outside the allow-list is a usage error."""
    assert_one_error(cli("keys", "rotate", "--alg", "HS256"), 2, "HS256")


def test_sealing_keys_from_environment(bare: CLI, home: Path,
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys from AUTHGATE_SEALING_KEYS: no keys.json is written; rotation points there."""
    monkeypatch.setenv("AUTHGATE_SEALING_KEYS", "env1:" + b64url(bytes(range(32))))
    monkeypatch.setenv("AUTHGATE_HASH_KEY", b64url(bytes(range(32, 64))))
    assert "from the environment" in bare.ok("init").out
    assert not (home / ".authgate" / "keys.json").exists()
    assert_one_error(bare("keys", "rotate", "--sealing"), 2, "AUTHGATE_SEALING_KEYS")
