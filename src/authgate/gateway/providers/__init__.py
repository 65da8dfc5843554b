"""Upstream identity providers, one per ``[providers.<name>]`` table (DESIGN.md §3).

:func:`load_providers` builds them synchronously and without I/O: OpenID
Connect discovery happens on first use, so a provider that is down cannot keep
authgate from starting. The table's ``type`` picks the class (``oidc`` when
absent, or the table's name when that is a preset: ``[providers.google]``);
``local`` -- authgate's own accounts -- is always there unless
``[providers.local] enabled = false``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...errors import ConfigError
from .base import (
    GrantRejected,
    LoginRefused,
    Provider,
    ProviderDown,
    ProviderError,
    UpstreamUser,
)
from .local import LocalProvider
from .presets import PRESETS

if TYPE_CHECKING:
    from .. import Gateway

__all__ = [
    "GrantRejected",
    "LoginRefused",
    "Provider",
    "ProviderDown",
    "ProviderError",
    "UpstreamUser",
    "build_provider",
    "load_providers",
]

KINDS: dict[str, type[Provider]] = {**PRESETS, "local": LocalProvider}


def build_provider(name: str, table: dict[str, Any], gw: Gateway) -> Provider:
    if not isinstance(table, dict):
        raise ConfigError(f"providers.{name} must be a table")
    kind = table.get("type") or (name if name in KINDS else "oidc")
    cls = KINDS.get(str(kind))
    if cls is None:
        raise ConfigError(f"providers.{name}.type {kind!r} is unknown; use one of "
                          f"{', '.join(sorted(KINDS))}")
    return cls(name, table, gw)


def load_providers(gw: Gateway) -> dict[str, Provider]:
    tables = dict(gw.settings.providers)
    tables.setdefault("local", {"type": "local"})
    out: dict[str, Provider] = {}
    for name, table in tables.items():
        if isinstance(table, dict) and table.get("enabled", True) is False:
            continue
        out[name] = build_provider(name, table, gw)
    return out
