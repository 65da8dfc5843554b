"""What the client library raises, under one root::

    AuthGateError                      (authgate.errors)
    └── ClientError
        ├── TokenEndpointError         the token / refresh endpoint refused or failed
        │   └── LoginRequired          the grant or session is dead: the user must sign in again
        ├── StorageError               tokens could not be loaded or saved
        │   └── KeyringUnavailable     the optional ``keyring`` package or an OS keyring is missing
        └── InvalidAccessToken         a resource server refused a bearer token (RFC 6750 §3.1)

``TokenEndpointError.retryable`` tells a background refresher whether backing
off and trying again can help (5xx, 429, network trouble) or not (a 4xx other
than the grant being dead usually means a configuration error).
"""

from __future__ import annotations

from ..errors import AuthGateError


class ClientError(AuthGateError):
    """Root of everything :mod:`authgate.client` raises on purpose."""


class TokenEndpointError(ClientError):
    """The provider answered a refresh with an error, or could not be reached."""

    def __init__(self, message: str, *, error: str | None = None, status_code: int | None = None,
                 retryable: bool = False) -> None:
        super().__init__(message)
        self.error = error
        self.status_code = status_code
        self.retryable = retryable


class LoginRequired(TokenEndpointError):
    """The refresh token or session is no longer accepted (``invalid_grant``, 401/403).

    Retrying cannot help; only a new sign-in can.
    """

    def __init__(self, message: str, *, error: str | None = "invalid_grant",
                 status_code: int | None = None) -> None:
        super().__init__(message, error=error, status_code=status_code, retryable=False)


class StorageError(ClientError):
    """Tokens could not be read or written; nothing was used that was not saved."""


class KeyringUnavailable(StorageError):
    """``KeyringStorage`` cannot work here; the message says how to fix that or what to use."""


class InvalidAccessToken(ClientError):
    """A bearer token failed verification (RFC 9068 §4); answered as 401 ``invalid_token``."""

    error = "invalid_token"
