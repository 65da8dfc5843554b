"""The running token service: every component, wired once.

Endpoints, the CLI and tests all reach the pieces through one
:class:`AuthGate`, opened from :class:`~authgate.config.Settings`.
"""

from __future__ import annotations

from . import refresh_tokens
from .access_tokens import AccessTokens
from .accounts import Accounts
from .audit import AuditLog
from .clients import ClientRegistry
from .clock import Clock, SystemClock
from .cluster import Cluster
from .codes import AuthorizationCodes
from .config import Settings
from .denylist import Denylist
from .hashing import TokenHasher
from .keystore import LocalKeys, load_local_keys
from .refresh_tokens import RefreshTokens
from .sealing import Sealer, SealingKey
from .signing import KeySet
from .sso import SSOSessions
from .store.factory import create_backend
from .store.sealed import SealedStore


class AuthGate:
    def __init__(self, settings: Settings, local_keys: LocalKeys, clock: Clock | None = None) -> None:
        self.settings = settings
        self.clock = clock or SystemClock()
        self.local_keys = local_keys
        self.hasher = TokenHasher(local_keys.hash_key)
        self.sealer = Sealer(local_keys.sealing, reload=self._reload_sealing_keys)
        self.store = SealedStore(create_backend(settings.store_url), self.sealer, self.clock)
        t = settings.tokens
        self.keys = KeySet(self.store, t.signing_alg, max(t.access_token_lifetime, t.id_token_lifetime) + t.leeway)
        self.denylist = Denylist(self.store)
        self.audit = AuditLog(self.store)
        self.accounts = Accounts(self.store, settings.login)
        self.clients = ClientRegistry(self.store, self.hasher)
        self.access = AccessTokens(self.keys, self.clock, self.denylist, issuer=settings.issuer,
                                   audience=settings.public_url.rstrip("/"),
                                   lifetime=t.access_token_lifetime, leeway=t.leeway)
        self.refresh = RefreshTokens(self.store, self.hasher, self.denylist, self.audit, t)
        self.codes = AuthorizationCodes(self.store, self.hasher, t.code_lifetime)
        self.sso = SSOSessions(self.store, self.hasher, settings.login.sso_lifetime)
        self.cluster = Cluster(self)  # publishes local changes; `serve` also starts listening

    def _reload_sealing_keys(self) -> list[SealingKey]:
        """Sealing keys rotated by another process (``authgate keys rotate --sealing``)."""
        path = self.local_keys.path
        if path is None:
            return self.local_keys.sealing
        self.local_keys = load_local_keys(path.parent, environ={}, create=False)
        return self.local_keys.sealing

    @classmethod
    async def open(cls, settings: Settings, *, clock: Clock | None = None,
                   local_keys: LocalKeys | None = None) -> AuthGate:
        if local_keys is None:
            local_keys = load_local_keys(settings.data_dir)
        gate = cls(settings, local_keys, clock)
        await gate.store.open()
        await gate.keys.load()
        await gate.denylist.sync(force=True)
        return gate

    async def close(self) -> None:
        await self.cluster.stop()
        await self.store.close()

    async def remove_client(self, client_id: str) -> int | None:
        """Delete a client and revoke every grant it holds; None when there is no such client.

        Returns how many refresh-token families were revoked. Their outstanding access
        tokens are denied, and re-registering the same ``client_id`` later does not bring
        the old refresh tokens back. Finding them reads every stored refresh token (there
        is no index by client): an administrative operation, not a hot path.
        """
        client = await self.clients.get(client_id)
        if client is None or not await self.clients.remove(client_id):
            return None
        families = {e.grant_id: e.data.get("user_id")
                    for e in await self.store.all(refresh_tokens.KIND)
                    if e.grant_id and e.data.get("client_id") == client_id}
        for family, user in sorted(families.items()):
            await self.refresh.revoke_family(family, user=user, client=client,
                                             event="family.revoked", reason="client removed")
        await self.audit.record("client.removed", client=client_id,
                                reason=f"{len(families)} grant(s) revoked")
        return len(families)

    async def _end_gateway_sessions(self, user_id: str) -> None:
        """End the gateway sessions (and drop the stored tokens) of a user who signed in
        through the ``local`` provider. Other instances' session caches let go within
        ``gateway.sessions.CACHE_SECONDS``."""
        # Imported here: the gateway package builds on this module.
        from .gateway import provider_tokens, sessions

        key = sessions.user_key("local", user_id)
        for kind in (sessions.KIND, provider_tokens.KIND):
            for entry in await self.store.by_subject(kind, key, limit=10_000):
                await self.store.delete(kind, entry.id)

    async def sign_out_everywhere(self, user_id: str, *, reason: str = "sign out everywhere") -> int:
        """Revoke every family, SSO session and outstanding access token of a user."""
        families = await self.refresh.families_of(user_id)
        for family, entry in families.items():
            client = await self.clients.get(entry.data["client_id"])
            await self.refresh.revoke_family(family, user=user_id, client=client,
                                             event="family.revoked", reason=reason)
        await self.sso.end_all(user_id)
        await self._end_gateway_sessions(user_id)
        t = self.settings.tokens
        await self.denylist.deny_user(user_id, self.clock.now() + t.access_token_lifetime + t.leeway)
        await self.audit.record("user.signed_out", user=user_id, reason=reason)
        return len(families)
