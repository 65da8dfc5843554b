"""Import an Azure App Service "Easy Auth" v2 configuration as authgate TOML.

Reads the ``auth.json`` file-based configuration or an ``authsettingsV2``
document (the ARM resource, or just its ``properties``) and maps
``globalValidation``, ``identityProviders``, ``login`` and ``httpSettings``
onto authgate's settings (DESIGN.md §3). Easy Auth never holds secrets in this
document -- only the *names* of app settings that do -- and those become
``client_secret_env``; a secret found inline is not copied.

Whatever has no authgate equivalent is listed, both in the returned notes and
as comments at the end of the TOML, so nothing is dropped silently: above all
authorization rules (``defaultAuthorizationPolicy``, ``jwtClaimChecks``),
which authgate does not enforce. The TOML is written by hand (no dependency):
every string is a TOML basic string with ``\\``, ``"`` and control characters
escaped (TOML 1.0 §String).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from .config import GatewaySettings
from .errors import ConfigError

__all__ = ["Imported", "import_easyauth", "load_document", "to_toml_value"]

ACTIONS = {"redirecttologinpage": "redirect", "allowanonymous": "allow", "return401": "401",
           "return403": "403"}
PRESETS = {"azureactivedirectory": "aad", "google": "google", "facebook": "facebook",
           "github": "github", "twitter": "twitter", "apple": "apple",
           "legacymicrosoftaccount": "microsoftaccount"}
_PROTECTED = {"state", "nonce", "redirect_uri", "code_challenge", "code_challenge_method",
              "client_id", "client_secret", "response_type", "response_mode", "request",
              "request_uri"}
_WELL_KNOWN = "/.well-known/openid-configuration"


def to_toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(to_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_key(k)} = {to_toml_value(v)}" for k, v in value.items()) + " }"
    escapes = {"\\": "\\\\", '"': '\\"', "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f",
               "\r": "\\r"}
    return '"' + "".join(escapes.get(c) or (f"\\u{ord(c):04X}" if ord(c) < 0x20 or ord(c) == 0x7F
                                             else c) for c in str(value)) + '"'


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else to_toml_value(key)


def _get(d: Any, *path: str) -> Any:
    """``d[a][b]...`` matching keys case-insensitively (ARM documents vary); None if absent."""
    for part in path:
        if not isinstance(d, dict):
            return None
        d = next((v for k, v in d.items() if k.lower() == part.lower()), None)
    return d


def _hours(span: str) -> float:
    """A .NET TimeSpan ``[d.]hh:mm:ss[.fff]`` in seconds."""
    m = re.fullmatch(r"(?:(\d+)\.)?(\d+):(\d+):(\d+(?:\.\d+)?)", span.strip())
    if not m:
        raise ValueError(span)
    d, h, mi, s = m.groups()
    return int(d or 0) * 86400 + int(h) * 3600 + int(mi) * 60 + float(s)


def _duration(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


@dataclass
class Imported:
    toml: str
    notes: list[str] = field(default_factory=list)
    """What could not be mapped (or needs a human), one line each."""


class _Builder:
    def __init__(self) -> None:
        self.tables: dict[str, list[str]] = {}
        self.notes: list[str] = []
        self.blocks: list[str] = []
        """Commented-out tables to finish by hand."""

    def set(self, table: str, key: str, value: Any, why: str = "") -> None:
        line = f"{_key(key)} = {to_toml_value(value)}"
        self.tables.setdefault(table, []).append(f"{line}  # {why}" if why else line)

    def comment(self, table: str, text: str) -> None:
        self.tables.setdefault(table, []).append(f"# {text}")

    def note(self, text: str) -> None:
        self.notes.append(text)


def load_document(path: str | Path) -> dict[str, Any]:
    try:
        doc = json.loads(Path(path).read_text(encoding="utf-8-sig"))
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path} is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: expected a JSON object")
    return doc


def import_easyauth(doc: dict[str, Any], source: str = "auth.json") -> Imported:
    props = _get(doc, "properties") if isinstance(_get(doc, "properties"), dict) else doc
    if not any(_get(props, k) is not None for k in ("globalValidation", "identityProviders",
                                                       "login", "platform", "httpSettings")):
        raise ConfigError("not an Easy Auth v2 document (no globalValidation, identityProviders "
                          "or login); v1 settings can be upgraded with "
                          "`az webapp auth config-version upgrade`")
    b = _Builder()
    _global(b, _get(props, "globalValidation") or {})
    used: set[str] = set()
    for name, table in _providers(b, _get(props, "identityProviders") or {}):
        while name in used:
            name = name[:29] + "-" + str(len(used))
        used.add(name)
        for key, value in table.items():
            b.set(f"providers.{name}", key, value)
    _login(b, _get(props, "login") or {})
    _http(b, _get(props, "httpSettings") or {})
    if _get(props, "platform", "enabled") is False:
        b.note("platform.enabled is false: Easy Auth was switched off; authgate applies "
               "[gateway] as written")
    if _get(props, "platform", "configFilePath"):
        b.note("platform.configFilePath: the settings live in that file; import it instead")
    return Imported(_render(b, source), b.notes)


def _global(b: _Builder, gv: dict[str, Any]) -> None:
    action = str(_get(gv, "unauthenticatedClientAction") or "RedirectToLoginPage")
    if not _get(gv, "requireAuthentication"):
        b.set("gateway", "unauthenticated_action", "allow", "requireAuthentication is false")
    elif action.lower() in ACTIONS:
        b.set("gateway", "unauthenticated_action", ACTIONS[action.lower()], action)
    else:
        b.note(f"globalValidation.unauthenticatedClientAction {action!r} is unknown")
    provider = _get(gv, "redirectToProvider")
    if provider:
        name = PRESETS.get(str(provider).lower(), _name(str(provider)))
        if "default_provider" in {f.name for f in fields(GatewaySettings)}:
            b.set("gateway", "default_provider", name, "redirectToProvider")
        else:
            b.comment("gateway", f"default_provider = {to_toml_value(name)}  "
                      "# redirectToProvider (needs an authgate with gateway.default_provider)")
            b.note("globalValidation.redirectToProvider: this authgate has no "
                   "gateway.default_provider; with one provider it is the default anyway")
    paths = _get(gv, "excludedPaths")
    if isinstance(paths, list):
        b.set("gateway", "excluded_paths", [str(p) for p in paths], "excludedPaths")


def _name(raw: str) -> str:
    name = re.sub(r"[^a-z0-9_-]", "-", raw.lower()).strip("-_")[:32]
    return name or "oidc"


def _secret(b: _Builder, where: str, reg: dict[str, Any], *names: str) -> dict[str, Any]:
    for n in names:
        setting = _get(reg, *n.split("."))
        if setting:
            return {"client_secret_env": str(setting)}
    if any("secret" in k.lower() and not k.lower().endswith("settingname") for k in reg):
        b.note(f"{where}: a secret was given inline and was NOT copied; put it in an "
               "environment variable and name it in client_secret_env")
    if any("certificate" in k.lower() for k in reg):
        b.note(f"{where}: certificate credentials are not supported; use a client secret")
    return {}


def _providers(b: _Builder, ips: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for key, cfg in ips.items():
        where = f"identityProviders.{key}"
        if not isinstance(cfg, dict):
            continue
        if key.lower() == "customopenidconnectproviders":
            out.extend((_name(n), _custom(b, f"{where}.{n}", c)) for n, c in cfg.items()
                       if isinstance(c, dict))
            continue
        kind = PRESETS.get(key.lower())
        if kind is None:
            b.note(f"{where}: no authgate equivalent")
            continue
        reg = _get(cfg, "registration") or {}
        table: dict[str, Any] = {"type": kind}
        if _get(cfg, "enabled") is False:
            table["enabled"] = False
        client_id = _get(reg, "clientId") or _get(reg, "appId") or _get(reg, "consumerKey")
        if client_id:
            table["client_id"] = str(client_id)
        table.update(_secret(b, where, reg, "clientSecretSettingName", "appSecretSettingName",
                             "consumerSecretSettingName"))
        if kind == "twitter":  # OAuth 1.0a consumer keys are not OAuth 2.0 client credentials
            b.note(f"{where}: Easy Auth used OAuth 1.0a (consumerKey); authgate uses Twitter's "
                   "OAuth 2.0 -- finish the commented [providers.twitter] with its client id")
            table["client_id"] = "<OAuth 2.0 client id>"
            b.blocks += ["[providers.twitter]", *(f"{_key(k)} = {to_toml_value(v)}"
                                                  for k, v in table.items())]
            continue
        if kind == "facebook" and _get(cfg, "graphApiVersion"):
            table["graph_version"] = str(_get(cfg, "graphApiVersion"))
        if kind == "aad":
            issuer = str(_get(reg, "openIdIssuer") or "")
            m = re.match(r"https://[^/]+/([^/]+)", issuer)
            if m:
                table["tenant"] = m.group(1)
            else:
                b.note(f"{where}.registration.openIdIssuer missing: tenant defaults to common")
            for param in _get(cfg, "login", "loginParameters") or []:
                k, _, v = str(param).partition("=")
                if k.strip() == "scope":
                    table["scopes"] = v.split()
                elif k.strip() in _PROTECTED:
                    b.note(f"{where}.login.loginParameters: {k.strip()} is set by authgate")
                elif k.strip():
                    table.setdefault("login_params", {})[k.strip()] = v.strip()
        _common(b, where, cfg, table, oidc=kind in ("aad", "google", "apple"))
        out.append((kind, table))
    return out


def _custom(b: _Builder, where: str, cfg: dict[str, Any]) -> dict[str, Any]:
    reg = _get(cfg, "registration") or {}
    table: dict[str, Any] = {"type": "oidc"}
    if _get(cfg, "enabled") is False:
        table["enabled"] = False
    if _get(reg, "clientId"):
        table["client_id"] = str(_get(reg, "clientId"))
    table.update(_secret(b, where, _get(reg, "clientCredential") or {}, "clientSecretSettingName"))
    oc = _get(reg, "openIdConnectConfiguration") or {}
    well_known = str(_get(oc, "wellKnownOpenIdConfiguration") or "")
    if well_known.endswith(_WELL_KNOWN):
        table["issuer"] = well_known[: -len(_WELL_KNOWN)]
    elif well_known:
        table["discovery_url"] = well_known
        b.note(f"{where}: set issuer to the provider's issuer (discovery is at {well_known})")
    for src, dst in (("issuer", "issuer"), ("authorizationEndpoint", "authorization_endpoint"),
                     ("tokenEndpoint", "token_endpoint")):
        if _get(oc, src) and dst not in table:
            table[dst] = str(_get(oc, src))
    if _get(oc, "certificationUri"):
        b.note(f"{where}: certificationUri (JWKS) is read from discovery by authgate")
    names = _get(cfg, "login", "loginParameterNames") or []
    if names:
        table["allowed_login_params"] = [str(n) for n in names if str(n) not in _PROTECTED]
    if _get(cfg, "login", "nameClaimType"):
        b.note(f"{where}.login.nameClaimType: authgate takes the name from the standard claims")
    _common(b, where, cfg, table, oidc=True)
    return table


def _common(b: _Builder, where: str, cfg: dict[str, Any], table: dict[str, Any],
            *, oidc: bool) -> None:
    scopes = _get(cfg, "login", "scopes")
    if isinstance(scopes, list) and scopes and "scopes" not in table:
        table["scopes"] = [str(s) for s in scopes]
    audiences = _get(cfg, "validation", "allowedAudiences")
    if audiences and oidc:
        table["allowed_audiences"] = [str(a) for a in audiences]
    for rule in ("jwtClaimChecks", "defaultAuthorizationPolicy"):
        if _get(cfg, "validation", rule):
            b.note(f"{where}.validation.{rule}: authorization rules are NOT enforced by "
                   "authgate; check them in the app (X-MS-CLIENT-PRINCIPAL)")
    if _get(cfg, "login", "disableWWWAuthenticate"):
        b.note(f"{where}.login.disableWWWAuthenticate: authgate always sends WWW-Authenticate")


def _login(b: _Builder, login: dict[str, Any]) -> None:
    store = _get(login, "tokenStore") or {}
    if _get(store, "enabled") is not None:
        b.set("gateway", "token_store", bool(_get(store, "enabled")), "tokenStore.enabled")
    hours = _get(store, "tokenRefreshExtensionHours")
    if isinstance(hours, int | float):
        b.set("session", "token_refresh_extension_hours", hours, "tokenRefreshExtensionHours")
    if _get(store, "azureBlobStorage", "sasUrlSettingName"):
        b.note("login.tokenStore.azureBlobStorage: set store = \"azureblob://...\" (or "
               "AUTHGATE_STORE) from the SAS URL in app setting "
               f"{_get(store, 'azureBlobStorage', 'sasUrlSettingName')}")
    if _get(store, "fileSystem", "directory"):
        b.note("login.tokenStore.fileSystem.directory: authgate keeps tokens in its store; "
               "use store = \"file://<directory>\" for one encrypted file per user")
    expiry = _get(login, "cookieExpiration") or {}
    convention = str(_get(expiry, "convention") or "FixedTime")
    if convention.lower() == "fixedtime":
        b.set("session", "sliding", False, "cookieExpiration.convention FixedTime")
    else:
        b.note(f"login.cookieExpiration.convention {convention}: authgate cookies last "
               "session.cookie_lifetime (set sliding = true to extend them with use)")
    span = _get(expiry, "timeToExpiration")
    if span:
        try:
            b.set("session", "cookie_lifetime", _duration(_hours(str(span))), str(span))
        except ValueError:
            b.note(f"login.cookieExpiration.timeToExpiration {span!r} is not hh:mm:ss")
    urls = _get(login, "allowedExternalRedirectUrls")
    if isinstance(urls, list):
        b.set("gateway", "allowed_external_redirect_urls", [str(u) for u in urls],
              "allowedExternalRedirectUrls")
    if _get(login, "nonce", "validateNonce") is False:
        b.note("login.nonce.validateNonce false: authgate always validates the nonce")
    if _get(login, "nonce", "nonceExpirationInterval"):
        b.note("login.nonce.nonceExpirationInterval: authgate's login state has a fixed lifetime")
    if _get(login, "preserveUrlFragmentsForLogins"):
        b.note("login.preserveUrlFragmentsForLogins: URL fragments are not preserved")
    if _get(login, "routes", "logoutEndpoint"):
        b.note("login.routes.logoutEndpoint: authgate's logout is always /.auth/logout")


def _http(b: _Builder, hs: dict[str, Any]) -> None:
    if _get(hs, "requireHttps") is False:
        b.note("httpSettings.requireHttps false: authgate warns when public_url is plain http")
    prefix = _get(hs, "routes", "apiPrefix")
    if prefix and str(prefix).rstrip("/") != "/.auth":
        b.note(f"httpSettings.routes.apiPrefix {prefix}: authgate always serves /.auth")
    convention = str(_get(hs, "forwardProxy", "convention") or "NoProxy")
    if convention.lower() == "standard":
        b.comment("gateway", "trusted_proxies = []  # forwardProxy Standard: list your "
                  "proxy's addresses so its X-Forwarded-* headers are believed")
        b.note("httpSettings.forwardProxy Standard: list the proxy's addresses in "
               "gateway.trusted_proxies")
    elif convention.lower() == "custom":
        b.note("httpSettings.forwardProxy Custom: custom forwarding header names are not "
               "supported; authgate reads X-Forwarded-* and Forwarded from trusted_proxies")


def _render(b: _Builder, source: str) -> str:
    lines = [f"# authgate configuration imported from Easy Auth v2 settings ({source})",
             "# by `authgate config import-easyauth`. Review it, then set the two below.", "",
             '# public_url = "https://app.example.com"   # where users reach the app',
             '# upstream = "http://127.0.0.1:8000"       # the app behind the gateway']
    for table in ("session", "gateway", *sorted(t for t in b.tables if t.startswith("providers."))):
        if table in b.tables:
            name = ".".join(_key(p) for p in table.split(".", 1))
            lines += ["", f"[{name}]", *b.tables[table]]
    if b.blocks:
        lines += ["", "# To finish by hand:", *(f"# {line}" for line in b.blocks)]
    if b.notes:
        lines += ["", "# Not imported (no authgate equivalent, or needs you):"]
        lines += ["# - " + "".join(c if c.isprintable() else " " for c in n) for n in b.notes]
    return "\n".join(lines) + "\n"
