"""authgate's client library: tokens that renew themselves (DESIGN.md §2.5).

For programs that *call* APIs with OAuth 2.0 tokens:

* :class:`OAuth2Auth` -- an ``httpx.Auth`` for ``httpx.Client`` and
  ``httpx.AsyncClient``: bearer token attached, refreshed ahead of expiry and
  once after a 401 (then the request is retried once), one refresh at a time
  across threads and tasks, rotated tokens saved before they are used;
* :class:`TokenSet` and the :class:`TokenStorage` implementations
  :class:`MemoryStorage`, :class:`EncryptedFileStorage`, :class:`KeyringStorage`;
* :class:`EasyAuthClient` -- the same for an Easy Auth gateway's session token
  (``X-ZUMO-AUTH``, ``/.auth/refresh``, ``/.auth/me``);
* :class:`Refresher` -- keeps offline grants fresh in the background.

For programs that *serve* APIs: :func:`verify_access_token` (RFC 9068) with a
:class:`JWKSCache`, and :class:`RequireAccessToken`, a Starlette/FastAPI
dependency.
"""

from ._easyauth import EasyAuthClient, ProviderIdentity
from ._errors import (
    ClientError,
    InvalidAccessToken,
    KeyringUnavailable,
    LoginRequired,
    StorageError,
    TokenEndpointError,
)
from ._file_storage import EncryptedFileStorage
from ._jwks import JWKSCache
from ._oauth2 import OAuth2Auth
from ._refresher import Refresher
from ._resource import AccessToken, RequireAccessToken, verify_access_token
from ._storage import KeyringStorage, MemoryStorage, TokenStorage
from ._tokens import TokenSet

__all__ = [
    "AccessToken",
    "ClientError",
    "EasyAuthClient",
    "EncryptedFileStorage",
    "InvalidAccessToken",
    "JWKSCache",
    "KeyringStorage",
    "KeyringUnavailable",
    "LoginRequired",
    "MemoryStorage",
    "OAuth2Auth",
    "ProviderIdentity",
    "Refresher",
    "RequireAccessToken",
    "StorageError",
    "TokenEndpointError",
    "TokenSet",
    "TokenStorage",
    "verify_access_token",
]
