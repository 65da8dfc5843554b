"""``authgate init``: config file, key material, store, refusal to overwrite."""

from __future__ import annotations

import stat
import tomllib
from dataclasses import fields, is_dataclass
from pathlib import Path
from typing import Any

from authgate.config import Settings, load_settings

from .conftest import CLI, assert_one_error


def _setting_names(obj: Any, prefix: str = "") -> list[str]:
    out = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        if f.name in ("source", "providers"):
            continue
        if is_dataclass(value):
            out += _setting_names(value, f"{prefix}{f.name}.")
        else:
            out.append(prefix + f.name)
    return out


def test_init_writes_config_keys_and_store(bare: CLI, home: Path) -> None:
    """init creates authgate.toml, a 0600 keys.json, the SQLite store and a signing key."""
    result = bare.ok("init")
    assert "wrote authgate.toml" in result.out
    assert (home / "authgate.toml").is_file()
    keys = home / ".authgate" / "keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600
    assert stat.S_IMODE((home / ".authgate").stat().st_mode) == 0o700
    assert (home / ".authgate" / "authgate.db").is_file()
    assert "(ES256, active)" in result.out
    listed = bare.ok("keys", "list").out
    assert "active" in listed


def test_init_config_loads_back_to_the_defaults(bare: CLI, home: Path) -> None:
    """The written file is valid TOML whose values equal the built-in defaults."""
    bare.ok("init")
    loaded = load_settings(home / "authgate.toml", environ={})
    loaded.source = Settings().source
    assert loaded == Settings()


def test_init_config_mentions_every_setting_with_a_comment(bare: CLI, home: Path) -> None:
    """Every setting of config.py appears (set or commented out), explained above it."""
    bare.ok("init")
    text = (home / "authgate.toml").read_text()
    lines = text.splitlines()
    section = ""
    seen = set()
    for i, line in enumerate(lines):
        if line.startswith("[") and not line.startswith("[providers"):
            section = line.strip("[]") + "."
        key = line.removeprefix("# ").split(" = ")[0]
        if " = " in line and not line.startswith("# [") and not key.startswith(" "):
            seen.add(section + key)
            assert lines[i - 1].startswith("#"), f"{key} has no explanation"
    assert set(_setting_names(Settings())) <= seen
    assert "# [providers.corp]" in text
    assert "providers" not in tomllib.loads(text)


def test_init_never_writes_a_secret(bare: CLI, home: Path, monkeypatch: Any) -> None:
    """A session signing key from the environment stays out of the file."""
    monkeypatch.setenv("AUTHGATE_SESSION__SIGNING_KEY", "ab" * 32)
    bare.ok("init")
    assert "ab" * 32 not in (home / "authgate.toml").read_text()


def test_init_refuses_to_overwrite(cli: CLI, home: Path) -> None:
    """A second init fails with one line and leaves the file alone."""
    (home / "authgate.toml").write_text("# mine\n")
    result = cli("init")
    assert_one_error(result, 1, "already exists", "--force")
    assert (home / "authgate.toml").read_text() == "# mine\n"


def test_init_force_rewrites_config_but_keeps_keys(cli: CLI, home: Path) -> None:
    """--force replaces the config; the key material that protects the data is kept."""
    keys = (home / ".authgate" / "keys.json").read_text()
    (home / "authgate.toml").write_text("# mine\n")
    result = cli.ok("init", "--force")
    assert "kept" in result.out
    assert "public_url" in (home / "authgate.toml").read_text()
    assert (home / ".authgate" / "keys.json").read_text() == keys


def test_init_at_config_path_with_data_dir(bare: CLI, home: Path) -> None:
    """--config and --data-dir choose where the file and the data go, and are written in."""
    result = bare.ok("--config", "etc/ag.toml", "init", "--data-dir", "var/ag")
    assert (home / "etc" / "ag.toml").is_file()
    assert (home / "var" / "ag" / "keys.json").is_file()
    assert "authgate --config etc/ag.toml users add NAME" in result.out
    assert load_settings(home / "etc" / "ag.toml", environ={}).data_dir == "var/ag"
    bare.ok("--config", "etc/ag.toml", "users", "list")


def test_init_rejects_bad_environment_without_writing(bare: CLI, home: Path,
                                                      monkeypatch: Any) -> None:
    """A bad AUTHGATE_* variable is a config error (exit 2), and no file is left behind."""
    monkeypatch.setenv("AUTHGATE_TOKENS__SIGNING_ALG", "HS256")
    assert_one_error(bare("init"), 2, "signing_alg")
    assert list(home.iterdir()) == []
