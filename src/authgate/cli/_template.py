"""The commented ``authgate.toml`` that ``authgate init`` writes.

It is generated from the :class:`~authgate.config.Settings` dataclasses rather
than kept as a literal, so every setting appears with its real default and a
setting added to ``config.py`` shows up in new files even before someone
writes its explanation here. Settings whose empty default means "derived" or
"off" (``store``, ``upstream``) and secrets (``session.signing_key``) are
written commented out: a secret belongs in the environment, not in a file
that gets committed.
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import Any

from ..config import DURATION_FIELDS, Settings
from ._common import format_duration

HEADER = """\
# authgate configuration (written by `authgate init`).
#
# Every setting is shown with its default. Environment variables override this
# file: AUTHGATE_<SETTING>, with __ between table and key, e.g.
# AUTHGATE_PUBLIC_URL=https://app.example.com or AUTHGATE_TOKENS__REFRESH_GRACE=10s.
# Durations are seconds or a number with a unit: 90s, 5m, 8h, 14d.
"""

EXPLAIN: dict[str, str] = {
    "public_url": "The URL users reach authgate at; the issuer is public_url + \"/.auth\".\n"
                  "Use https outside localhost.",
    "upstream": "The app behind the gateway; every path outside /.auth/ is proxied to it.\n"
                "Empty: authgate serves only /.auth/*.",
    "store": "Token store URL: sqlite:///path/to.db, postgresql://user@host/db, redis://host,\n"
             "file:///dir or azureblob://... Default: SQLite file authgate.db in data_dir.\n"
             "Put passwords in the environment (AUTHGATE_STORE), not here.",
    "data_dir": "Holds keys.json (sealing + hashing keys, mode 0600) and the default SQLite\n"
                "store. Relative to the working directory. Back it up; guard it.",
    "host": "Address `authgate serve` listens on.",
    "port": "Port `authgate serve` listens on.",
    "log_level": "critical, error, warning, info or debug.",
    "session": "Browser sessions and Easy Auth session tokens (X-ZUMO-AUTH).",
    "session.cookie_lifetime": "How long a session cookie lasts.",
    "session.sliding": "true: every request extends the cookie; false: fixed lifetime.",
    "session.token_refresh_extension_hours": "Hours after expiry during which a session token "
                                             "can still be refreshed.",
    "session.cookie_name": "Name of the session cookie.",
    "session.signing_key": "Hex HMAC key for session tokens (WEBSITE_AUTH_SIGNING_KEY "
                           "compatible).\nA secret: set AUTHGATE_SESSION__SIGNING_KEY "
                           "instead of writing it here.",
    "gateway": "The reverse proxy in front of `upstream`.",
    "gateway.unauthenticated_action": "For anonymous requests: allow, redirect (to login), "
                                      "401 or 403.",
    "gateway.excluded_paths": "Paths served without authentication.",
    "gateway.allowed_external_redirect_urls": "Absolute URLs allowed after login/logout "
                                              "(relative paths always are).",
    "gateway.token_headers": "Pass provider tokens to the app as X-MS-TOKEN-* headers.",
    "gateway.refresh_skew": "Refresh provider tokens this long before they expire.",
    "gateway.trusted_proxies": "Proxies whose X-Forwarded-* headers are believed (addresses).",
    "gateway.max_header_bytes": "Requests with larger headers are refused (431).",
    "gateway.max_body_bytes": "Requests with larger bodies are refused (413).",
    "tokens": "The tokens authgate issues as an OAuth 2.0 / OpenID Connect server.",
    "tokens.access_token_lifetime": "Lifetime of access tokens (signed JWTs).",
    "tokens.id_token_lifetime": "Lifetime of ID tokens.",
    "tokens.refresh_grace": "A just-rotated refresh token presented again within this window\n"
                            "gets the same successor (lost response, parallel tabs) instead of\n"
                            "counting as reuse. Keep it short.",
    "tokens.refresh_absolute_lifetime": "A refresh-token family dies this long after the user "
                                        "authenticated.",
    "tokens.refresh_inactivity_lifetime": "A refresh token dies when unused this long.",
    "tokens.code_lifetime": "Lifetime of authorization codes.",
    "tokens.signing_alg": "Algorithm of new signing keys: ES256, EdDSA or RS256.",
    "tokens.leeway": "Clock skew tolerated when checking exp, nbf and iat.",
    "tokens.public_clients_refresh": "Public clients may get (always rotated) refresh tokens "
                                     "with offline_access.",
    "login": "The built-in `local` accounts.",
    "login.max_failures": "Failed password attempts per account before backoff starts.",
    "login.lockout_base": "First lockout; doubles with every further failure.",
    "login.lockout_max": "Longest lockout.",
    "login.sso_lifetime": "How long the issuer's own login (SSO) lasts.",
}

SECRETS = {"session.signing_key"}
"""Never written, whatever their value: they belong in the environment."""
COMMENTED_OUT = {"upstream": "http://127.0.0.1:8000", "store": "sqlite:///.authgate/authgate.db",
                 "session.signing_key": "<hex>"}

PROVIDERS = """\
# Upstream identity providers. Secrets by reference: *_env names an environment
# variable, *_file a file holding the value.
#
# [providers.corp]                            # any OpenID Connect provider
# type = "oidc"
# issuer = "https://login.example.com"
# client_id = "authgate"
# client_secret_env = "CORP_CLIENT_SECRET"
# scopes = ["openid", "profile", "email", "offline_access"]
# login_params = { prompt = "consent" }
#
# [providers.google]                          # presets fill in the endpoints
# type = "google"
# client_id = "..."
# client_secret_env = "GOOGLE_CLIENT_SECRET"
# login_params = { access_type = "offline" }
"""


def toml_value(name: str, value: Any) -> str:
    """One value as TOML; durations in their readable form (``14d``, not ``1209600.0``)."""
    if name in DURATION_FIELDS:
        return json.dumps(format_duration(float(value)))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(json.dumps(v) for v in value) + "]"
    return json.dumps(str(value))


def _comment(path: str) -> list[str]:
    text = EXPLAIN.get(path, "See authgate.config.")
    return ["# " + line for line in text.splitlines()]


def _lines(obj: Any, prefix: str = "") -> list[str]:
    out: list[str] = []
    tables: list[str] = []
    for f in fields(obj):
        path = prefix + f.name
        value = getattr(obj, f.name)
        if f.name in ("source", "providers"):
            continue
        if is_dataclass(value):
            tables += ["", f"[{path}]", *_comment(path), *_lines(value, path + ".")]
            continue
        out += ["", *_comment(path)] if not prefix else _comment(path)
        if path in SECRETS or (path in COMMENTED_OUT and not value):
            out.append(f"# {f.name} = {json.dumps(COMMENTED_OUT[path])}")
        else:
            out.append(f"{f.name} = {toml_value(f.name, value)}")
    return out + tables


def render(settings: Settings | None = None) -> str:
    """The file for ``settings`` (defaults when None); loads back to the same settings."""
    body = _lines(settings or Settings())
    return HEADER + "\n" + "\n".join(body).strip("\n") + "\n\n" + PROVIDERS
