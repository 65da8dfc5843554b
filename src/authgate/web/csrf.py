"""Cross-site request forgery defences for the issuer's own forms.

Two independent checks, both required on every state-changing POST
(OWASP CSRF Prevention Cheat Sheet; SECURITY.md "Sessions and CSRF"):

1. **Fetch metadata / Origin.** A browser names where a request came from:
   ``Sec-Fetch-Site`` (W3C Fetch Metadata) and ``Origin`` (RFC 6454 §7,
   Fetch §3.1). Anything but ``same-origin`` (or ``none``: typed by the user)
   and any ``Origin`` other than ``public_url``'s is refused with 403.
   Requests with neither header (non-browser clients) rely on check 2.
2. **Signed double-submit cookie.** The ``agcsrf`` cookie (``__Host-agcsrf``
   when Secure) holds 256 random bits; the form carries an HMAC of it under
   the server's hashing key. A forged form needs that MAC, which only the
   server can compute -- a planted cookie alone is useless to an attacker.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import Response

from ..config import Settings
from ..hashing import TokenHasher, equal, new_id
from .cookies import delete_cookie, read_cookie, set_cookie

COOKIE = "agcsrf"
FIELD = "csrf_token"
_LABEL = "authgate.csrf"
_VALUE = re.compile(r"^[A-Za-z0-9_-]{43}$")
_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str) -> str:
    """The ASCII serialisation of a URL's origin (RFC 6454 §6.2): ``scheme://host[:port]``."""
    parts = urlsplit(url)
    scheme, host = parts.scheme.lower(), (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    return f"{scheme}://{host}" if port in (None, _DEFAULT_PORTS.get(scheme)) else f"{scheme}://{host}:{port}"


def same_origin(request: Request, settings: Settings) -> bool:
    """False when the browser says the request came from another site or origin.

    Our pages send ``Referrer-Policy: no-referrer``, under which browsers send
    ``Origin: null`` even on a same-origin POST (Fetch, "serializing a request
    origin"); such a request is accepted only when ``Sec-Fetch-Site``, which
    pages cannot forge, vouches for it.
    """
    sites, origins = request.headers.getlist("sec-fetch-site"), request.headers.getlist("origin")
    if len(sites) > 1 or len(origins) > 1:
        return False
    site = sites[0].strip().lower() if sites else None
    origin = origins[0].strip().lower() if origins else None
    if site is not None and site not in ("same-origin", "none"):
        return False
    if origin is None:
        return True
    if origin == "null":
        return site is not None
    return origin == origin_of(settings.public_url)


class CSRF:
    """The double-submit token of one request: read the cookie, mint or check the form token."""

    def __init__(self, request: Request, settings: Settings, hasher: TokenHasher) -> None:
        self.settings = settings
        self.hasher = hasher
        current = read_cookie(request, settings, COOKIE)
        self.cookie = current if current is not None and _VALUE.match(current) else None
        self.fresh = False

    def _mac(self, cookie: str) -> str:
        return self.hasher.derive(_LABEL, cookie, "")

    def token(self) -> str:
        """The token for a form; starts a new cookie when the browser has none (or a bad one)."""
        if self.cookie is None:
            self.cookie = new_id(32)
            self.fresh = True
        return self._mac(self.cookie)

    def valid(self, form_token: str | None) -> bool:
        if self.cookie is None or form_token is None:
            return False
        return equal(self._mac(self.cookie), form_token)

    def set_cookie(self, response: Response) -> None:
        """Send the cookie minted by :meth:`token` (a session cookie: it dies with the browser)."""
        if self.fresh and self.cookie is not None:
            set_cookie(response, self.settings, COOKIE, self.cookie, samesite="strict")

    def forget(self, response: Response) -> None:
        """Drop the cookie (after login, so the next form gets a fresh one)."""
        delete_cookie(response, self.settings, COOKIE, samesite="strict")
