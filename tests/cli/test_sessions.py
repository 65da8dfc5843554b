"""``authgate tokens revoke``, ``sessions list|revoke`` and ``audit``.

Grants are created through the library, as the token endpoint would, so the
tokens themselves are known to the test -- which then checks that no command
ever prints them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

import pytest

from authgate.hashing import new_id
from authgate.service import AuthGate

from .conftest import CLI, assert_one_error


@dataclass
class Signed:
    family: str
    tokens: list[str]
    sid: str
    cookie: str


async def _sign_in(gate: AuthGate, user_id: str) -> Signed:
    """A browser login plus a refresh-token family rotated once at client ``web``."""
    client = await gate.clients.get("web") or (await gate.clients.add(
        "web", redirect_uris=["https://app.example.com/cb"]))[0]
    family = new_id()
    first = await gate.refresh.issue(family=family, user_id=user_id, client=client,
                                     scope="openid offline_access", auth_time=gate.clock.now())
    second, _grant, _scope = await gate.refresh.rotate(first, client, None)
    cookie, session = await gate.sso.start(user_id)
    return Signed(family, [first, second], session.sid, cookie)


@pytest.fixture
def signed(cli: CLI, alice: str) -> Signed:
    return cli.service(lambda g: _sign_in(g, alice))


def _no_credentials(text: str, signed: Signed) -> None:
    for secret in [*signed.tokens, signed.cookie]:
        assert secret not in text
    assert "agr_" not in text
    assert "ags_" not in text


def test_sessions_list(cli: CLI, signed: Signed) -> None:
    """Families show id, client, scope and times; SSO sessions their sid -- never a token."""
    out = cli.ok("sessions", "list", "--user", "alice").out
    family_row = next(line for line in out.splitlines() if signed.family in line)
    assert family_row.split()[:3] == ["alice", signed.family, "web"]
    assert "openid offline_access" in family_row
    assert len(re.findall(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", family_row)) == 3
    assert signed.sid in out
    _no_credentials(out, signed)
    assert out == cli.ok("sessions", "list").out


def test_sessions_list_empty(cli: CLI, alice: str) -> None:
    """A user with no session gets two empty sections, not an error."""
    out = cli.ok("sessions", "list", "--user", "alice").out
    assert out.count("none") == 2


def test_tokens_revoke_signs_out_everywhere(cli: CLI, alice: str, signed: Signed) -> None:
    """Every family and SSO session ends; the count is printed; the audit log says why."""
    out = cli.ok("tokens", "revoke", "--user", "alice", "--reason", "lost laptop").out
    assert "1 grant revoked" in out
    assert "1 SSO session ended" in out
    _no_credentials(out, signed)
    assert cli.service(lambda g: g.refresh.families_of(alice)) == {}
    assert cli.service(lambda g: g.sso.of_user(alice)) == []
    listed = cli.ok("sessions", "list", "--user", "alice").out
    assert signed.family not in listed
    assert signed.sid not in listed
    assert "lost laptop" in cli.ok("audit", "--user", "alice").out


def test_sessions_revoke_is_tokens_revoke(cli: CLI, alice: str, signed: Signed) -> None:
    """``sessions revoke`` is the same sign-out-everywhere."""
    assert "1 grant revoked" in cli.ok("sessions", "revoke", "--user", "alice").out
    assert cli.service(lambda g: g.refresh.families_of(alice)) == {}


def test_audit_never_shows_a_token(cli: CLI, alice: str, signed: Signed) -> None:
    """The audit table and JSON show events with family ids, and no credential."""
    cli.ok("tokens", "revoke", "--user", "alice")
    table = cli.ok("audit", "--user", "alice").out
    assert table.splitlines()[0].split() == ["TIME", "EVENT", "CLIENT", "FAMILY", "REASON"]
    for event in ("refresh_token.issued", "refresh_token.rotated", "family.revoked",
                  "user.signed_out"):
        assert event in table
    assert signed.family in table
    _no_credentials(table, signed)
    raw = cli.ok("audit", "--user", "alice", "--json").out
    _no_credentials(raw, signed)
    events = json.loads(raw)
    assert [e["event"] for e in events][-1] == "user.signed_out"
    assert all(e["time"].endswith("Z") and "." not in e["time"] for e in events)
    assert {e["user"] for e in events} == {alice}


def test_audit_limit_keeps_the_newest(cli: CLI, alice: str, signed: Signed) -> None:
    """--limit N shows the last N events, oldest first."""
    cli.ok("tokens", "revoke", "--user", "alice", "--reason", "the last one")
    events = json.loads(cli.ok("audit", "--user", "alice", "--json", "--limit", "1").out)
    assert len(events) == 1
    assert events[0]["reason"] == "the last one"
    assert_one_error(cli("audit", "--user", "alice", "--limit", "0"), 2, "--limit")


def test_unknown_user_is_a_clean_error(cli: CLI) -> None:
    """Every --user command: exit 1, one line naming the user, no traceback."""
    for argv in (["tokens", "revoke"], ["sessions", "revoke"], ["sessions", "list"], ["audit"]):
        assert_one_error(cli(*argv, "--user", "nobody"), 1, "no user named 'nobody'")
