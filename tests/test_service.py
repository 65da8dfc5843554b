"""The AuthGate service facade: operations that span several components."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from authgate.errors import InvalidGrant, InvalidToken
from authgate.hashing import new_id
from authgate.service import AuthGate

from .support import open_gate

REDIRECT = "https://app.example/cb"
OPTIONS = {"redirect_uris": [REDIRECT], "grant_types": ["authorization_code", "refresh_token"],
           "scopes": ["openid", "offline_access"]}


@pytest.fixture
async def gate(tmp_path: Path) -> AsyncIterator[AuthGate]:
    g = await open_gate(tmp_path)
    yield g
    await g.close()


async def _family(gate: AuthGate, client_id: str, user_id: str) -> tuple[str, str, str]:
    """A new refresh-token family of ``client_id``: (family, refresh token, access token)."""
    client = await gate.clients.get(client_id)
    assert client is not None
    family = new_id()
    token = await gate.refresh.issue(family=family, user_id=user_id, client=client,
                                     scope="openid offline_access", auth_time=gate.clock.now())
    access, _claims = gate.access.mint(sub=user_id, client_id=client_id, scope="openid",
                                       grant_id=family)
    return family, token, access


async def test_removing_a_client_revokes_its_grants_and_only_its(gate: AuthGate) -> None:
    alice = await gate.accounts.add("alice", "correct horse battery")
    await gate.clients.add("conf", **OPTIONS)
    await gate.clients.add("other", **OPTIONS)
    mine = [await _family(gate, "conf", alice.id) for _ in range(2)]
    theirs = await _family(gate, "other", alice.id)
    conf_client = await gate.clients.get("conf")
    assert conf_client is not None
    successor, _grant, _scope = await gate.refresh.rotate(mine[0][1], conf_client, None)

    assert await gate.remove_client("conf") == 2
    assert await gate.clients.get("conf") is None
    for _family_id, token, access in mine:
        assert await gate.refresh.lookup(token) is None
        with pytest.raises(InvalidToken, match="revoked"):
            await gate.access.verify(access)
    assert await gate.refresh.lookup(successor) is None
    # The other client's grant is untouched.
    assert await gate.refresh.lookup(theirs[1]) is not None
    assert (await gate.access.verify(theirs[2]))["client_id"] == "other"
    # Registering the id again does not bring the old grants back.
    again, _secret = await gate.clients.add("conf", **OPTIONS)
    with pytest.raises(InvalidGrant):
        await gate.refresh.rotate(mine[1][1], again, None)
    events = [e.event for e in await gate.audit.for_subject("client:conf")]
    assert "client.removed" in events


async def test_removing_an_unknown_client_is_none(gate: AuthGate) -> None:
    assert await gate.remove_client("nobody") is None
