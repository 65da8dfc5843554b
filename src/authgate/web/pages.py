"""The HTML of the issuer's pages: plain string templates, every value escaped.

No template engine and no JavaScript: the Content-Security-Policy of every
page allows only inline styles and forms posting back to us, and no framing
(CSP3 ``frame-ancestors``, RFC 7034 ``X-Frame-Options``: no clickjacking of
the sign-in form). Every interpolated value passes through :func:`esc`
(``html.escape`` with quotes), so nothing a request carries can become markup.

``form-action`` also governs the redirects that follow a form submission
(CSP3 §6.3.3.3, enforced by Chromium and Firefox). A sign-in that ends at a
client's redirect URI on another origin therefore needs that origin in the
sign-in page's ``form-action``; :func:`respond` adds the registered targets it
is given, and nothing else.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from html import escape
from urllib.parse import urlsplit

from starlette.responses import HTMLResponse

from .csrf import FIELD as CSRF_FIELD
from .csrf import origin_of

LOGIN_PATH = "/.auth/account/login"
LOGOUT_PATH = "/.auth/oauth2/logout"

CSP = "default-src 'none'; style-src 'unsafe-inline'; form-action {}; frame-ancestors 'none'"
PAGE_HEADERS = {
    "Content-Security-Policy": CSP.format("'self'"),
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
    "Pragma": "no-cache",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
"""Headers of every HTML page the issuer serves (login, logout, error pages)."""
REDIRECT_HEADERS = {"Cache-Control": "no-store", "Referrer-Policy": "no-referrer"}
_SOURCE = re.compile(r"[a-z][a-z0-9+.-]*:|https?://(?:[a-z0-9.-]+|\[[0-9a-f:.]+\])(?::\d{1,5})?")

_STYLE = """
*{box-sizing:border-box}
body{margin:0;min-height:100vh;display:flex;align-items:center;justify-content:center;
font:16px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f3f4f6;color:#111827}
main{width:100%;max-width:22rem;margin:1rem;padding:2rem;background:#fff;border-radius:.75rem;
box-shadow:0 1px 3px rgba(0,0,0,.1),0 8px 24px rgba(0,0,0,.06)}
h1{font-size:1.25rem;margin:0 0 1.25rem}
label{display:block;font-size:.875rem;font-weight:600;margin:.75rem 0 .25rem}
input{width:100%;padding:.6rem .7rem;border:1px solid #d1d5db;border-radius:.5rem;font:inherit}
input:focus{outline:2px solid #2563eb;outline-offset:1px;border-color:#2563eb}
button{width:100%;margin-top:1.25rem;padding:.65rem;border:0;border-radius:.5rem;background:#2563eb;
color:#fff;font:inherit;font-weight:600;cursor:pointer}
button:hover{background:#1d4ed8}
.error{padding:.6rem .75rem;border-radius:.5rem;background:#fef2f2;color:#991b1b;font-size:.9rem}
p{margin:.5rem 0}
"""


def esc(value: object) -> str:
    return escape(str(value), quote=True)


def document(title: str, body: str) -> str:
    """A complete page; ``body`` is markup already built from escaped values."""
    return (
        '<!doctype html>\n<html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width,initial-scale=1">'
        '<meta name="robots" content="noindex">'
        f"<title>{esc(title)}</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{esc(title)}</h1>{body}</main></body></html>\n"
    )


def form_source(uri: str) -> str | None:
    """The CSP source expression (CSP3 §2.3.1) admitting redirects to ``uri``."""
    scheme = urlsplit(uri).scheme.lower()
    try:
        source = origin_of(uri) if scheme in ("http", "https") else f"{scheme}:"
    except ValueError:  # a port out of range
        return None
    return source if _SOURCE.fullmatch(source) else None


def respond(title: str, body: str, status: int = 200, headers: Mapping[str, str] | None = None,
            *, redirects_to: Iterable[str] = ()) -> HTMLResponse:
    """A page; ``redirects_to`` are registered URIs its form may end up at after redirects."""
    sources = dict.fromkeys(["'self'", *filter(None, map(form_source, redirects_to))])
    policy = {"Content-Security-Policy": CSP.format(" ".join(sources))}
    return HTMLResponse(document(title, body), status_code=status,
                        headers={**PAGE_HEADERS, **policy, **(headers or {})})


def _hidden(fields: Mapping[str, str | None]) -> str:
    return "".join(f'<input type="hidden" name="{esc(k)}" value="{esc(v)}">'
                   for k, v in fields.items() if v is not None)


def login_form(*, csrf_token: str, return_to: str | None, username: str = "",
               error: str = "") -> str:
    alert = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    return (
        f'{alert}<form method="post" action="{esc(LOGIN_PATH)}">'
        f"{_hidden({CSRF_FIELD: csrf_token, 'return_to': return_to})}"
        '<label for="username">Username</label>'
        '<input id="username" name="username" autocomplete="username" required autofocus'
        f' value="{esc(username)}">'
        '<label for="password">Password</label>'
        '<input id="password" name="password" type="password" autocomplete="current-password"'
        " required>"
        '<button type="submit">Sign in</button></form>'
    )


def signed_in(username: str) -> str:
    return (f"<p>Signed in as <strong>{esc(username)}</strong>.</p>"
            f'<form method="post" action="{esc(LOGOUT_PATH)}">'
            '<button type="submit">Sign out</button></form>')


def confirm_logout(fields: Mapping[str, str | None]) -> str:
    return ("<p>Do you want to sign out?</p>"
            f'<form method="post" action="{esc(LOGOUT_PATH)}">{_hidden(fields)}'
            '<button type="submit">Sign out</button></form>')


def message(text: str) -> str:
    return f"<p>{esc(text)}</p>"


def error_page(text: str, status: int = 400) -> HTMLResponse:
    """An error the browser's user must see -- used when redirecting back is not safe."""
    return respond("Request refused", f'<p class="error" role="alert">{esc(text)}</p>', status)
