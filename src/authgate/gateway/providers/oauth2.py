"""A plain OAuth 2.0 provider (RFC 6749 §4.1 code grant + RFC 7636 PKCE), built on Authlib.

For providers without OpenID Connect (GitHub, Facebook, Twitter) and for
``type = "oauth2"`` tables naming the endpoints by hand. The user is whoever
the access token belongs to at the user-info endpoint. Authlib's
:class:`AsyncOAuth2Client` speaks the protocol (authorization URL, token
requests with client authentication, RFC 7009 revocation); this class maps its
answers onto the gateway's exceptions: an OAuth error from the provider is a
refused login or grant, anything else (network, 5xx, not JSON) is
:class:`ProviderDown`.

The client object is shared by every user of the provider, so it is only
ever given explicit tokens (``withhold_token=True``), never its own state.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, ClassVar

import httpx

from ...config import resolve_secret
from ...errors import ConfigError
from ..provider_tokens import ProviderTokens
from .base import (
    GrantRejected,
    LoginRefused,
    Provider,
    ProviderDown,
    ProviderError,
    UpstreamUser,
)
from .claims import display_name, to_claims

with warnings.catch_warnings():
    # Authlib warns that it prefers httpx2 when only httpx is installed; we use httpx.
    warnings.simplefilter("ignore", DeprecationWarning)
    import authlib.deprecate  # noqa: F401  (installs its own filter; load it under ours)

    warnings.simplefilter("ignore", DeprecationWarning)
    from authlib.integrations.httpx_client import AsyncOAuth2Client
    from authlib.integrations.httpx_client import OAuthError as AuthlibError

if TYPE_CHECKING:
    from .. import Gateway

log = logging.getLogger("authgate.gateway.providers")

ENDPOINT_KEYS = ("authorization_endpoint", "token_endpoint", "userinfo_endpoint",
                 "revocation_endpoint")
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "none")


def dig(data: dict[str, Any], path: str) -> Any:
    """``data["a"]["b"]`` for ``"a.b"`` (Twitter wraps its user in ``data``)."""
    value: Any = data
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


class OAuth2Provider(Provider):
    kind = "oauth2"
    KEYS = Provider.KEYS | frozenset({
        "client_id", "client_secret", "client_secret_env", "client_secret_file", "issuer",
        "token_endpoint_auth_method", "pkce", "user_id_field", "timeout", *ENDPOINT_KEYS})
    ENDPOINTS: ClassVar[dict[str, str]] = {}
    """Fixed endpoints of a preset; configuration may override them."""
    USER_ID_FIELD: ClassVar[str] = "sub"

    def __init__(self, name: str, config: dict[str, Any], gw: Gateway) -> None:
        super().__init__(name, config, gw)
        client_id = config.get("client_id")
        if not isinstance(client_id, str) or not client_id:
            raise ConfigError(f"providers.{name}.client_id is required")
        self.client_id = client_id
        self.client_secret = self.load_secret()
        self.pkce = bool(config.get("pkce", True))
        self.user_id_field = str(config.get("user_id_field", self.USER_ID_FIELD))
        self.issuer: str | None = config.get("issuer")
        method = config.get("token_endpoint_auth_method") or (
            "client_secret_basic" if self.client_secret else "none")
        if method not in AUTH_METHODS:
            raise ConfigError(f"providers.{name}.token_endpoint_auth_method: one of "
                              f"{', '.join(AUTH_METHODS)}")
        self.http = AsyncOAuth2Client(
            client_id=client_id, client_secret=self.client_secret,
            token_endpoint_auth_method=method, revocation_endpoint_auth_method=method,
            redirect_uri=self.callback_url, code_challenge_method="S256" if self.pkce else None,
            timeout=float(config.get("timeout", 10)), follow_redirects=False,
            headers={"User-Agent": "authgate", "Accept": "application/json"})

    def load_secret(self) -> str | None:
        return resolve_secret(self.config, "client_secret")

    async def endpoints(self) -> dict[str, str]:
        out = {k: str(v) for k, v in self.ENDPOINTS.items()}
        out.update({k: str(self.config[k]) for k in ENDPOINT_KEYS if self.config.get(k)})
        for needed in ("authorization_endpoint", "token_endpoint"):
            if needed not in out:
                raise ConfigError(f"providers.{self.name}.{needed} is required")
        return out

    async def close(self) -> None:
        await self.http.aclose()

    # -- login ------------------------------------------------------------------

    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str,
                                params: dict[str, str]) -> str:
        ep = await self.endpoints()
        extra = {"scope": " ".join(self.scopes), **params}
        url, _state = self.http.create_authorization_url(
            ep["authorization_endpoint"], state=state,
            code_verifier=code_verifier if self.pkce else None, **self.authorize_extra(nonce),
            **extra)
        return str(url)

    def authorize_extra(self, nonce: str) -> dict[str, str]:
        return {}

    async def expected_iss(self) -> str | None:
        return self.issuer

    async def requires_iss(self) -> bool:
        return False

    async def check_response(self, params: dict[str, str]) -> str:
        """The authorization response (RFC 6749 §4.1.2, RFC 9207 §2.4); returns the code."""
        if "error" in params:
            raise LoginRefused(f"the provider answered error={params['error'][:64]!r}")
        iss = params.get("iss")
        expected = await self.expected_iss()
        if iss is not None and expected is not None and iss != expected:
            raise LoginRefused("the authorization response names another issuer (mix-up, "
                               "RFC 9207)")
        if iss is None and await self.requires_iss():
            raise LoginRefused("the authorization response lacks iss (RFC 9207)")
        code = params.get("code")
        if not code:
            raise LoginRefused("the authorization response has no code")
        return code

    async def complete(self, params: dict[str, str], *, nonce: str,
                       code_verifier: str) -> UpstreamUser:
        code = await self.check_response(params)
        token = await self.exchange(code, code_verifier=code_verifier,
                                    redirect_uri=self.callback_url)
        return await self.user_from(token, nonce=nonce, form=params)

    async def exchange(self, code: str, *, code_verifier: str | None,
                       redirect_uri: str) -> dict[str, Any]:
        """RFC 6749 §4.1.3 (+ RFC 7636 §4.5 ``code_verifier``)."""
        extra = {"code_verifier": code_verifier} if code_verifier and self.pkce else {}
        url = (await self.endpoints())["token_endpoint"]
        token = await self.call("code exchange", self.http.fetch_token(
            url, grant_type="authorization_code", code=code, redirect_uri=redirect_uri, **extra),
            refused=LoginRefused)
        if not isinstance(token.get("access_token"), str):
            raise LoginRefused("the token response has no access_token")
        return token

    async def user_from(self, token: dict[str, Any], *, nonce: str | None,
                        form: dict[str, str] | None = None) -> UpstreamUser:
        """Who the token response belongs to: the user-info endpoint."""
        info = await self.userinfo(token["access_token"])
        return self.user_of(info, self.tokens_from(token))

    def user_of(self, info: dict[str, Any], tokens: ProviderTokens) -> UpstreamUser:
        raw = dig(info, self.user_id_field)
        if not isinstance(raw, str | int) or isinstance(raw, bool) or raw == "":
            raise LoginRefused(f"the provider's user info lacks {self.user_id_field}")
        user_id = str(raw)
        flat = info.get("data") if isinstance(info.get("data"), dict) else info
        assert isinstance(flat, dict)
        claims = to_claims(flat, user_id=user_id)
        tokens.user_id, tokens.claims = user_id, claims
        return UpstreamUser(user_id, display_name(flat, user_id), claims, tokens)

    async def userinfo(self, access_token: str) -> dict[str, Any]:
        url = (await self.endpoints()).get("userinfo_endpoint")
        if not url:
            raise LoginRefused(f"{self.name} has no user-info endpoint to check a token at")
        try:
            r = await self.http.request("GET", url, headers={"Authorization": f"Bearer {access_token}"},
                                    withhold_token=True)
        except httpx.HTTPError as exc:
            raise ProviderDown(f"user info: {type(exc).__name__}") from None
        if r.status_code in (400, 401, 403):
            raise LoginRefused(f"the provider refused the access token (HTTP {r.status_code})")
        if r.status_code != 200:
            raise ProviderDown(f"user info: HTTP {r.status_code}")
        try:
            data = r.json()
        except ValueError:
            data = None
        if not isinstance(data, dict):
            raise ProviderDown("user info is not a JSON object")
        return data

    def tokens_from(self, token: dict[str, Any], previous: ProviderTokens | None = None,
                    ) -> ProviderTokens:
        """A token response (RFC 6749 §5.1) as stored tokens; ``expires_in`` made absolute."""
        expires_in = token.get("expires_in")
        expires_on = None
        if isinstance(expires_in, int | float | str) and str(expires_in).isdigit():
            expires_on = self.now() + float(expires_in)
        scope = token.get("scope")
        scopes = scope.split() if isinstance(scope, str) else (
            previous.scopes if previous else list(self.scopes))
        prev = previous or ProviderTokens(self.name, "")
        return ProviderTokens(
            provider=self.name, user_id=prev.user_id, access_token=token.get("access_token"),
            refresh_token=token.get("refresh_token") or prev.refresh_token,
            id_token=token.get("id_token") or prev.id_token, expires_on=expires_on,
            scopes=scopes, claims=list(prev.claims))

    async def call(self, what: str, call: Awaitable[Any],
                   refused: type[ProviderError]) -> dict[str, Any]:
        """Run an Authlib token request; OAuth errors become ``refused``, the rest ProviderDown."""
        try:
            token = await call
        except AuthlibError as exc:
            error = str(exc.error or "error")[:64]
            if error == "invalid_client":
                log.error("%s at %s: the provider refused our client credentials", what, self.name)
                raise ProviderDown(f"{what}: the provider refused authgate's client "
                                   "credentials (invalid_client)") from None
            raise refused(f"{what}: the provider answered {error}") from None
        except httpx.HTTPStatusError as exc:
            raise ProviderDown(f"{what}: HTTP {exc.response.status_code}") from None
        except httpx.HTTPError as exc:
            raise ProviderDown(f"{what}: {type(exc).__name__}") from None
        except ValueError:
            raise ProviderDown(f"{what}: the answer is not a JSON object") from None
        return dict(token)

    # -- client-directed login ------------------------------------------------------

    async def from_access_token(self, access_token: str) -> UpstreamUser:
        info = await self.userinfo(access_token)
        return self.user_of(info, self.tokens_from({"access_token": access_token}))

    async def from_code(self, code: str, *, code_verifier: str | None,
                        redirect_uri: str | None) -> UpstreamUser:
        token = await self.exchange(code, code_verifier=code_verifier,
                                    redirect_uri=redirect_uri or self.callback_url)
        return await self.user_from(token, nonce=None)

    # -- refresh and revocation -------------------------------------------------------

    async def refresh(self, tokens: ProviderTokens) -> ProviderTokens:
        """RFC 6749 §6; a rotated refresh token replaces the old one, else the old one stays."""
        if not tokens.refresh_token:
            raise GrantRejected("no refresh token is stored")
        url = (await self.endpoints())["token_endpoint"]
        token = await self.call("refresh", self.http.refresh_token(
            url, refresh_token=tokens.refresh_token), refused=GrantRejected)
        if not isinstance(token.get("access_token"), str):
            raise ProviderDown("refresh: the token response has no access_token")
        return await self.refreshed(tokens, token)

    async def refreshed(self, old: ProviderTokens, token: dict[str, Any]) -> ProviderTokens:
        return self.tokens_from(token, old)

    async def revoke(self, tokens: ProviderTokens) -> bool:
        """RFC 7009 §2.1: the refresh token (which ends the grant), then the access token."""
        try:
            url = (await self.endpoints()).get("revocation_endpoint")
        except ProviderError:
            return False
        if not url:
            return False
        done = False
        for value, hint in ((tokens.refresh_token, "refresh_token"),
                            (tokens.access_token, "access_token")):
            if not value:
                continue
            try:
                r = await self.http.revoke_token(url, token=value, token_type_hint=hint)
            except httpx.HTTPError as exc:
                log.warning("revoking a %s at %s failed: %s", hint, self.name, type(exc).__name__)
                continue
            if r.status_code == 200:
                done = True
            else:
                log.warning("revoking a %s at %s: HTTP %s", hint, self.name, r.status_code)
        return done
