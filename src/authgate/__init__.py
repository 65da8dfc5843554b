"""authgate: a self-hosted authentication gateway with an encrypted token store and a
rotating refresh-token service, speaking Azure App Service "Easy Auth"'s wire format.

The public API is small on purpose; everything else is internal and may change.
"""

from typing import TYPE_CHECKING, Any

from ._version import __version__
from .config import Settings, load_settings
from .errors import AuthGateError, ConfigError, OAuthError

if TYPE_CHECKING:
    from .app import create_app
    from .gateway.custom_auth import session_token
    from .service import AuthGate

_LAZY = {"create_app": "app", "AuthGate": "service", "session_token": "gateway.custom_auth"}


def __getattr__(name: str) -> Any:
    """Heavy parts load on first use, so the CLI does not import the web stack for `users list`."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'authgate' has no attribute {name!r}")

__all__ = [
    "AuthGate",
    "AuthGateError",
    "ConfigError",
    "OAuthError",
    "Settings",
    "__version__",
    "create_app",
    "load_settings",
    "session_token",
]
