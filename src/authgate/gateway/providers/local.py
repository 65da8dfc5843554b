"""``local``: authgate's own OpenID Connect issuer as a provider, without a network hop.

The browser goes through the real authorization endpoint
(``/.auth/oauth2/authorize``: the sign-in page, SSO, ``prompt``, PKCE S256)
as an internal confidential client, ``authgate-gateway``, registered on first
use with this gateway's callback as its only redirect URI. What a remote
provider does over HTTP -- the code exchange (RFC 6749 §4.1.3), refresh (§6),
revocation (RFC 7009) -- runs in-process through the same grant functions the
token endpoint uses, so every rule of the issuer (single-use codes, rotation,
reuse detection, disabled users) applies unchanged. The ID token is checked
like any other provider's (:func:`~.oidc.validate_id_token`), against the
issuer's published keys.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlencode

from joserfc.jwk import KeySet

from ...accounts import User
from ...clients import Client
from ...errors import ConfigError, InvalidToken, OAuthError
from ...id_tokens import user_claims
from ...oauth import pkce
from ...oauth.grants import authorization_code, refresh_token
from ..provider_tokens import ProviderTokens
from .base import GrantRejected, LoginRefused, Provider, UpstreamUser
from .claims import display_name, to_claims
from .oidc import validate_id_token

CLIENT_ID = "authgate-gateway"


class LocalProvider(Provider):
    kind = "local"
    NEEDS_OPENID = True
    KEYS = Provider.KEYS | frozenset({"client_id"})
    DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")

    def __init__(self, name: str, config: dict[str, Any], gw: Any) -> None:
        super().__init__(name, config, gw)
        self.client_id = str(config.get("client_id", CLIENT_ID))
        self._client: Client | None = None
        self._lock = asyncio.Lock()

    async def client(self) -> Client:
        """The internal client, registered (or its redirect URI corrected) on first use."""
        if self._client is not None:
            return self._client
        clients = self.gw.gate.clients
        async with self._lock:
            client = await clients.get(self.client_id)
            if client is None:
                try:
                    client, _secret = await clients.add(
                        self.client_id, name="authgate gateway (local provider)",
                        redirect_uris=[self.callback_url], scopes=list(self.DEFAULT_SCOPES),
                        grant_types=["authorization_code", "refresh_token"])
                except ConfigError:  # registered meanwhile by another instance
                    client = await clients.get(self.client_id)
            assert client is not None
            if client.redirect_uris != [self.callback_url] or client.public:
                client.redirect_uris = [self.callback_url]
                await clients.save(client)
            self._client = client
        return client

    def _user(self, user: User, scopes: list[str], tokens: ProviderTokens,
              extra: dict[str, Any] | None = None) -> UpstreamUser:
        raw = {"sub": user.id, **user_claims(user, scopes), **(extra or {})}
        tokens.user_id, tokens.claims = user.id, to_claims(raw)
        return UpstreamUser(user.id, display_name(raw, user.username), tokens.claims, tokens)

    async def _active(self, user_id: object) -> User:
        user = await self.gw.gate.accounts.get(str(user_id))
        if user is None or user.disabled:
            raise LoginRefused("the user is not active")
        return user

    # -- login ----------------------------------------------------------------

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str,
                                params: dict[str, str]) -> str:
        await self.client()
        query = {"scope": " ".join(self.scopes), **params, "response_type": "code",
                 "client_id": self.client_id, "redirect_uri": self.callback_url, "state": state,
                 "nonce": nonce, "code_challenge": pkce.s256(code_verifier),
                 "code_challenge_method": "S256"}
        base = self.gw.settings.public_url.rstrip("/")
        return f"{base}/.auth/oauth2/authorize?{urlencode(query)}"

    async def complete(self, params: dict[str, str], *, nonce: str,
                       code_verifier: str) -> UpstreamUser:
        if "error" in params:
            raise LoginRefused(f"the issuer answered error={params['error'][:64]!r}")
        if params.get("iss") != self.gw.settings.issuer:  # RFC 9207: we always send it
            raise LoginRefused("the authorization response names another issuer (RFC 9207)")
        code = params.get("code")
        if not code:
            raise LoginRefused("the authorization response has no code")
        return await self.from_code(code, code_verifier=code_verifier,
                                    redirect_uri=self.callback_url, nonce=nonce)

    async def from_code(self, code: str, *, code_verifier: str | None,
                        redirect_uri: str | None, nonce: str | None = None) -> UpstreamUser:
        client = await self.client()
        form = {"code": code, "redirect_uri": redirect_uri or self.callback_url}
        if code_verifier:
            form["code_verifier"] = code_verifier
        try:
            body = await authorization_code.grant(self.gw.gate, client, form)
        except OAuthError as exc:
            raise LoginRefused(f"code exchange: {exc.error} ({exc.description})") from None
        claims = self._check_id_token(str(body.get("id_token", "")), nonce)
        user = await self._active(claims["sub"])
        return self._user(user, str(body.get("scope", "")).split(), self.tokens_from(body))

    def _check_id_token(self, token: str, nonce: str | None) -> dict[str, Any]:
        keys = KeySet.import_key_set(self.gw.gate.keys.jwks())  # type: ignore[arg-type]
        return validate_id_token(token, keys, issuer=self.gw.settings.issuer,
                                 client_id=self.client_id, nonce=nonce, now=self.now(),
                                 leeway=self.gw.settings.tokens.leeway, algorithms=("ES256",
                                 "EdDSA", "RS256"))

    def tokens_from(self, body: dict[str, Any], previous: ProviderTokens | None = None,
                    ) -> ProviderTokens:
        prev = previous or ProviderTokens(self.name, "")
        expires_in = body.get("expires_in")
        return ProviderTokens(
            provider=self.name, user_id=prev.user_id, access_token=body.get("access_token"),
            refresh_token=body.get("refresh_token") or prev.refresh_token,
            id_token=body.get("id_token") or prev.id_token,
            expires_on=self.now() + float(expires_in) if isinstance(expires_in, int) else None,
            scopes=str(body.get("scope", "")).split(), claims=list(prev.claims))

    # -- client-directed ----------------------------------------------------------

    async def from_access_token(self, access_token: str) -> UpstreamUser:
        try:
            claims = await self.gw.gate.access.verify(access_token)
        except InvalidToken as exc:
            raise LoginRefused(f"access token: {exc.description}") from None
        user = await self._active(claims["sub"])
        tokens = ProviderTokens(self.name, user.id, access_token=access_token,
                                expires_on=float(claims["exp"]),
                                scopes=str(claims.get("scope", "")).split())
        return self._user(user, tokens.scopes, tokens)

    async def from_id_token(self, id_token: str, access_token: str | None = None) -> UpstreamUser:
        claims = self._check_id_token(id_token, None)
        user = await self._active(claims["sub"])
        tokens = ProviderTokens(self.name, user.id, id_token=id_token,
                                expires_on=float(claims["exp"]))
        return self._user(user, ["profile", "email"], tokens)

    # -- refresh and revocation -----------------------------------------------------

    async def refresh(self, tokens: ProviderTokens) -> ProviderTokens:
        if not tokens.refresh_token:
            raise GrantRejected("no refresh token is stored")
        client = await self.client()
        try:
            body = await refresh_token.grant(self.gw.gate, client,
                                             {"refresh_token": tokens.refresh_token})
        except OAuthError as exc:
            raise GrantRejected(f"refresh: {exc.error} ({exc.description})") from None
        return self.tokens_from(body, tokens)

    async def revoke(self, tokens: ProviderTokens) -> bool:
        """End the refresh-token family (and so its access tokens) and deny the access token."""
        gate = self.gw.gate
        client = await self.client()
        done = False
        if tokens.refresh_token:
            entry = await gate.refresh.lookup(tokens.refresh_token)
            if entry is not None and entry.grant_id:
                await gate.refresh.revoke_family(entry.grant_id, user=entry.data["user_id"],
                                                 client=client, event="family.revoked",
                                                 reason="gateway logout")
                done = True
        if tokens.access_token:
            try:
                claims = await gate.access.verify(tokens.access_token)
            except InvalidToken:
                return done
            await gate.denylist.deny_jti(claims["jti"],
                                         float(claims["exp"]) + gate.settings.tokens.leeway)
            done = True
        return done
