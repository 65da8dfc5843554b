"""Where the gateway may send a browser after login or logout -- never an open redirect.

``post_login_redirect_uri`` and ``post_logout_redirect_uri`` (Easy Auth's
names) are accepted when they are

* a path on this site: starts with exactly one ``/``, no backslash, no control
  character or whitespace, and stays so after percent-decoding (browsers and
  proxies decode, and turn ``\\`` into ``/``: ``/\\evil``, ``/%2F%2Fevil``); or
* an absolute URL on ``public_url``'s origin; or
* an absolute URL under one of ``gateway.allowed_external_redirect_urls``
  (same scheme, host and port, and a path inside the allowed one -- custom
  schemes such as ``myapp://auth`` for mobile apps included).

Everything else (``https://evil.example``, ``//evil.example``,
``https:evil.example``, ``javascript:``, encoded variants) is refused with
400 (RFC 9700 §4.11.1; SECURITY.md 42).
"""

from __future__ import annotations

from urllib.parse import SplitResult, unquote, urlsplit

from ..config import Settings

MAX_LENGTH = 2048
DANGEROUS_SCHEMES = frozenset({"javascript", "data", "vbscript", "file", "blob", "about"})


class UnsafeRedirect(ValueError):
    """The redirect target is not on this site or the allow-list."""


def _clean(value: str, *, raw: bool) -> bool:
    """No backslash or control character; as sent, no whitespace either (browsers strip it)."""
    if "\\" in value or any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        return False
    return not raw or not any(ch.isspace() for ch in value)


def _decodings(value: str) -> list[str]:
    """The value and its successive percent-decodings, until stable (max 4)."""
    out = [value]
    for _ in range(4):
        nxt = unquote(out[-1])
        if nxt == out[-1]:
            break
        out.append(nxt)
    return out


def _is_local_path(value: str) -> bool:
    for form in _decodings(value):
        if not _clean(form, raw=form is value) or not form.startswith("/") or form.startswith("//"):
            return False
        parts = urlsplit(form)
        if parts.scheme or parts.netloc:
            return False
    return True


def _port(p: SplitResult) -> int | None:
    try:
        return p.port or {"http": 80, "https": 443}.get(p.scheme.lower())
    except ValueError:
        return None


def _within(target: SplitResult, allowed: SplitResult) -> bool:
    if target.scheme.lower() != allowed.scheme.lower() or not target.hostname:
        return False
    if (target.hostname or "").lower() != (allowed.hostname or "").lower():
        return False
    if _port(target) != _port(allowed) or target.username is not None or target.password:
        return False
    base = allowed.path.rstrip("/")
    return not base or target.path == base or target.path.startswith(base + "/")


def _is_allowed_absolute(value: str, settings: Settings) -> bool:
    if not all(_clean(form, raw=form is value) for form in _decodings(value)):
        return False
    target = urlsplit(value)
    if not target.scheme or target.scheme.lower() in DANGEROUS_SCHEMES or not target.netloc:
        return False
    candidates = [settings.public_url, *settings.gateway.allowed_external_redirect_urls]
    return any(_within(target, urlsplit(c)) for c in candidates)


def safe_redirect(value: str | None, settings: Settings, default: str = "/") -> str:
    """``value`` if it may be redirected to (see the module doc), ``default`` if absent."""
    if value is None or value == "":
        return default
    if len(value) > MAX_LENGTH:
        raise UnsafeRedirect("the redirect URL is too long")
    if _is_local_path(value) or _is_allowed_absolute(value, settings):
        return value
    raise UnsafeRedirect("the redirect URL must be a path on this site or in "
                         "gateway.allowed_external_redirect_urls")
