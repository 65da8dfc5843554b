"""``authgate clients``: registration, the secret shown once, listing, removal."""

from __future__ import annotations

import re

from authgate.service import AuthGate

from .conftest import CLI, assert_one_error

SECRET = re.compile(r"agcs_[A-Za-z0-9_-]{20,}")


def test_confidential_client_secret_shown_once(cli: CLI) -> None:
    """add prints a labelled secret that authenticates the client; list never shows it."""
    out = cli.ok("clients", "add", "web", "--redirect-uri", "https://app.example.com/cb",
                 "--name", "Web app").out
    assert "added confidential client 'web'" in out
    assert "shown once" in out
    secrets = SECRET.findall(out)
    assert len(secrets) == 1
    client = cli.service(lambda g: g.clients.get("web"))
    assert client is not None
    assert cli.service(lambda g: _check(g, "web", secrets[0]))
    listed = cli.ok("clients", "list").out
    assert secrets[0] not in listed
    assert "agcs_" not in listed
    row = next(line for line in listed.splitlines() if line.startswith("web "))
    assert "confidential" in row
    assert "https://app.example.com/cb" in row
    assert "authorization_code,refresh_token" in row


async def _check(gate: AuthGate, client_id: str, secret: str) -> bool:
    client = await gate.clients.get(client_id)
    assert client is not None
    return gate.clients.check_secret(client, secret)


def test_secret_from_stdin_is_not_echoed(cli: CLI) -> None:
    """A secret piped in is used but never printed back."""
    given = "s" * 40
    out = cli.ok("clients", "add", "svc", "--secret-stdin", "--grant-type", "client_credentials",
                 stdin=given + "\n").out
    assert given not in out
    assert "shown once" not in out
    assert cli.service(lambda g: _check(g, "svc", given))


def test_public_client(cli: CLI) -> None:
    """--public registers a client without a secret, listed as public."""
    out = cli.ok("clients", "add", "spa", "--public", "--redirect-uri",
                 "http://localhost:3000/cb").out
    assert "added public client 'spa'" in out
    assert "agcs_" not in out
    assert "secret" not in out
    row = next(line for line in cli.ok("clients", "list").out.splitlines()
               if line.startswith("spa "))
    assert " public " in row
    assert "http://localhost:3000/cb" in row


def test_options_are_stored(cli: CLI) -> None:
    """Grants, scopes and lifetimes (durations with units) reach the registry."""
    cli.ok("clients", "add", "svc", "--grant-type", "client_credentials", "--scope", "api",
           "--scope", "read", "--refresh-absolute-lifetime", "30d",
           "--refresh-inactivity-lifetime", "7d", "--access-token-lifetime", "10m")
    client = cli.service(lambda g: g.clients.get("svc"))
    assert client is not None
    assert client.grant_types == ["client_credentials"]
    assert client.scopes == ["api", "read"]
    assert client.refresh_absolute_lifetime == 30 * 86400
    assert client.refresh_inactivity_lifetime == 7 * 86400
    assert client.access_token_lifetime == 600


def test_bad_input_is_a_usage_error(cli: CLI) -> None:
    """Unknown grant, bad duration, bad redirect URI, conflicting flags: exit 2, one line."""
    assert_one_error(cli("clients", "add", "x", "--grant-type", "implicit"), 2, "implicit")
    assert_one_error(cli("clients", "add", "x", "--access-token-lifetime", "soon"), 2, "soon")
    assert_one_error(cli("clients", "add", "x", "--redirect-uri", "http://evil.example/cb"),
                     2, "loopback")
    assert_one_error(cli("clients", "add", "x", "--public", "--secret-stdin"), 2, "--public")
    assert_one_error(cli("clients", "add", "x", "--secret-stdin", stdin="short\n"), 2, "32")
    assert "no clients" in cli.ok("clients", "list").out


def test_duplicate_and_remove(cli: CLI) -> None:
    """A taken id fails with exit 1; remove deletes; removing again is not found."""
    cli.ok("clients", "add", "spa", "--public")
    assert_one_error(cli("clients", "add", "spa", "--public"), 1, "already exists")
    assert "removed client 'spa'" in cli.ok("clients", "remove", "spa").out
    assert cli.service(lambda g: g.clients.get("spa")) is None
    assert_one_error(cli("clients", "remove", "spa"), 1, "no client")
