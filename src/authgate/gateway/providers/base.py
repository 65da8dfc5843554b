"""What every upstream identity provider offers the gateway.

A :class:`Provider` is one configured entry of ``[providers.<name>]``. The
gateway drives it through four moments of a user's life:

* **login** -- :meth:`Provider.authorization_url` builds the authorization
  request (RFC 6749 §4.1.1, with PKCE, RFC 7636 §4.3, and an OIDC ``nonce``),
  and :meth:`Provider.complete` turns the authorization response into a
  signed-in :class:`UpstreamUser` (code exchange, ID token validation).
* **client-directed login** -- a mobile app already holds a provider token and
  posts it (:meth:`from_access_token`, :meth:`from_id_token`, :meth:`from_code`).
* **refresh** -- :meth:`refresh` (RFC 6749 §6); a provider that refuses the
  grant raises :class:`GrantRejected`, one that cannot be reached
  :class:`ProviderDown`.
* **logout** -- :meth:`revoke` (RFC 7009) where the provider supports it.

Exceptions (never carrying a token, only why)::

    ProviderError
    ├── LoginRefused     the login (or posted token) must not be accepted
    ├── GrantRejected    the provider refused the grant for good (invalid_grant)
    └── ProviderDown     network error, 5xx, or a response that is not OAuth
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ...errors import ConfigError
from ..provider_tokens import ProviderTokens

if TYPE_CHECKING:
    from .. import Gateway

NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,31}$")

PROTECTED_PARAMS = frozenset({
    "state", "nonce", "redirect_uri", "code_challenge", "code_challenge_method", "client_id",
    "client_secret", "response_type", "response_mode", "request", "request_uri",
})
"""Authorization request parameters only the gateway sets (RFC 9700 §2.1, §4.5)."""

LOGIN_PARAMS = frozenset({
    "access_type", "prompt", "scope", "domain_hint", "login_hint", "hd", "max_age",
    "ui_locales", "display", "acr_values", "include_granted_scopes", "claims_locales",
})
"""Query parameters of ``/.auth/login/<provider>`` passed through to the provider."""


class ProviderError(Exception):
    """Root of what providers raise on purpose; ``reason`` is safe to log and show."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class LoginRefused(ProviderError):
    """The authorization response, token or code must not sign anyone in."""


class GrantRejected(ProviderError):
    """The provider refused the grant (revoked, expired): only a new login helps."""


class ProviderDown(ProviderError):
    """The provider could not be reached or answered something that is not OAuth."""


@dataclass
class UpstreamUser:
    """A user the provider vouched for, with the tokens it gave us."""

    user_id: str
    name: str
    claims: list[tuple[str, str]]
    tokens: ProviderTokens


def scopes_of(value: Any, default: tuple[str, ...]) -> list[str]:
    if value is None:
        return list(default)
    if isinstance(value, str):
        return [s for s in value.split() if s]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return list(value)
    raise ConfigError("scopes must be a list of strings or a space-separated string")


class Provider(ABC):
    """One upstream identity provider, configured by a ``[providers.<name>]`` table."""

    kind: ClassVar[str] = ""
    KEYS: ClassVar[frozenset[str]] = frozenset({"type", "enabled", "login_params",
                                                "allowed_login_params", "scopes"})
    DEFAULT_SCOPES: ClassVar[tuple[str, ...]] = ()
    response_mode: ClassVar[str] = "query"
    NEEDS_OPENID: ClassVar[bool] = False
    """OpenID Connect: the ``openid`` scope stays in any ``scope=`` the caller passes."""

    def __init__(self, name: str, config: dict[str, Any], gw: Gateway) -> None:
        if not NAME.match(name):
            raise ConfigError(f"provider name {name!r}: use 1-32 of a-z 0-9 _ - (lower case)")
        unknown = sorted(set(config) - self.KEYS)
        if unknown:
            raise ConfigError(f"providers.{name}: unknown setting {unknown[0]!r}")
        self.name = name
        self.config = config
        self.gw = gw
        self.scopes = scopes_of(config.get("scopes"), self.DEFAULT_SCOPES)
        params = config.get("login_params", {})
        if not isinstance(params, dict) or not all(isinstance(v, str) for v in params.values()):
            raise ConfigError(f"providers.{name}.login_params must be a table of strings")
        if set(params) & PROTECTED_PARAMS:
            raise ConfigError(f"providers.{name}.login_params may not set "
                              f"{sorted(set(params) & PROTECTED_PARAMS)[0]}")
        self.login_params: dict[str, str] = dict(params)
        extra = config.get("allowed_login_params", [])
        if not isinstance(extra, list) or set(extra) & PROTECTED_PARAMS:
            raise ConfigError(f"providers.{name}.allowed_login_params: a list of names, "
                              "none of state, nonce, redirect_uri, code_challenge, client_id…")
        self.allowed_login_params = LOGIN_PARAMS | frozenset(extra)

    @property
    def callback_url(self) -> str:
        return f"{self.gw.settings.public_url.rstrip('/')}/.auth/login/{self.name}/callback"

    def now(self) -> float:
        return self.gw.gate.clock.now()

    def request_params(self, query: dict[str, str]) -> dict[str, str]:
        """``login_params`` overridden by the allow-listed query parameters of the login URL."""
        out = dict(self.login_params)
        for key, value in query.items():
            if key in self.allowed_login_params and key not in PROTECTED_PARAMS:
                out[key] = value
        if "scope" in out and self.NEEDS_OPENID and "openid" not in out["scope"].split():
            out["scope"] = "openid " + out["scope"]
        return out

    # -- login ----------------------------------------------------------------

    @abstractmethod
    async def authorization_url(self, *, state: str, nonce: str, code_verifier: str,
                                params: dict[str, str]) -> str:
        """Where to send the browser (RFC 6749 §4.1.1)."""

    @abstractmethod
    async def complete(self, params: dict[str, str], *, nonce: str,
                       code_verifier: str) -> UpstreamUser:
        """Check the authorization response (§4.1.2) and exchange its code (§4.1.3)."""

    async def from_access_token(self, access_token: str) -> UpstreamUser:
        raise LoginRefused(f"{self.name} does not accept access tokens from clients")

    async def from_id_token(self, id_token: str, access_token: str | None = None) -> UpstreamUser:
        raise LoginRefused(f"{self.name} does not accept ID tokens from clients")

    async def from_code(self, code: str, *, code_verifier: str | None,
                        redirect_uri: str | None) -> UpstreamUser:
        raise LoginRefused(f"{self.name} does not accept authorization codes from clients")

    # -- lifecycle of the tokens ------------------------------------------------

    def can_refresh(self, tokens: ProviderTokens) -> bool:
        return bool(tokens.refresh_token)

    async def refresh(self, tokens: ProviderTokens) -> ProviderTokens:
        raise GrantRejected(f"{self.name} cannot refresh tokens")

    async def revoke(self, tokens: ProviderTokens) -> bool:
        """Revoke at the provider what can be revoked; True if something was."""
        return False

    async def close(self) -> None:  # noqa: B027  (most providers hold no connections)
        """Release connections."""
