"""The public API is exactly what ``__all__`` says (httpx's guard against drift)."""

from __future__ import annotations

import authgate


def test_all_names_exist_and_nothing_else_is_public() -> None:
    """Every name in __all__ exists, and every public module attribute is listed or a submodule."""
    import types

    for name in authgate.__all__:
        assert hasattr(authgate, name), name
    public = {n for n, v in vars(authgate).items()
              if not n.startswith("_") and not isinstance(v, types.ModuleType) and n != "TYPE_CHECKING"
              and n != "Any"}
    assert public <= set(authgate.__all__)
    assert callable(authgate.session_token)
