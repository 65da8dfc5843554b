"""Presets: the well-known providers with their endpoints and quirks filled in.

``type = "google" | "aad" | "microsoftaccount" | "github" | "facebook" |
"apple" | "twitter"`` in a ``[providers.<name>]`` table; every preset still
takes ``client_id``, ``client_secret`` (or ``_env``/``_file``), ``scopes``
and ``login_params``. What each adds:

* google -- OpenID Connect at ``https://accounts.google.com`` (whose ID
  tokens may say ``iss = accounts.google.com``). Refresh tokens only with
  ``login_params = { access_type = "offline", prompt = "consent" }``.
* aad -- Microsoft identity platform v2, ``tenant`` (default ``common``);
  multi-tenant issuers are checked against the token's ``tid``.
* microsoftaccount -- aad with ``tenant = "consumers"``.
* github -- OAuth 2.0; the user is ``GET /user``; logout deletes the grant.
* facebook -- no refresh tokens: the code's token is exchanged for a
  long-lived one (``grant_type=fb_exchange_token``) and "refresh" repeats that
  exchange while the token is still valid.
* apple -- OpenID Connect with ``response_mode=form_post``; the client secret
  is an ES256 JWT made from ``team_id``, ``key_id`` and ``private_key``.
* twitter -- OAuth 2.0 with PKCE; refresh needs the ``offline.access`` scope.
"""

from __future__ import annotations

import json
import re
from typing import Any, ClassVar

import httpx
from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey

from ...config import resolve_secret
from ...errors import ConfigError
from ..provider_tokens import ProviderTokens
from .base import GrantRejected, LoginRefused, ProviderDown, UpstreamUser
from .oauth2 import OAuth2Provider
from .oidc import OIDCProvider

_TENANT = re.compile(r"^[A-Za-z0-9.-]{1,64}$")
_MS_ISSUER = re.compile(r"^https://login\.microsoftonline\.com/([0-9a-f-]{36}|\{tenantid\})/v2\.0$")
_GUID = re.compile(r"^[0-9a-f-]{36}$")


class Google(OIDCProvider):
    kind = "google"
    USERINFO = False
    ISSUER = "https://accounts.google.com"

    def expected_issuer(self, claims: dict[str, Any]) -> str:
        iss = claims.get("iss")
        return "accounts.google.com" if iss == "accounts.google.com" else self.ISSUER


class AAD(OIDCProvider):
    kind = "aad"
    USERINFO = False
    KEYS = OIDCProvider.KEYS | frozenset({"tenant"})
    DEFAULT_SCOPES = ("openid", "profile", "email", "offline_access")
    TENANT = "common"

    def __init__(self, name: str, config: dict[str, Any], gw: Any) -> None:
        tenant = str(config.get("tenant", self.TENANT))
        if not _TENANT.match(tenant):
            raise ConfigError(f"providers.{name}.tenant must be a tenant id or domain")
        self.tenant = tenant
        issuer = config.get("issuer") or f"https://login.microsoftonline.com/{tenant}/v2.0"
        super().__init__(name, {**config, "issuer": issuer}, gw)

    def issuer_matches(self, advertised: str, configured: str) -> bool:
        # /common, /organizations and /consumers advertise a template or the tenant's GUID.
        return advertised == configured or bool(_MS_ISSUER.match(advertised))

    async def expected_iss(self) -> str | None:
        iss = await super().expected_iss()
        return None if iss is None or "{tenantid}" in iss else iss  # multi-tenant: not knowable

    def expected_issuer(self, claims: dict[str, Any]) -> str:
        iss = super().expected_issuer(claims)
        if "{tenantid}" in iss:
            tid = claims.get("tid")
            good = isinstance(tid, str) and _GUID.match(tid)
            return iss.replace("{tenantid}", str(tid)) if good else ""
        return iss


class MicrosoftAccount(AAD):
    kind = "microsoftaccount"
    TENANT = "consumers"


class GitHub(OAuth2Provider):
    kind = "github"
    ENDPOINTS: ClassVar[dict[str, str]] = {
        "authorization_endpoint": "https://github.com/login/oauth/authorize",
        "token_endpoint": "https://github.com/login/oauth/access_token",
        "userinfo_endpoint": "https://api.github.com/user",
    }
    USER_ID_FIELD = "id"
    DEFAULT_SCOPES = ("read:user", "user:email")

    async def revoke(self, tokens: ProviderTokens) -> bool:
        """GitHub has no RFC 7009 endpoint: ``DELETE /applications/{client_id}/grant``."""
        if not tokens.access_token or not self.client_secret:
            return False
        try:
            r = await self.http.request(
                "DELETE", f"https://api.github.com/applications/{self.client_id}/grant",
                auth=httpx.BasicAuth(self.client_id, self.client_secret),
                json={"access_token": tokens.access_token})
        except httpx.HTTPError:
            return False
        return bool(r.status_code == 204)


class Facebook(OAuth2Provider):
    kind = "facebook"
    KEYS = OAuth2Provider.KEYS | frozenset({"graph_version"})
    USER_ID_FIELD = "id"
    DEFAULT_SCOPES = ("public_profile", "email")

    def __init__(self, name: str, config: dict[str, Any], gw: Any) -> None:
        v = str(config.get("graph_version", "v19.0"))
        self.graph = f"https://graph.facebook.com/{v}"
        self.dialog = f"https://www.facebook.com/{v}/dialog/oauth"
        super().__init__(name, config, gw)

    async def endpoints(self) -> dict[str, str]:
        return {"authorization_endpoint": self.dialog,
                "token_endpoint": f"{self.graph}/oauth/access_token",
                "userinfo_endpoint": f"{self.graph}/me?fields=id,name,email",
                **{k: str(v) for k, v in self.config.items() if k.endswith("_endpoint")}}

    async def user_from(self, token: dict[str, Any], *, nonce: str | None,
                        form: dict[str, str] | None = None) -> UpstreamUser:
        long_lived = await self._exchange_long_lived(token["access_token"], LoginRefused)
        return await super().user_from(long_lived, nonce=nonce)

    async def _exchange_long_lived(self, access_token: str,
                                   refused: type[LoginRefused] | type[GrantRejected],
                                   ) -> dict[str, Any]:
        """Facebook's long-lived token exchange (``grant_type=fb_exchange_token``)."""
        try:
            r = await self.http.request(
                "GET", f"{self.graph}/oauth/access_token", withhold_token=True,
                params={"grant_type": "fb_exchange_token", "client_id": self.client_id,
                        "client_secret": self.client_secret or "",
                        "fb_exchange_token": access_token})
        except httpx.HTTPError as exc:
            raise ProviderDown(f"token exchange: {type(exc).__name__}") from None
        if r.status_code >= 500:
            raise ProviderDown(f"token exchange: HTTP {r.status_code}")
        try:
            data = r.json()
        except ValueError:
            data = None
        if r.status_code != 200 or not isinstance(data, dict) or "access_token" not in data:
            raise refused("the provider refused to exchange the token for a long-lived one")
        return data

    def can_refresh(self, tokens: ProviderTokens) -> bool:
        return bool(tokens.access_token) and (
            tokens.expires_on is None or tokens.expires_on > self.now())

    async def refresh(self, tokens: ProviderTokens) -> ProviderTokens:
        if not self.can_refresh(tokens):
            raise GrantRejected("the long-lived token has expired: the user must sign in again")
        assert tokens.access_token is not None
        return self.tokens_from(await self._exchange_long_lived(tokens.access_token,
                                                                GrantRejected), tokens)

    async def revoke(self, tokens: ProviderTokens) -> bool:
        if not tokens.access_token:
            return False
        try:
            r = await self.http.request("DELETE", f"{self.graph}/me/permissions",
                                        withhold_token=True,
                                        headers={"Authorization": f"Bearer {tokens.access_token}"})
        except httpx.HTTPError:
            return False
        return bool(r.status_code == 200)


class Apple(OIDCProvider):
    kind = "apple"
    USERINFO = False
    ISSUER = "https://appleid.apple.com"
    KEYS = OIDCProvider.KEYS | frozenset({"team_id", "key_id", "private_key", "private_key_env",
                                          "private_key_file"})
    DEFAULT_SCOPES = ("openid", "name", "email")
    response_mode = "form_post"
    SECRET_LIFETIME = 3600

    def load_secret(self) -> str | None:
        given = resolve_secret(self.config, "client_secret")
        if given:
            self._secret_at: float | None = None
            return given
        for key in ("team_id", "key_id"):
            if not isinstance(self.config.get(key), str):
                raise ConfigError(f"providers.{self.name}.{key} is required (or client_secret)")
        pem = resolve_secret(self.config, "private_key")
        if not pem:
            raise ConfigError(f"providers.{self.name}.private_key (or _env/_file) is required")
        try:
            self._key = ECKey.import_key(pem)
        except (JoseError, ValueError) as exc:
            raise ConfigError(f"providers.{self.name}.private_key: {exc}") from None
        return self._client_secret()

    def _client_secret(self) -> str:
        """Apple's client secret: an ES256 JWT signed with the team's key (≤ 6 months)."""
        now = int(self.now())
        self._secret_at = now
        claims = {"iss": self.config["team_id"], "iat": now, "exp": now + 2 * self.SECRET_LIFETIME,
                  "aud": self.ISSUER, "sub": self.client_id}
        return jwt.encode({"alg": "ES256", "kid": self.config["key_id"]}, claims, self._key)

    def _renew(self) -> None:
        if self._secret_at is not None and self.now() - self._secret_at > self.SECRET_LIFETIME:
            self.client_secret = self.http.client_secret = self._client_secret()

    def authorize_extra(self, nonce: str) -> dict[str, str]:
        return {"nonce": nonce, "response_mode": "form_post"}

    async def exchange(self, code: str, *, code_verifier: str | None,
                       redirect_uri: str) -> dict[str, Any]:
        self._renew()
        return await super().exchange(code, code_verifier=code_verifier, redirect_uri=redirect_uri)

    async def refresh(self, tokens: ProviderTokens) -> ProviderTokens:
        self._renew()
        return await super().refresh(tokens)

    async def revoke(self, tokens: ProviderTokens) -> bool:
        self._renew()
        return await super().revoke(tokens)

    async def user_from(self, token: dict[str, Any], *, nonce: str | None,
                        form: dict[str, str] | None = None) -> UpstreamUser:
        user = await super().user_from(token, nonce=nonce)
        # Apple posts the name once, at the first login, as a "user" JSON form field.
        try:
            name = json.loads((form or {}).get("user", "{}")).get("name") or {}
            full = " ".join(str(name[k]) for k in ("firstName", "lastName") if name.get(k))
        except (ValueError, AttributeError):
            full = ""
        if full:
            user.name = full
            user.claims.append(("name", full))
        return user


class Twitter(OAuth2Provider):
    kind = "twitter"
    ENDPOINTS: ClassVar[dict[str, str]] = {
        "authorization_endpoint": "https://twitter.com/i/oauth2/authorize",
        "token_endpoint": "https://api.twitter.com/2/oauth2/token",
        "userinfo_endpoint": "https://api.twitter.com/2/users/me",
        "revocation_endpoint": "https://api.twitter.com/2/oauth2/revoke",
    }
    USER_ID_FIELD = "data.id"
    DEFAULT_SCOPES = ("tweet.read", "users.read", "offline.access")


PRESETS: dict[str, type[OAuth2Provider]] = {
    p.kind: p for p in (OIDCProvider, OAuth2Provider, Google, AAD, MicrosoftAccount, GitHub,
                        Facebook, Apple, Twitter)
}
