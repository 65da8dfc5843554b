"""User claims as Easy Auth lists them: ``[(typ, val)]`` with WS-Federation claim-type URIs.

Easy Auth's ``/.auth/me`` ``user_claims`` and ``X-MS-CLIENT-PRINCIPAL`` name
the standard claims by the URIs of the .NET ``ClaimTypes`` (the
``http://schemas.xmlsoap.org/ws/2005/05/identity/claims/`` family) and repeat
every raw claim of the ID token or user info under its own name. We do the
same, so apps that read ``nameidentifier`` or ``emailaddress`` keep working.
"""

from __future__ import annotations

from typing import Any

_WS = "http://schemas.xmlsoap.org/ws/2005/05/identity/claims/"
NAMEIDENTIFIER = _WS + "nameidentifier"
NAME = _WS + "name"
EMAIL = _WS + "emailaddress"
GIVEN_NAME = _WS + "givenname"
SURNAME = _WS + "surname"
UPN = _WS + "upn"

_MAPPED = {"sub": NAMEIDENTIFIER, "name": NAME, "email": EMAIL, "given_name": GIVEN_NAME,
           "family_name": SURNAME, "upn": UPN}
_SKIPPED = frozenset({"nonce", "at_hash", "c_hash", "s_hash"})
"""Protocol values that say nothing about the user."""


def _scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str | int | float):
        return str(value)
    return None


def to_claims(raw: dict[str, Any], *, user_id: str | None = None) -> list[tuple[str, str]]:
    """Mapped URIs first, then every raw claim (lists as repeated claims, objects dropped)."""
    out: list[tuple[str, str]] = []
    if user_id is not None and "sub" not in raw:
        out.append((NAMEIDENTIFIER, user_id))
    for key, uri in _MAPPED.items():
        val = _scalar(raw.get(key))
        if val is not None:
            out.append((uri, val))
    for key, value in raw.items():
        if key in _SKIPPED:
            continue
        values = value if isinstance(value, list) else [value]
        out.extend((key, v) for v in map(_scalar, values) if v is not None)
    return out


def display_name(raw: dict[str, Any], fallback: str) -> str:
    for key in ("name", "preferred_username", "email", "login", "username"):
        val = raw.get(key)
        if isinstance(val, str) and val:
            return val
    return fallback
