"""Importing Easy Auth v2 settings: the TOML loads, builds providers, and keeps every meaning."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

import pytest

from authgate.cli import config_cmd
from authgate.cli._common import ArgumentParser, CLIError
from authgate.clock import FrozenClock
from authgate.config import load_settings
from authgate.easyauth import import_easyauth, load_document, to_toml_value
from authgate.errors import ConfigError
from authgate.gateway import Gateway

from ..support import open_gate

SAMPLE = Path(__file__).parent / "data" / "easyauth_authsettingsV2.json"
SECRETS = ("MICROSOFT_PROVIDER_AUTHENTICATION_SECRET", "GOOGLE_PROVIDER_AUTHENTICATION_SECRET",
           "FACEBOOK_PROVIDER_AUTHENTICATION_SECRET", "APPLE_GENERATED_CLIENT_SECRET",
           "OKTA_CORP_SECRET")


def _imported() -> tuple[dict[str, Any], list[str], str]:
    result = import_easyauth(load_document(SAMPLE), source=SAMPLE.name)
    return tomllib.loads(result.toml), result.notes, result.toml


def test_global_validation_maps_to_gateway_settings() -> None:
    """RedirectToLoginPage, excluded paths, token store, redirect URLs, cookie lifetime."""
    doc, _notes, _text = _imported()
    gw, session = doc["gateway"], doc["session"]
    assert gw["unauthenticated_action"] == "redirect"
    assert gw["excluded_paths"] == ["/health", "/api/public/*", '/say "hi"\\now']
    assert gw["token_store"] is True
    assert gw["allowed_external_redirect_urls"] == ["https://mobile.contoso.com/auth/done",
                                                     "contoso-app://callback"]
    assert session == {"token_refresh_extension_hours": 48.0, "sliding": False,
                       "cookie_lifetime": "1590m"}


def test_identity_providers_map_to_provider_tables() -> None:
    """aad with its tenant, presets, custom OIDC by issuer; secrets by setting name only."""
    doc, _notes, text = _imported()
    p = doc["providers"]
    assert p["aad"] == {
        "type": "aad", "client_id": "3a7e2b1c-5d4f-4e6a-9b8c-0d1e2f3a4b5c",
        "client_secret_env": "MICROSOFT_PROVIDER_AUTHENTICATION_SECRET",
        "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "scopes": ["openid", "profile", "email", "offline_access"],
        "login_params": {"domain_hint": "contoso.com"},
        "allowed_audiences": ["api://3a7e2b1c-5d4f-4e6a-9b8c-0d1e2f3a4b5c"]}
    assert p["okta-corp"]["issuer"] == "https://contoso.okta.com/oauth2/default"
    assert p["okta-corp"]["client_secret_env"] == "OKTA_CORP_SECRET"
    assert p["okta-corp"]["allowed_login_params"] == ["prompt"]
    assert p["facebook"]["enabled"] is False and p["facebook"]["graph_version"] == "v15.0"
    assert p["google"]["scopes"] == ["openid", "email", "profile"]
    assert "twitter" not in p and "# [providers.twitter]" in text
    assert "inline-secret-must-not-be-copied" not in text


def test_what_cannot_be_mapped_is_listed() -> None:
    """Authorization rules, inline secrets, Twitter's OAuth 1.0a and the rest are reported."""
    _doc, notes, text = _imported()
    joined = "\n".join(notes)
    for expected in ("jwtClaimChecks", "defaultAuthorizationPolicy", "inline and was NOT copied",
                     "OAuth 1.0a", "logoutEndpoint", "preserveUrlFragmentsForLogins",
                     "forwardProxy Standard", "response_type is set by authgate"):
        assert expected in joined, expected
    assert all(f"# - {n}" in text for n in notes)


async def test_imported_toml_loads_and_builds_every_provider(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """authgate reads the result as is: settings validate and each provider is constructed."""
    for name in SECRETS:
        monkeypatch.setenv(name, "secret-from-env")
    path = tmp_path / "authgate.toml"
    path.write_text(import_easyauth(load_document(SAMPLE)).toml, encoding="utf-8")
    settings = load_settings(path, environ={}, overrides={
        "store": f"sqlite:///{tmp_path}/a.db", "data_dir": str(tmp_path)})
    gate = await open_gate(tmp_path, FrozenClock(), settings)
    gw = Gateway(gate)
    try:
        assert sorted(gw.providers) == ["aad", "apple", "github", "google", "local", "okta-corp"]
    finally:
        await gw.close()
        await gate.close()


def test_whole_resource_and_properties_only_give_the_same_result() -> None:
    """The ARM resource or just its properties object (auth.json) are both accepted."""
    doc = load_document(SAMPLE)
    assert import_easyauth(doc).toml == import_easyauth(doc["properties"]).toml


@pytest.mark.parametrize(("validation", "action"), [
    ({"requireAuthentication": False, "unauthenticatedClientAction": "Return401"}, "allow"),
    ({"requireAuthentication": True, "unauthenticatedClientAction": "AllowAnonymous"}, "allow"),
    ({"requireAuthentication": True, "unauthenticatedClientAction": "Return401"}, "401"),
    ({"requireAuthentication": True, "unauthenticatedClientAction": "Return403"}, "403"),
])
def test_unauthenticated_client_actions(validation: dict[str, Any], action: str) -> None:
    """requireAuthentication false always means anonymous requests pass."""
    out = tomllib.loads(import_easyauth({"globalValidation": validation}).toml)
    assert out["gateway"]["unauthenticated_action"] == action


def test_strings_are_escaped_for_toml() -> None:
    """Quotes, backslashes and control characters survive the trip through TOML."""
    nasty = 'a"b\\c\nd\te\x01f\x7fg ü'
    assert tomllib.loads(f"v = {to_toml_value(nasty)}")["v"] == nasty
    out = import_easyauth({"globalValidation": {"excludedPaths": [nasty]},
                           "identityProviders": {"customOpenIdConnectProviders": {
                               "x\ny": {"registration": {"clientId": nasty}}}}})
    doc = tomllib.loads(out.toml)
    assert doc["gateway"]["excluded_paths"] == [nasty]
    assert doc["providers"]["x-y"]["client_id"] == nasty


def test_v1_or_foreign_documents_are_refused(tmp_path: Path) -> None:
    """Easy Auth v1 settings and non-JSON files are clear configuration errors."""
    with pytest.raises(ConfigError, match="v2"):
        import_easyauth({"enabled": True, "unauthenticatedClientAction": "RedirectToLoginPage"})
    bad = tmp_path / "bad.json"
    bad.write_text("{nope", encoding="utf-8")
    with pytest.raises(ConfigError, match="not JSON"):
        load_document(bad)


def _run(argv: list[str]) -> int:
    parser = ArgumentParser(prog="authgate")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=ArgumentParser)
    config_cmd.register(sub, [])
    args = parser.parse_args(argv)
    code: int = args.func(args)
    return code


def test_cli_writes_the_file_and_refuses_to_overwrite(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`config import-easyauth FILE --output PATH`: TOML written, notes on stderr, no clobbering."""
    out = tmp_path / "authgate.toml"
    assert _run(["config", "import-easyauth", str(SAMPLE), "--output", str(out)]) == 0
    assert tomllib.loads(out.read_text(encoding="utf-8"))["gateway"]["token_store"] is True
    assert "jwtClaimChecks" in capsys.readouterr().err
    with pytest.raises(CLIError, match="exists"):
        _run(["config", "import-easyauth", str(SAMPLE), "--output", str(out)])
    assert _run(["config", "import-easyauth", str(SAMPLE), "--output", str(out), "--force"]) == 0
    assert _run(["config", "import-easyauth", str(SAMPLE)]) == 0
    assert json.dumps("OKTA_CORP_SECRET") in capsys.readouterr().out
