"""Client authentication at the token, revocation and introspection endpoints.

RFC 6749 §2.3.1: ``client_secret_basic`` (HTTP Basic, the form-urlencoded
client id and secret) and ``client_secret_post`` (``client_id`` +
``client_secret`` in the body); a client must not use more than one method,
and a body ``client_id`` that differs from the Basic one is an
``invalid_request``. Public clients identify themselves with ``client_id``
alone (method ``none``). Secrets are compared in constant time
(:meth:`ClientRegistry.check_secret`); failures answer 401 ``invalid_client``
with a ``WWW-Authenticate`` challenge when Basic was used (§5.2).
"""

from __future__ import annotations

import base64
import binascii
from urllib.parse import unquote

from ..clients import Client, ClientRegistry
from ..errors import InvalidClient, InvalidRequest, SlowDown


def _basic(header: str | None) -> tuple[str, str] | None:
    if header is None:
        return None
    scheme, _, value = header.partition(" ")
    if scheme.lower() != "basic":
        raise InvalidClient("only HTTP Basic client authentication is accepted in the Authorization header")
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidClient("malformed Basic credentials", basic=True) from None
    cid, sep, secret = decoded.partition(":")
    if not sep:
        raise InvalidClient("malformed Basic credentials", basic=True)
    return unquote(cid), unquote(secret)


async def authenticate_client(authorization: str | None, host: str, form: dict[str, str],
                              registry: ClientRegistry, *, allow_public: bool = True) -> Client:
    """The client a request to ``host`` (its source address) with this ``Authorization``
    header and form authenticates as; raises ``invalid_client`` (or ``slow_down``)."""
    try:
        basic, malformed = _basic(authorization), None
    except InvalidClient as exc:
        basic, malformed = None, exc
    # Failures are counted per claimed client id and source address (SECURITY.md 32).
    key = f"{form.get('client_id') or (basic[0] if basic else '?')}|{host}"
    wait = registry.failures.retry_after(key)
    if wait > 0:
        raise SlowDown(f"too many failed client authentications; retry in {int(wait) + 1} s",
                       retry_after=wait)
    try:
        if malformed is not None:
            raise malformed
        return await _authenticate(basic, form, registry, allow_public)
    except InvalidClient:
        registry.failures.failed(key)
        raise


async def _authenticate(basic: tuple[str, str] | None, form: dict[str, str], registry: ClientRegistry,
                        allow_public: bool) -> Client:
    body_id, body_secret = form.get("client_id"), form.get("client_secret")
    if basic is not None:
        if body_secret is not None:
            raise InvalidRequest("use one client authentication method, not two")
        if body_id is not None and body_id != basic[0]:
            raise InvalidRequest("client_id in the body differs from the authenticated client")
        client_id, used_basic = basic[0], True
        secret: str | None = basic[1]
    elif body_id is not None:
        client_id, secret, used_basic = body_id, body_secret, False
    else:
        raise InvalidClient("client authentication is required")
    client = await registry.get(client_id)
    if client is None:
        raise InvalidClient("client authentication failed", basic=used_basic)
    if client.public:
        if secret:
            raise InvalidClient("client authentication failed", basic=used_basic)
        if not allow_public:
            raise InvalidClient("this endpoint needs a confidential client", basic=used_basic)
        return client
    if not secret or not registry.check_secret(client, secret):
        raise InvalidClient("client authentication failed", basic=used_basic)
    return client
