"""authgate.client's public API is exactly its ``__all__`` (httpx's guard against drift)."""

from __future__ import annotations

import types

import authgate.client


def test_all_names_exist_and_nothing_else_is_public() -> None:
    """Every name in __all__ exists, and every public attribute is listed (or a submodule)."""
    for name in authgate.client.__all__:
        assert hasattr(authgate.client, name), name
    public = {n for n, v in vars(authgate.client).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType)}
    assert public == set(authgate.client.__all__)


def test_the_promised_names_are_exported() -> None:
    """DESIGN.md §2.5 and issue 5 name these; they stay public."""
    wanted = {"TokenSet", "OAuth2Auth", "TokenStorage", "MemoryStorage", "EncryptedFileStorage",
              "KeyringStorage", "EasyAuthClient", "Refresher", "verify_access_token", "JWKSCache",
              "RequireAccessToken"}
    assert wanted <= set(authgate.client.__all__)
