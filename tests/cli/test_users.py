"""``authgate users``: add, list, disable, enable, passwd."""

from __future__ import annotations

from authgate.hashing import new_id
from authgate.service import AuthGate

from .conftest import CLI, PASSWORD, assert_one_error


async def _grant(gate: AuthGate, user_id: str) -> str:
    """A live refresh-token family for the user at a fresh client."""
    client = await gate.clients.get("web") or (await gate.clients.add("web"))[0]
    family = new_id()
    await gate.refresh.issue(family=family, user_id=user_id, client=client,
                             scope="openid offline_access", auth_time=gate.clock.now())
    return family


def test_add_and_list(cli: CLI, alice: str) -> None:
    """A new user shows in the list with id, e-mail, enabled and creation time."""
    out = cli.ok("users", "list").out
    header, row = out.splitlines()
    assert header.split() == ["USERNAME", "ID", "NAME", "EMAIL", "DISABLED", "CREATED"]
    assert row.split()[:5] == ["alice", alice, "alice", "alice@example.com", "no"]
    assert row.split()[5].endswith("Z")
    assert "." not in row.split()[5]
    assert PASSWORD not in out


def test_list_empty(cli: CLI) -> None:
    """With no user the list says how to create one."""
    assert "authgate users add NAME" in cli.ok("users", "list").out


def test_added_password_works(cli: CLI, alice: str) -> None:
    """The password read from stdin is the one the account accepts."""
    user = cli.service(lambda g: g.accounts.authenticate("alice", PASSWORD))
    assert user is not None
    assert user.id == alice


def test_duplicate_user(cli: CLI, alice: str) -> None:
    """Adding an existing name fails (exit 1) with one line; names are case-insensitive."""
    assert_one_error(cli("users", "add", "Alice", "--password-stdin", stdin=PASSWORD + "\n"),
                     1, "already exists")


def test_password_rules_and_sources(cli: CLI) -> None:
    """Short, empty or unpromptable passwords are usage errors (exit 2)."""
    assert_one_error(cli("users", "add", "bob", "--password-stdin", stdin="short\n"), 2, "8")
    assert_one_error(cli("users", "add", "bob", "--password-stdin", stdin=""), 2, "no password")
    assert_one_error(cli("users", "add", "bob"), 2, "--password-stdin")
    assert "bob" not in cli.ok("users", "list").out


def test_disable_signs_out_everywhere(cli: CLI, alice: str) -> None:
    """Disable marks the user disabled and revokes every grant; enable undoes the flag."""
    cli.service(lambda g: _grant(g, alice))
    out = cli.ok("users", "disable", "alice").out
    assert "1 grant revoked" in out
    assert cli.service(lambda g: g.refresh.families_of(alice)) == {}
    assert " yes " in cli.ok("users", "list").out
    assert cli.service(lambda g: g.accounts.authenticate("alice", PASSWORD)) is None
    cli.ok("users", "enable", "alice")
    assert " no " in cli.ok("users", "list").out
    assert cli.service(lambda g: g.accounts.authenticate("alice", PASSWORD)) is not None


def test_passwd_changes_password_and_revokes(cli: CLI, alice: str) -> None:
    """passwd sets the new password, refuses the old one and revokes refresh tokens."""
    cli.service(lambda g: _grant(g, alice))
    out = cli.ok("users", "passwd", "alice", "--password-stdin", stdin="a brand new secret\n").out
    assert "signed out everywhere (1 grant revoked)" in out
    assert "a brand new secret" not in out
    assert cli.service(lambda g: g.accounts.authenticate("alice", "a brand new secret"))
    assert cli.service(lambda g: g.refresh.families_of(alice)) == {}
    events = cli.service(lambda g: g.audit.for_subject(alice))
    assert any(e.reason == "password changed" for e in events)


def test_unknown_user(cli: CLI) -> None:
    """Every users action on a missing name: exit 1, one line, no traceback."""
    for argv in (["disable", "nobody"], ["enable", "nobody"], ["passwd", "nobody"]):
        assert_one_error(cli("users", *argv, "--password-stdin", stdin=PASSWORD + "\n")
                         if argv[0] == "passwd" else cli("users", *argv), 1, "no user named")
