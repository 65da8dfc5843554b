"""Configuration: one TOML file, ``AUTHGATE_*`` environment overrides, secure defaults.

Precedence: command-line flags > environment > file > defaults. An
environment variable names a setting by its path with ``__`` between table and
key: ``AUTHGATE_PUBLIC_URL``, ``AUTHGATE_TOKENS__REFRESH_GRACE=10s``.
Durations are seconds or a number with a unit (``90s``, ``5m``, ``8h``, ``14d``).
Secrets may be given by reference: ``client_secret_env = "VAR"`` or
``client_secret_file = "path"``.
"""

from __future__ import annotations

import logging
import os
import re
import tomllib
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigError

log = logging.getLogger("authgate.config")

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhdw]?)\s*$")


def parse_duration(value: str | int | float, name: str = "duration") -> float:
    if isinstance(value, bool):
        raise ConfigError(f"{name}: expected a duration, got {value!r}")
    if isinstance(value, int | float):
        seconds = float(value)
    else:
        m = _DURATION.match(value)
        if not m:
            raise ConfigError(f"{name}: {value!r} is not a duration (use e.g. 30s, 5m, 8h, 14d)")
        seconds = float(m.group(1)) * _UNITS[m.group(2) or "s"]
    if seconds < 0:
        raise ConfigError(f"{name}: must not be negative")
    return seconds


@dataclass
class SessionSettings:
    cookie_lifetime: float = 8 * 3600
    sliding: bool = False
    token_refresh_extension_hours: float = 72
    cookie_name: str = "authgate_session"
    signing_key: str = ""
    """Hex HMAC key for X-ZUMO-AUTH session tokens (WEBSITE_AUTH_SIGNING_KEY compatible)."""


@dataclass
class GatewaySettings:
    unauthenticated_action: str = "redirect"
    default_provider: str = ""
    """Where `redirect` sends browsers; empty: the one provider besides `local` (or `local`
    alone); with several and no default, browsers get a page listing them."""
    excluded_paths: list[str] = field(default_factory=lambda: ["/health"])
    allowed_external_redirect_urls: list[str] = field(default_factory=list)
    token_headers: bool = True
    refresh_skew: float = 300
    trusted_proxies: list[str] = field(default_factory=list)
    """Peers (IPs or CIDRs) whose X-Forwarded-* headers are believed."""
    max_header_bytes: int = 16 * 1024
    max_body_bytes: int = 10 * 1024 * 1024
    token_store: bool = True
    """Keep provider tokens (Easy Auth tokenStore.enabled); off: login works, /.auth/me is 404."""
    inject_headers: list[str] = field(default_factory=lambda: [
        "principal", "access_token", "id_token", "refresh_token", "expires_on", "access_token_secret"])
    """Which X-MS-* headers reach the app: principal (X-MS-CLIENT-PRINCIPAL*) and per-token X-MS-TOKEN-*."""
    refresher_interval: float = 0
    """Run the background provider-token refresher in `serve` every this long (0: off)."""
    upstream_timeout: float = 60


@dataclass
class TokenSettings:
    access_token_lifetime: float = 3600
    id_token_lifetime: float = 3600
    refresh_grace: float = 30
    refresh_absolute_lifetime: float = 90 * 86400
    refresh_inactivity_lifetime: float = 14 * 86400
    code_lifetime: float = 60
    signing_alg: str = "ES256"
    leeway: float = 60
    public_clients_refresh: bool = True
    """Public clients may get refresh tokens (always rotated) when they ask for offline_access."""


@dataclass
class LoginSettings:
    max_failures: int = 5
    """Failed password attempts per account before backoff starts."""
    lockout_base: float = 30
    """First lockout; doubles with every further failure, up to lockout_max."""
    lockout_max: float = 15 * 60
    sso_lifetime: float = 8 * 3600


@dataclass
class Settings:
    public_url: str = "http://localhost:8080"
    upstream: str = ""
    store: str = ""
    data_dir: str = ".authgate"
    host: str = "127.0.0.1"
    port: int = 8080
    log_level: str = "info"
    purge_interval: float = 600
    """`serve` removes expired store records this often, in bounded batches (0: never)."""
    session: SessionSettings = field(default_factory=SessionSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    tokens: TokenSettings = field(default_factory=TokenSettings)
    login: LoginSettings = field(default_factory=LoginSettings)
    providers: dict[str, dict[str, Any]] = field(default_factory=dict)
    source: str = "defaults"

    @property
    def issuer(self) -> str:
        return self.public_url.rstrip("/") + "/.auth"

    @property
    def store_url(self) -> str:
        return self.store or f"sqlite:///{Path(self.data_dir) / 'authgate.db'}"

    @property
    def secure_cookies(self) -> bool:
        return not is_loopback_url(self.public_url)

    def warnings(self) -> list[str]:
        """Insecure settings in force; printed loudly at start."""
        out = []
        parts = urlsplit(self.public_url)
        if parts.scheme == "http" and not is_loopback_url(self.public_url):
            out.append(f"public_url {self.public_url} is plain http outside localhost: "
                       "tokens and cookies travel unencrypted. Use https.")
        if self.tokens.refresh_grace > 120:
            out.append("tokens.refresh_grace is over 2 minutes: a stolen refresh token "
                       "stays usable alongside the real one that long.")
        if self.host in ("0.0.0.0", "::") and parts.scheme == "http":  # noqa: S104
            out.append(f"listening on all interfaces ({self.host}) without TLS.")
        return out


def is_loopback_url(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    return host in ("localhost", "::1") or host.startswith("127.") or host.endswith(".localhost")


DURATION_FIELDS = {
    "cookie_lifetime", "refresh_skew", "access_token_lifetime", "id_token_lifetime",
    "refresh_grace", "refresh_absolute_lifetime", "refresh_inactivity_lifetime",
    "code_lifetime", "leeway", "lockout_base", "lockout_max", "sso_lifetime",
    "refresher_interval", "upstream_timeout", "purge_interval",
}


def _coerce(name: str, current: Any, value: Any) -> Any:
    if name.rsplit(".", 1)[-1] in DURATION_FIELDS:
        return parse_duration(value, name)
    if isinstance(current, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("1", "true", "yes", "on"):
            return True
        if str(value).lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if isinstance(current, int):
        try:
            return int(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected an integer, got {value!r}") from None
    if isinstance(current, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"{name}: expected a number, got {value!r}") from None
    if isinstance(current, list):
        if isinstance(value, str):
            return [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list):
            raise ConfigError(f"{name}: expected a list")
        return list(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise ConfigError(f"{name}: expected a string, got {value!r}")
        return value
    return value


def _apply(obj: Any, data: dict[str, Any], prefix: str = "") -> None:
    known = {f.name: f for f in fields(obj)}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in known or key == "source":
            raise ConfigError(f"unknown setting {path!r}")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{path} must be a table")
            _apply(current, value, path + ".")
        elif key == "providers":
            if not isinstance(value, dict):
                raise ConfigError("providers must be a table of tables")
            current.update(value)
        else:
            setattr(obj, key, _coerce(path, current, value))


_HARNESS = ("AUTHGATE_TEST_", "AUTHGATE_BENCH_")


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in environ.items():
        if not name.startswith("AUTHGATE_") or name in ("AUTHGATE_CONFIG",):
            continue
        if name.startswith(_HARNESS):
            continue  # the test suite's and benchmark's own variables, not settings
        parts = name[len("AUTHGATE_"):].lower().split("__")
        if parts[0] in ("sealing_keys", "hash_key"):
            continue  # key material, read by authgate.keystore
        node = out
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return out


def load_settings(path: str | os.PathLike[str] | None = None,
                  environ: dict[str, str] | None = None,
                  overrides: dict[str, Any] | None = None) -> Settings:
    """Defaults, then the TOML file (if any), then the environment, then ``overrides``."""
    environ = dict(os.environ if environ is None else environ)
    settings = Settings()
    path = path or environ.get("AUTHGATE_CONFIG")
    if path is None and Path("authgate.toml").is_file():
        path = "authgate.toml"
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"config file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path}: {exc}") from None
        _apply(settings, data)
        settings.source = str(path)
    _apply(settings, _env_overrides(environ))
    if overrides:
        _apply(settings, overrides)
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    parts = urlsplit(s.public_url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(f"public_url must be an http(s) URL, got {s.public_url!r}")
    if parts.query or parts.fragment:
        raise ConfigError("public_url must not have a query or fragment")
    if s.gateway.unauthenticated_action not in ("allow", "redirect", "401", "403"):
        raise ConfigError("gateway.unauthenticated_action must be allow, redirect, 401 or 403")
    if s.tokens.signing_alg not in ("ES256", "EdDSA", "RS256"):
        raise ConfigError("tokens.signing_alg must be ES256, EdDSA or RS256")
    if s.tokens.access_token_lifetime <= 0 or s.tokens.refresh_absolute_lifetime <= 0:
        raise ConfigError("token lifetimes must be positive")
    if s.upstream:
        up = urlsplit(s.upstream)
        if up.scheme not in ("http", "https") or not up.hostname:
            raise ConfigError(f"upstream must be an http(s) URL, got {s.upstream!r}")


def resolve_secret(table: dict[str, Any], name: str) -> str | None:
    """``name``, ``name_env`` (environment variable) or ``name_file`` (file contents)."""
    if table.get(name):
        return str(table[name])
    if table.get(f"{name}_env"):
        var = str(table[f"{name}_env"])
        if var not in os.environ:
            raise ConfigError(f"{name}_env names {var}, which is not set")
        return os.environ[var]
    if table.get(f"{name}_file"):
        try:
            return Path(str(table[f"{name}_file"])).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(f"{name}_file: {exc}") from None
    return None
