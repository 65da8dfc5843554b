"""The Easy Auth compatible gateway: login with upstream providers, sessions, provider tokens.

:class:`Gateway` wires the gateway's parts around an opened
:class:`~authgate.service.AuthGate`; the endpoints reach it through
:func:`gateway_of`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from starlette.requests import Request

from ..service import AuthGate
from .provider_tokens import ProviderTokenStore
from .session_tokens import SessionTokens
from .sessions import GatewaySessions

if TYPE_CHECKING:
    from .freshness import Freshness
    from .providers.base import Provider


class Gateway:
    def __init__(self, gate: AuthGate) -> None:
        s = gate.settings
        self.gate = gate
        self.settings = s
        self.cookie_name = ("__Host-" if s.secure_cookies else "") + s.session.cookie_name
        self.sessions = GatewaySessions(gate.store, gate.hasher, s.session.cookie_lifetime,
                                        sliding=s.session.sliding)
        self.session_tokens = SessionTokens(gate.keys, s.public_url, s.session.signing_key)
        self.provider_tokens = ProviderTokenStore(gate.store, enabled=s.gateway.token_store)
        self.extras: dict[str, Any] = {}
        from .freshness import Freshness
        from .providers import load_providers

        # Built synchronously (no I/O): provider metadata is discovered lazily on first use.
        self.providers: dict[str, Provider] = load_providers(self)
        self.freshness: Freshness = Freshness(self)

    async def close(self) -> None:
        for p in self.providers.values():
            await p.close()


def gateway_of(request: Request) -> Gateway:
    gw: Gateway = request.app.state.gateway
    return gw
