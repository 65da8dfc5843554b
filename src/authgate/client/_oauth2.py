"""``OAuth2Auth``: bearer tokens (RFC 6750 §2.1) kept fresh with the refresh token grant.

The refresh is RFC 6749 §6 at the token endpoint, with client authentication
per §2.3.1 (``client_secret_basic``, form-encoding id and secret before
base64) for confidential clients and ``client_id`` in the body for public ones.
Error responses are read per §5.2: ``invalid_grant`` means the refresh token is
dead (expired, revoked, or reused after rotation) and raises
:class:`LoginRequired`; 5xx and 429 are passing troubles (``retryable``).
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote_plus

import httpx

from ._drivers import Clock
from ._errors import LoginRequired, TokenEndpointError
from ._flow import RefreshingAuth
from ._storage import TokenStorage
from ._tokens import TokenSet


def read_token_error(response: httpx.Response) -> TokenEndpointError:
    """The exception for an unsuccessful token response."""
    body = _json(response)
    error = body.get("error") if isinstance(body.get("error"), str) else None
    description = body.get("error_description")
    detail = f"{error}: {description}" if error and isinstance(description, str) else (error or "")
    message = f"token endpoint answered {response.status_code} {detail}".rstrip()
    if error == "invalid_grant":
        return LoginRequired(f"the refresh token was refused ({detail}): sign in again",
                             status_code=response.status_code)
    retryable = response.status_code >= 500 or response.status_code == 429 or error in (
        "temporarily_unavailable", "slow_down")
    return TokenEndpointError(message, error=error, status_code=response.status_code,
                              retryable=retryable)


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except (ValueError, json.JSONDecodeError):
        return {}
    return body if isinstance(body, dict) else {}


class OAuth2Auth(RefreshingAuth):
    """An ``httpx.Auth`` for ``httpx.Client`` and ``httpx.AsyncClient`` alike::

        auth = OAuth2Auth("https://id.example/.auth/oauth2/token", "cli", secret,
                          storage=EncryptedFileStorage("~/.cache/app/tokens", passphrase=...))
        with httpx.Client(auth=auth) as http:
            http.get("https://api.example/things")

    Tokens come from ``tokens=`` (saved to ``storage`` at once) or, when omitted,
    from ``storage``. They are refreshed ``leeway`` seconds before they expire,
    and once after a 401 (then the request is retried once). ``clock`` is a
    callable returning seconds since the epoch (``time.time`` by default).
    """

    def __init__(self, token_endpoint: str, client_id: str, client_secret: str | None = None, *,
                 tokens: TokenSet | None = None, storage: TokenStorage | None = None,
                 scope: str | None = None, leeway: float = 60.0, clock: Clock | None = None,
                 timeout: float = 30.0) -> None:
        self.token_endpoint = token_endpoint
        self.client_id = client_id
        self._client_secret = client_secret
        self.scope = scope
        super().__init__(tokens=tokens, storage=storage, leeway=leeway, clock=clock,
                         timeout=timeout)

    def __repr__(self) -> str:
        return f"OAuth2Auth({self.token_endpoint!r}, {self.client_id!r}, tokens={self._tokens!r})"

    def authorize(self, request: httpx.Request, tokens: TokenSet) -> None:
        request.headers["Authorization"] = f"Bearer {tokens.access_token}"

    def refresh_request(self, tokens: TokenSet) -> httpx.Request:
        assert tokens.refresh_token is not None
        data = {"grant_type": "refresh_token", "refresh_token": tokens.refresh_token}
        if self.scope:
            data["scope"] = self.scope
        headers = {"Accept": "application/json"}
        if self._client_secret is None:
            data["client_id"] = self.client_id
        else:
            pair = f"{quote_plus(self.client_id)}:{quote_plus(self._client_secret)}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        return httpx.Request("POST", self.token_endpoint, data=data, headers=headers)

    def parse_refresh(self, response: httpx.Response, tokens: TokenSet, now: float) -> TokenSet:
        if response.status_code != 200:
            raise read_token_error(response)
        body = _json(response)
        try:
            fresh = TokenSet.from_response(body, now=now, previous=tokens)
        except ValueError as exc:
            raise TokenEndpointError(f"malformed token response: {exc}", status_code=200,
                                     retryable=True) from None
        if fresh.token_type.lower() != "bearer":
            raise TokenEndpointError(f"unsupported token_type {fresh.token_type!r}",
                                     status_code=200)
        return fresh
