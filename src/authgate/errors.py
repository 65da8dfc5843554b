"""The exception tree.

Every error a client can provoke is an :class:`OAuthError` subclass carrying
the RFC error code, the HTTP status and a link to the section that defines
it, so an endpoint answers by raising and one handler renders the response::

    AuthGateError
    ├── ConfigError            bad configuration (startup / CLI)
    ├── StoreError             backend failures
    │   └── CorruptRecord      a sealed record failed to open (fail closed)
    └── OAuthError             answered to the client as {"error", "error_description"}
        ├── InvalidRequest         400  RFC 6749 §5.2
        ├── InvalidClient          401  RFC 6749 §5.2
        ├── InvalidGrant           400  RFC 6749 §5.2
        ├── UnauthorizedClient     400  RFC 6749 §5.2
        ├── UnsupportedGrantType   400  RFC 6749 §5.2
        ├── InvalidScope           400  RFC 6749 §5.2
        ├── UnsupportedResponseType 400 RFC 6749 §4.1.2.1
        ├── AccessDenied           403  RFC 6749 §4.1.2.1
        ├── LoginRequired          400  OIDC Core §3.1.2.6
        ├── InvalidToken           401  RFC 6750 §3.1
        ├── InsufficientScope      403  RFC 6750 §3.1
        ├── UnsupportedTokenType   400  RFC 7009 §2.2.1
        ├── MethodNotAllowed       405
        ├── RequestTooLarge        413
        ├── HeadersTooLarge        431
        ├── TemporarilyUnavailable 503  RFC 6749 §4.1.2.1
        └── SlowDown               429  (rate limited)
"""

from __future__ import annotations

from typing import ClassVar


class AuthGateError(Exception):
    """Root of everything authgate raises on purpose."""


class ConfigError(AuthGateError):
    """The configuration cannot be used; the message says which setting and why."""


class StoreError(AuthGateError):
    """A token-store backend failed."""


class CorruptRecord(StoreError):
    """A sealed record did not authenticate: truncated, tampered or swapped."""


def _clean(text: str) -> str:
    """Keep descriptions printable: never echo CR/LF or control characters back."""
    return "".join(ch if ch.isprintable() else " " for ch in text)[:300]


class OAuthError(AuthGateError):
    error: ClassVar[str] = "server_error"
    status_code: ClassVar[int] = 400
    spec: ClassVar[str] = "https://www.rfc-editor.org/rfc/rfc6749#section-5.2"

    def __init__(self, description: str = "") -> None:
        super().__init__(description)
        self.description = _clean(description)

    def body(self) -> dict[str, str]:
        out = {"error": self.error}
        if self.description:
            out["error_description"] = self.description
        return out

    def headers(self) -> dict[str, str]:
        return {}


class InvalidRequest(OAuthError):
    error = "invalid_request"


class InvalidClient(OAuthError):
    error = "invalid_client"
    status_code = 401

    def __init__(self, description: str = "", *, basic: bool = False) -> None:
        super().__init__(description)
        self.basic = basic

    def headers(self) -> dict[str, str]:
        # RFC 6749 §5.2: with HTTP Basic the 401 carries a challenge.
        return {"WWW-Authenticate": 'Basic realm="authgate"'} if self.basic else {}


class InvalidGrant(OAuthError):
    error = "invalid_grant"


class UnauthorizedClient(OAuthError):
    error = "unauthorized_client"


class UnsupportedGrantType(OAuthError):
    error = "unsupported_grant_type"


class InvalidScope(OAuthError):
    error = "invalid_scope"


class UnsupportedResponseType(OAuthError):
    error = "unsupported_response_type"
    spec = "https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1"


class AccessDenied(OAuthError):
    error = "access_denied"
    status_code = 403
    spec = "https://www.rfc-editor.org/rfc/rfc6749#section-4.1.2.1"


class LoginRequired(OAuthError):
    error = "login_required"
    spec = "https://openid.net/specs/openid-connect-core-1_0.html#AuthError"


class InvalidToken(OAuthError):
    error = "invalid_token"
    status_code = 401
    spec = "https://www.rfc-editor.org/rfc/rfc6750#section-3.1"

    def __init__(self, description: str = "", *, unknown_key: bool = False) -> None:
        super().__init__(description)
        self.unknown_key = unknown_key

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer error="invalid_token"'}


class InsufficientScope(OAuthError):
    error = "insufficient_scope"
    status_code = 403
    spec = "https://www.rfc-editor.org/rfc/rfc6750#section-3.1"


class UnsupportedTokenType(OAuthError):
    error = "unsupported_token_type"
    spec = "https://www.rfc-editor.org/rfc/rfc7009#section-2.2.1"


class MethodNotAllowed(OAuthError):
    error = "invalid_request"
    status_code = 405


class RequestTooLarge(OAuthError):
    error = "invalid_request"
    status_code = 413


class HeadersTooLarge(OAuthError):
    error = "invalid_request"
    status_code = 431


class TemporarilyUnavailable(OAuthError):
    error = "temporarily_unavailable"
    status_code = 503


class SlowDown(OAuthError):
    error = "slow_down"
    status_code = 429

    def __init__(self, description: str = "", *, retry_after: float = 1.0) -> None:
        super().__init__(description)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(int(self.retry_after) + 1)}
