"""Any OpenID Connect provider, configured by its issuer URL.

* Discovery (OIDC Discovery 1.0 §4) on first use, not at start-up, so a
  provider that is down does not stop authgate from starting; the document's
  ``issuer`` must equal the configured one (§4.3).
* ID token validation (OIDC Core §3.1.3.7): signature with a key of the
  provider's JWKS (re-fetched once when an unknown ``kid`` shows up, for key
  rotation), an asymmetric algorithm only (never ``none`` or HMAC), exact
  ``iss``, ``aud`` containing our client id (``azp`` when there are several),
  ``exp``/``iat`` with a bounded leeway, and the ``nonce`` of this login.
* Mix-up defence (RFC 9207): a provider that advertises
  ``authorization_response_iss_parameter_supported`` must name itself in the
  authorization response; a response naming anyone else is refused.
* Refresh (§12.2): an ID token in the refresh response must keep ``iss``,
  ``sub`` and ``aud``.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import httpx
from joserfc import jwt
from joserfc.errors import ClaimError, ExpiredTokenError, JoseError
from joserfc.jwk import KeySet

from ...errors import ConfigError, InvalidToken
from ...signing import parse_header
from ..provider_tokens import ProviderTokens
from .base import LoginRefused, ProviderDown, UpstreamUser
from .claims import display_name, to_claims
from .oauth2 import ENDPOINT_KEYS, OAuth2Provider

log = logging.getLogger("authgate.gateway.providers")

ALGORITHMS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
              "ES512", "EdDSA")
LEEWAY = 120
JWKS_MIN_REFETCH = 30.0


def validate_id_token(token: str, keys: KeySet, *, issuer: str | Callable[[dict[str, Any]], str],
                      client_id: str, nonce: str | None, now: float, leeway: float = LEEWAY,
                      algorithms: Sequence[str] = ALGORITHMS) -> dict[str, Any]:
    """OIDC Core §3.1.3.7; returns the claims or raises :class:`LoginRefused` saying why."""
    try:
        header = parse_header(token)
    except InvalidToken as exc:
        raise LoginRefused(f"ID token: {exc.description}") from None
    alg = header.get("alg")
    if alg not in algorithms:
        raise LoginRefused(f"ID token algorithm {str(alg)[:16]!r} is not accepted")
    try:
        claims = dict(jwt.decode(token, keys, algorithms=[str(alg)]).claims)
    except (JoseError, ValueError, TypeError, KeyError):
        raise LoginRefused("ID token signature is invalid or its key is unknown") from None
    expected = issuer(claims) if callable(issuer) else issuer
    registry = jwt.JWTClaimsRegistry(
        now=int(now), leeway=int(leeway), iss={"essential": True, "value": expected},
        aud={"essential": True, "value": client_id}, sub={"essential": True},
        exp={"essential": True}, iat={"essential": True})
    try:
        registry.validate(claims)
    except ExpiredTokenError:
        raise LoginRefused("ID token has expired") from None
    except ClaimError as exc:
        raise LoginRefused(f"ID token claim {exc.claim} is missing or wrong") from None
    aud = claims["aud"]
    several = isinstance(aud, list) and len(aud) > 1
    if (several or "azp" in claims) and claims.get("azp") != client_id:
        raise LoginRefused("ID token azp is not our client id")
    if nonce is not None:
        got = claims.get("nonce")
        if not isinstance(got, str) or not hmac.compare_digest(got.encode(), nonce.encode()):
            raise LoginRefused("ID token nonce does not match this login")
    return claims


class OIDCProvider(OAuth2Provider):
    kind = "oidc"
    NEEDS_OPENID = True
    KEYS = OAuth2Provider.KEYS | frozenset({"allowed_audiences", "discovery_url", "userinfo"})
    DEFAULT_SCOPES: ClassVar[tuple[str, ...]] = ("openid", "profile", "email")
    ISSUER: str | None = None
    USERINFO = True
    """Add the user-info endpoint's claims at login (many IdPs keep profile claims there)."""

    def __init__(self, name: str, config: dict[str, Any], gw: Any) -> None:
        super().__init__(name, config, gw)
        issuer = config.get("issuer") or self.ISSUER
        if not isinstance(issuer, str) or not issuer.startswith(("https://", "http://")):
            raise ConfigError(f"providers.{name}.issuer must be the provider's issuer URL")
        self.issuer = self.oidc_issuer = issuer
        if "openid" not in self.scopes:
            self.scopes.insert(0, "openid")
        audiences = config.get("allowed_audiences", [])
        if not isinstance(audiences, list):
            raise ConfigError(f"providers.{name}.allowed_audiences must be a list")
        self.audiences = [self.client_id, *map(str, audiences)]
        self.use_userinfo = bool(config.get("userinfo", self.USERINFO))
        self._meta: dict[str, Any] | None = None
        self._keys: KeySet | None = None
        self._keys_at = 0.0
        self._lock = asyncio.Lock()

    # -- discovery and keys -----------------------------------------------------

    async def metadata(self) -> dict[str, Any]:
        if self._meta is not None:
            return self._meta
        async with self._lock:
            if self._meta is None:
                url = self.config.get("discovery_url") or (
                    self.oidc_issuer.rstrip("/") + "/.well-known/openid-configuration")
                meta = await self._get_json(str(url), "discovery")
                if not self.issuer_matches(str(meta.get("issuer", "")), self.oidc_issuer):
                    raise ProviderDown("discovery names another issuer than configured")
                for needed in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(meta.get(needed), str):
                        raise ProviderDown(f"discovery lacks {needed}")
                self._meta = meta
        return self._meta

    def issuer_matches(self, advertised: str, configured: str) -> bool:
        return advertised == configured

    async def _get_json(self, url: str, what: str) -> dict[str, Any]:
        try:
            r = await self.http.request("GET", url, withhold_token=True)
        except httpx.HTTPError as exc:
            raise ProviderDown(f"{what}: {type(exc).__name__}") from None
        if r.status_code != 200:
            raise ProviderDown(f"{what}: HTTP {r.status_code}")
        try:
            data = r.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderDown(f"{what}: not a JSON object")
        return data

    async def endpoints(self) -> dict[str, str]:
        meta = await self.metadata()
        out = {k: str(meta[k]) for k in ENDPOINT_KEYS if isinstance(meta.get(k), str)}
        out.update({k: str(self.config[k]) for k in ENDPOINT_KEYS if self.config.get(k)})
        return out

    async def keys(self, kid: str | None) -> KeySet:
        """The provider's JWKS; fetched again (at most every 30 s) for an unknown ``kid``."""
        known = self._keys is not None and (kid is None or any(
            k.kid == kid for k in self._keys.keys))
        recent = time.monotonic() - self._keys_at < JWKS_MIN_REFETCH
        if self._keys is not None and (known or recent):
            return self._keys
        data = await self._get_json(str((await self.metadata())["jwks_uri"]), "JWKS")
        try:
            self._keys = KeySet.import_key_set(data)  # type: ignore[arg-type]
        except (JoseError, ValueError, TypeError, KeyError):
            raise ProviderDown("the provider's JWKS cannot be read") from None
        self._keys_at = time.monotonic()
        return self._keys

    def expected_issuer(self, claims: dict[str, Any]) -> str:
        """The ``iss`` an ID token must carry (multi-tenant presets derive it from the token)."""
        return str((self._meta or {}).get("issuer") or self.oidc_issuer)

    async def check_id_token(self, token: str, *, nonce: str | None) -> dict[str, Any]:
        try:
            kid = parse_header(token).get("kid")
        except InvalidToken as exc:
            raise LoginRefused(f"ID token: {exc.description}") from None
        meta = await self.metadata()
        algs = [a for a in meta.get("id_token_signing_alg_values_supported", ALGORITHMS)
                if a in ALGORITHMS] or list(ALGORITHMS)
        keys = await self.keys(kid if isinstance(kid, str) else None)
        last: LoginRefused | None = None
        for audience in self.audiences:
            try:
                return validate_id_token(token, keys, issuer=self.expected_issuer,
                                         client_id=audience, nonce=nonce, now=self.now(),
                                         algorithms=algs)
            except LoginRefused as exc:
                last = exc
                if "aud" not in exc.reason and "azp" not in exc.reason:
                    break
        assert last is not None
        raise last

    # -- login ------------------------------------------------------------------

    def authorize_extra(self, nonce: str) -> dict[str, str]:
        return {"nonce": nonce}

    async def expected_iss(self) -> str | None:
        return str((await self.metadata()).get("issuer", self.issuer))

    async def requires_iss(self) -> bool:
        return bool((await self.metadata()).get("authorization_response_iss_parameter_supported"))

    async def user_from(self, token: dict[str, Any], *, nonce: str | None,
                        form: dict[str, str] | None = None) -> UpstreamUser:
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise LoginRefused("the token response has no id_token")
        claims = await self.check_id_token(id_token, nonce=nonce)
        if self.use_userinfo and isinstance(token.get("access_token"), str):
            claims = await self.with_userinfo(claims, token["access_token"])
        tokens = self.tokens_from(token)
        return self.user_of_claims(claims, tokens)

    async def with_userinfo(self, claims: dict[str, Any], access_token: str) -> dict[str, Any]:
        """ID token claims plus the user info (same ``sub`` only, OIDC Core §5.3.2); best effort."""
        try:
            if "userinfo_endpoint" not in await self.endpoints():
                return claims
            info = await self.userinfo(access_token)
        except (LoginRefused, ProviderDown) as exc:
            log.info("user info of %s not added: %s", self.name, exc.reason)
            return claims
        return {**info, **claims} if info.get("sub") == claims["sub"] else claims

    def user_of_claims(self, claims: dict[str, Any], tokens: ProviderTokens) -> UpstreamUser:
        user_id = str(claims["sub"])
        tokens.user_id, tokens.claims = user_id, to_claims(claims)
        return UpstreamUser(user_id, display_name(claims, user_id), tokens.claims, tokens)

    async def from_id_token(self, id_token: str, access_token: str | None = None) -> UpstreamUser:
        claims = await self.check_id_token(id_token, nonce=None)
        token: dict[str, Any] = {"id_token": id_token}
        if access_token is not None:
            info = await self.userinfo(access_token)
            if info.get("sub") != claims["sub"]:
                raise LoginRefused("the access token belongs to another user than the ID token")
            token["access_token"] = access_token
        tokens = self.tokens_from(token)
        exp = claims.get("exp")
        if access_token is None and isinstance(exp, int | float):
            tokens.expires_on = float(exp)
        return self.user_of_claims(claims, tokens)

    async def refreshed(self, old: ProviderTokens, token: dict[str, Any]) -> ProviderTokens:
        new = self.tokens_from(token, old)
        id_token = token.get("id_token")
        if isinstance(id_token, str):
            try:
                claims = await self.check_id_token(id_token, nonce=None)
            except LoginRefused as exc:
                raise ProviderDown(f"refresh: {exc.reason}") from None
            if str(claims["sub"]) != old.user_id:
                raise ProviderDown("refresh: the new ID token is about another user")
            new.claims = to_claims(claims)
        return new
