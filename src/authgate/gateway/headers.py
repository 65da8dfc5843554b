"""The identity headers Easy Auth apps read: ``X-MS-CLIENT-PRINCIPAL*`` and ``X-MS-TOKEN-*``.

Whatever a client sends under these names is a forgery: :func:`strip_identity`
removes every such header -- any case, ``_`` for ``-`` (what CGI, PHP and
nginx with ``underscores_in_headers`` turn them into), any number of copies
(SECURITY.md 48) -- before authgate sets its own. Values never carry CR, LF or
other control characters (RFC 7230 §3.2.4 forbids them; a header that would
need one is left out, never folded).
"""

from __future__ import annotations

import base64
import functools
import json
import logging
import re
from collections.abc import Iterable

from .identity import Identity
from .provider_tokens import ProviderTokens, format_expires_on

log = logging.getLogger("authgate.gateway")

RawHeaders = list[tuple[bytes, bytes]]

NAME_TYP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/name"
ROLE_TYP = "http://schemas.microsoft.com/ws/2008/06/identity/claims/role"
NAMEID_TYP = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/nameidentifier"

_PREFIXES = (b"x-ms-client-principal", b"x-ms-token-")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")

TOKEN_KINDS = {
    "access_token": "ACCESS-TOKEN",
    "id_token": "ID-TOKEN",
    "refresh_token": "REFRESH-TOKEN",
    "expires_on": "EXPIRES-ON",
    "access_token_secret": "ACCESS-TOKEN-SECRET",
}
"""``gateway.inject_headers`` entry -> suffix of ``X-MS-TOKEN-<PROVIDER>-<suffix>``."""


def is_identity_header(name: bytes) -> bool:
    """True for every spelling of an identity header a client might smuggle in."""
    return name.strip().lower().replace(b"_", b"-").startswith(_PREFIXES)


def strip_identity(headers: Iterable[tuple[bytes, bytes]]) -> RawHeaders:
    return [(k, v) for k, v in headers if not is_identity_header(k)]


def provider_label(provider: str) -> str:
    """``aad`` -> ``AAD``, ``oidc:corp`` -> ``OIDC-CORP``: upper case, non-alphanumerics as ``-``."""
    return re.sub(r"[^A-Z0-9]", "-", provider.upper())


def iso8601(ts: float) -> str:
    return format_expires_on(ts)  # the same text /.auth/me shows


def _header(name: str, value: str | None) -> tuple[bytes, bytes] | None:
    if value is None:
        return None
    if _CONTROL.search(value):
        log.warning("not sending %s: its value contains control characters", name)
        return None
    return name.lower().encode("ascii"), value.encode("utf-8")


def principal(identity: Identity) -> str:
    """``X-MS-CLIENT-PRINCIPAL``: base64 of Easy Auth's JSON (``auth_typ``, ``claims``...)."""
    claims = [{"typ": t, "val": v} for t, v in identity.claims]
    present = {t for t, _ in identity.claims}
    if NAMEID_TYP not in present:
        claims.append({"typ": NAMEID_TYP, "val": identity.user_id})
    if NAME_TYP not in present and identity.name:
        claims.append({"typ": NAME_TYP, "val": identity.name})
    doc = {"auth_typ": identity.provider, "claims": claims, "name_typ": NAME_TYP,
           "role_typ": ROLE_TYP}
    raw = json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
    return base64.b64encode(raw).decode("ascii")


def principal_headers(identity: Identity) -> RawHeaders:
    """The ``X-MS-CLIENT-PRINCIPAL*`` headers (built once per distinct identity, then reused)."""
    return list(_principal_headers(identity.provider, identity.user_id, identity.name,
                                   tuple(identity.claims)))


@functools.lru_cache(maxsize=4096)
def _principal_headers(provider: str, user_id: str, name: str,
                       claims: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    identity = Identity("", user_id, provider, name, list(claims))
    pairs = (
        ("X-MS-CLIENT-PRINCIPAL", principal(identity)),
        ("X-MS-CLIENT-PRINCIPAL-ID", user_id),
        ("X-MS-CLIENT-PRINCIPAL-NAME", name),
        ("X-MS-CLIENT-PRINCIPAL-IDP", provider),
    )
    return tuple(h for h in (_header(n, v) for n, v in pairs) if h is not None)


def token_headers(tokens: ProviderTokens, kinds: Iterable[str]) -> RawHeaders:
    """``X-MS-TOKEN-<PROVIDER>-*`` for the token kinds asked for (and present)."""
    label = provider_label(tokens.provider)
    values: dict[str, str | None] = {
        "access_token": tokens.access_token,
        "id_token": tokens.id_token,
        "refresh_token": tokens.refresh_token,
        "expires_on": iso8601(tokens.expires_on) if tokens.expires_on is not None else None,
        "access_token_secret": tokens.access_token_secret,
    }
    out: RawHeaders = []
    for kind in kinds:
        suffix = TOKEN_KINDS.get(kind)
        if suffix is not None:
            h = _header(f"X-MS-TOKEN-{label}-{suffix}", values[kind] or None)
            if h is not None:
                out.append(h)
    return out
