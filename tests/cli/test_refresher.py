"""``authgate refresher``: one pass over stored provider grants, with a report."""

from __future__ import annotations

from authgate.gateway.provider_tokens import ProviderTokens, ProviderTokenStore
from authgate.service import AuthGate

from .conftest import CLI


def test_refresher_once_reports_dead_grants(cli: CLI) -> None:
    """A grant whose provider refused it is reported as needing a new sign-in; fresh ones are left alone."""
    async def seed(gate: AuthGate) -> None:
        store = ProviderTokenStore(gate.store)
        now = gate.clock.now()
        await store.save("corp|alice", ProviderTokens("corp", "alice", "at", "rt", None,
                                                      now + 86400, refresh_failed="invalid_grant"))
        await store.save("corp|bob", ProviderTokens("corp", "bob", "at", "rt", None, now + 86400))

    cli.service(seed)
    r = cli.ok("refresher", "--once")
    assert "checked 2, refreshed 0, dead 1" in r.out
    assert "corp|alice at corp must sign in again" in r.out
    assert "rt" not in r.out.replace("refresh", "").replace("provider", "")


def test_refresher_rejects_bad_interval(cli: CLI) -> None:
    """A nonsense interval is a one-line usage error."""
    r = cli("refresher", "--interval", "soon")
    assert r.code == 2 and r.err.startswith("authgate: error:")
