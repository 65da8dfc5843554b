"""Configuration: TOML, environment overrides, durations, validation, loud warnings."""

from __future__ import annotations

from pathlib import Path

import pytest

from authgate.config import load_settings, parse_duration
from authgate.errors import ConfigError


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("5m", 300), ("8h", 28800),
                                                ("14d", 1209600), ("90", 90), (45, 45), ("1.5h", 5400)])
def test_durations(text: str | int, seconds: float) -> None:
    """Durations accept seconds or a unit."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["soon", "-5s", "5 parsecs", ""])
def test_bad_durations(bad: str) -> None:
    """Nonsense durations are a ConfigError naming the setting."""
    with pytest.raises(ConfigError, match="grace"):
        parse_duration(bad, "grace")


def test_defaults_without_any_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No config at all: the embedded default (SQLite under .authgate)."""
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={})
    assert s.store_url == "sqlite:///.authgate/authgate.db"
    assert s.tokens.access_token_lifetime == 3600 and s.tokens.refresh_grace == 30
    assert s.tokens.refresh_absolute_lifetime == 90 * 86400
    assert s.tokens.refresh_inactivity_lifetime == 14 * 86400
    assert s.issuer == "http://localhost:8080/.auth"
    assert s.warnings() == []


def test_file_then_environment(tmp_path: Path) -> None:
    """The environment overrides the file, section by section."""
    cfg = tmp_path / "authgate.toml"
    cfg.write_text('public_url = "https://app.example"\n[tokens]\nrefresh_grace = "10s"\n'
                   'access_token_lifetime = "15m"\n[gateway]\nexcluded_paths = ["/a"]\n')
    s = load_settings(cfg, environ={"AUTHGATE_TOKENS__REFRESH_GRACE": "5s",
                                    "AUTHGATE_GATEWAY__EXCLUDED_PATHS": "/x,/y"})
    assert s.public_url == "https://app.example"
    assert s.tokens.refresh_grace == 5 and s.tokens.access_token_lifetime == 900
    assert s.gateway.excluded_paths == ["/x", "/y"]


@pytest.mark.parametrize(("toml", "message"), [
    ('nonsense = 1', "unknown setting"),
    ('[tokens]\nbogus = 1', "tokens.bogus"),
    ('public_url = "ftp://x"', "public_url"),
    ('[gateway]\nunauthenticated_action = "maybe"', "unauthenticated_action"),
    ('[tokens]\nsigning_alg = "HS256"', "signing_alg"),
    ('public_url = ', "authgate.toml"),
])
def test_invalid_config_is_a_clear_error(tmp_path: Path, toml: str, message: str) -> None:
    """Bad settings name themselves in the error."""
    cfg = tmp_path / "authgate.toml"
    cfg.write_text(toml)
    with pytest.raises(ConfigError, match=message):
        load_settings(cfg, environ={})


def test_insecure_public_url_warns(tmp_path: Path) -> None:
    """Plain http outside localhost produces a loud warning."""
    s = load_settings(environ={"AUTHGATE_PUBLIC_URL": "http://app.example.com"})
    assert any("plain http" in w for w in s.warnings())
    assert not load_settings(environ={"AUTHGATE_PUBLIC_URL": "http://127.0.0.1:9000"}).warnings()



def test_harness_variables_are_not_settings_but_typos_still_fail() -> None:
    """``AUTHGATE_TEST_*``/``AUTHGATE_BENCH_*`` belong to the test suite and `make bench`;
    any other unknown ``AUTHGATE_*`` variable is a mistake worth stopping for."""
    s = load_settings(environ={"AUTHGATE_BENCH_POSTGRES": "postgresql://x/y",
                               "AUTHGATE_TEST_CACHE": "/tmp/c"})
    assert s.public_url
    with pytest.raises(ConfigError, match="unknown setting 'publc_url'"):
        load_settings(environ={"AUTHGATE_PUBLC_URL": "https://app.example.com"})
