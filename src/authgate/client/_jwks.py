"""``JWKSCache``: an issuer's public keys (RFC 7517 §5), fetched once and kept.

Keys are refetched when they are older than ``max_age``, and when a token
names a ``kid`` we do not know -- the issuer rotated its keys -- but at most
once per ``refetch_interval``: otherwise a stream of tokens with made-up
``kid`` values would make us hammer the issuer. Concurrent lookups of an
unknown ``kid`` wait for one fetch.

Only asymmetric signature keys are kept (``kty`` EC, OKP or RSA; ``use`` absent
or ``sig``): a symmetric key in a JWKS would be a public HMAC secret. Without
``jwks_uri`` the cache reads it from the issuer's discovery document
(OpenID Connect Discovery 1.0 §4), whose ``issuer`` must match exactly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import httpx
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, OKPKey, RSAKey

from ._drivers import Clock, LoopLocks

log = logging.getLogger("authgate.client")

PublicKey = ECKey | OKPKey | RSAKey
_IMPORTERS: dict[str, type[ECKey] | type[OKPKey] | type[RSAKey]] = {
    "EC": ECKey, "OKP": OKPKey, "RSA": RSAKey}


def import_jwks(document: Any) -> dict[str, tuple[PublicKey, dict[str, Any]]]:
    """kid -> (key, its JWK) for every usable public signature key of a JWK Set."""
    out: dict[str, tuple[PublicKey, dict[str, Any]]] = {}
    keys = document.get("keys") if isinstance(document, dict) else None
    for jwk in keys if isinstance(keys, list) else []:
        if not isinstance(jwk, dict) or not isinstance(jwk.get("kid"), str):
            continue
        importer = _IMPORTERS.get(str(jwk.get("kty")))
        if importer is None or jwk.get("use", "sig") != "sig":
            continue
        public = {k: v for k, v in jwk.items() if k not in ("d", "p", "q", "dp", "dq", "qi")}
        try:
            out[jwk["kid"]] = (importer.import_key(public), public)
        except (JoseError, ValueError, TypeError):
            log.warning("ignoring an unusable key %r in the JWKS", jwk["kid"])
    return out


class JWKSCache:
    """Public keys of one issuer, for :func:`~authgate.client.verify_access_token`.

    Pass ``http`` (an ``httpx.AsyncClient``, e.g. over an ASGI transport in
    tests) to choose how keys are fetched; otherwise each fetch opens and
    closes its own short-lived client. ``fetches`` counts fetches (a metric).
    """

    def __init__(self, jwks_uri: str | None = None, *, issuer: str | None = None,
                 http: httpx.AsyncClient | None = None, refetch_interval: float = 60.0,
                 max_age: float = 3600.0, clock: Clock | None = None,
                 timeout: float = 10.0) -> None:
        if jwks_uri is None and issuer is None:
            raise ValueError("give jwks_uri= or issuer=")
        self.jwks_uri = jwks_uri
        self.issuer = issuer
        self.http = http
        self.refetch_interval = refetch_interval
        self.max_age = max_age
        self.clock: Clock = clock or time.time
        self.timeout = timeout
        self.fetches = 0
        self._keys: dict[str, tuple[PublicKey, dict[str, Any]]] | None = None
        self._fetched_at = float("-inf")
        self._locks = LoopLocks()

    def _age(self) -> float:
        return self.clock() - self._fetched_at

    async def get(self, kid: str) -> tuple[PublicKey, dict[str, Any]] | None:
        """The key named ``kid`` and its JWK, refetching (rate-limited) when it is unknown."""
        if self._keys is None or self._age() >= self.max_age:
            await self._fetch_unless(lambda: self._keys is not None and self._age() < self.max_age)
        found = self._keys.get(kid) if self._keys is not None else None
        if found is None and self._age() >= self.refetch_interval:
            await self._fetch_unless(lambda: self._keys is not None and (
                kid in self._keys or self._age() < self.refetch_interval))
            found = self._keys.get(kid) if self._keys is not None else None
        return found

    async def _fetch_unless(self, done: Callable[[], bool]) -> None:
        async with self._locks.get():
            if done():  # another task fetched while we waited for the lock
                return
            self._fetched_at = self.clock()  # failures are rate-limited too
            self.fetches += 1
            try:
                self._keys = import_jwks(await self._get_json(await self._jwks_uri()))
            except (httpx.HTTPError, ValueError):
                if self._keys is None:
                    raise
                log.warning("refetching the JWKS failed; keeping the %d keys we have",
                            len(self._keys))

    async def _jwks_uri(self) -> str:
        if self.jwks_uri is None:
            assert self.issuer is not None
            meta = await self._get_json(f"{self.issuer}/.well-known/openid-configuration")
            if not isinstance(meta, dict) or meta.get("issuer") != self.issuer:
                raise ValueError("the discovery document names another issuer")
            uri = meta.get("jwks_uri")
            if not isinstance(uri, str):
                raise ValueError("the discovery document has no jwks_uri")
            self.jwks_uri = uri
        return self.jwks_uri

    async def _get_json(self, url: str) -> Any:
        if self.http is not None:
            response = await self.http.get(url, timeout=self.timeout)
        else:
            async with httpx.AsyncClient(timeout=self.timeout) as http:
                response = await http.get(url)
        response.raise_for_status()
        return response.json()
