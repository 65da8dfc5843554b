"""Where a client keeps its tokens between requests and between runs.

A :class:`TokenStorage` holds the :class:`TokenSet` of one grant. The refresh
flow calls :meth:`TokenStorage.save` with a rotated set *before* anything uses
it: with refresh-token rotation the previous refresh token is spent the moment
the provider answers, so a set that was used but never saved is a set a crash
can lose -- and with it the user's sign-in.

Implementations: :class:`MemoryStorage` (tests, short scripts),
:class:`~authgate.client.EncryptedFileStorage` (a 0600 AES-GCM file) and
:class:`KeyringStorage` (the OS keyring, with the optional ``keyring`` package).
Methods are synchronous: they run under the refresh lock, once per refresh.
"""

from __future__ import annotations

import importlib
import json
from types import ModuleType
from typing import Protocol, runtime_checkable

from ._errors import KeyringUnavailable, StorageError
from ._tokens import TokenSet

KEYRING_HELP = (
    "KeyringStorage needs the optional 'keyring' package and an OS keyring "
    "(macOS Keychain, Windows Credential Locker, Secret Service/KWallet on Linux). "
    "Install it with: pip install 'authgate[keyring]'  (or: pip install keyring). "
    "Without a keyring, keep tokens in an encrypted file instead: "
    "EncryptedFileStorage(path, passphrase=...) or EncryptedFileStorage(path, key_file=...)."
)


@runtime_checkable
class TokenStorage(Protocol):
    """Persistence for one grant's tokens."""

    def load(self) -> TokenSet | None:
        """The saved tokens, or None when nothing was saved (or they were cleared)."""
        ...

    def save(self, tokens: TokenSet) -> None:
        """Store ``tokens`` durably, replacing what was there; :class:`StorageError` on failure.

        Must not return before the tokens would survive a crash: the caller
        uses them only after this returns.
        """
        ...

    def clear(self) -> None:
        """Forget the tokens (sign-out)."""
        ...


class MemoryStorage:
    """Tokens in memory only: lost when the process ends."""

    def __init__(self, tokens: TokenSet | None = None) -> None:
        self._tokens = tokens

    def load(self) -> TokenSet | None:
        return self._tokens

    def save(self, tokens: TokenSet) -> None:
        self._tokens = tokens

    def clear(self) -> None:
        self._tokens = None


def _import_keyring() -> ModuleType:
    try:
        return importlib.import_module("keyring")
    except ImportError:
        raise KeyringUnavailable(KEYRING_HELP) from None


class KeyringStorage:
    """Tokens as one JSON entry in the OS keyring under (``service``, ``username``).

    Raises :class:`KeyringUnavailable` at construction when ``keyring`` is not
    installed, and on first use when it is installed but no keyring backend works.
    """

    def __init__(self, service: str = "authgate", username: str = "default") -> None:
        self._keyring = _import_keyring()
        self.service = service
        self.username = username

    def _call(self, name: str, *args: str) -> str | None:
        try:
            result = getattr(self._keyring, name)(self.service, self.username, *args)
        except Exception as exc:  # keyring raises its own tree; NoKeyringError has no backend
            if type(exc).__name__ in ("NoKeyringError", "InitError"):
                raise KeyringUnavailable(f"no usable OS keyring: {exc}. {KEYRING_HELP}") from exc
            if type(exc).__name__ == "PasswordDeleteError":
                return None
            raise StorageError(f"keyring {name} failed: {type(exc).__name__}") from exc
        return result if isinstance(result, str) else None

    def load(self) -> TokenSet | None:
        raw = self._call("get_password")
        if raw is None:
            return None
        try:
            return TokenSet.from_dict(json.loads(raw))
        except (ValueError, KeyError, TypeError):
            raise StorageError("the keyring entry is not a saved TokenSet") from None

    def save(self, tokens: TokenSet) -> None:
        self._call("set_password", json.dumps(tokens.to_dict()))

    def clear(self) -> None:
        self._call("delete_password")
