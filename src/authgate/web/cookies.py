"""Browser cookies of the issuer's own pages.

Cookie rules (OWASP ASVS 5.0 V3.3, RFC 6265bis §4.1.3): ``HttpOnly``,
``SameSite``, ``Path=/``, never a ``Domain``, and ``Secure`` with the
``__Host-`` prefix whenever ``public_url`` is not plain-http loopback
(:attr:`Settings.secure_cookies`). The prefix makes the browser refuse a
cookie of that name that a sibling subdomain or a plain-http page tried to
plant (cookie tossing), which is what makes a double-submit CSRF cookie and
the SSO cookie trustworthy.
"""

from __future__ import annotations

from typing import Literal

from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings

HOST_PREFIX = "__Host-"


def cookie_name(settings: Settings, base: str) -> str:
    """``__Host-<base>`` when cookies are Secure, else ``<base>`` (the prefix requires Secure)."""
    return HOST_PREFIX + base if settings.secure_cookies else base


def read_cookie(request: Request, settings: Settings, base: str) -> str | None:
    return request.cookies.get(cookie_name(settings, base)) or None


def set_cookie(response: Response, settings: Settings, base: str, value: str, *,
               max_age: int | None = None, samesite: Literal["lax", "strict"] = "lax") -> None:
    response.set_cookie(cookie_name(settings, base), value, max_age=max_age, path="/",
                        domain=None, secure=settings.secure_cookies, httponly=True,
                        samesite=samesite)


def delete_cookie(response: Response, settings: Settings, base: str,
                  samesite: Literal["lax", "strict"] = "lax") -> None:
    response.delete_cookie(cookie_name(settings, base), path="/", domain=None,
                           secure=settings.secure_cookies, httponly=True, samesite=samesite)
