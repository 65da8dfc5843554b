"""How the command line fails: one line, the right exit code, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from authgate.cli import main

from .conftest import CLI, assert_one_error


@pytest.mark.parametrize("argv", [[], ["bogus"], ["users"], ["users", "add"],
                                  ["clients", "add"], ["audit"], ["serve", "--port", "x"]])
def test_usage_errors(bare: CLI, argv: list[str]) -> None:
    """Missing or unknown commands and arguments: exit 2 and a one-line reason."""
    assert_one_error(bare(*argv), 2, "see 'authgate")


def test_help_still_works(bare: CLI, capsys: pytest.CaptureFixture[str]) -> None:
    """--help prints usage and exits 0, for the root and for nested commands."""
    for argv in (["--help"], ["clients", "add", "--help"]):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 0
        assert "usage: authgate" in capsys.readouterr().out


def test_commands_need_an_installation(bare: CLI, home: Path) -> None:
    """Without keys a management command refuses (exit 2) instead of creating a new install."""
    assert_one_error(bare("users", "list"), 2, "authgate init")
    assert not (home / ".authgate").exists()


def test_missing_config_file(bare: CLI) -> None:
    """A --config that does not exist is a configuration error."""
    assert_one_error(bare("--config", "nope.toml", "users", "list"), 2, "nope.toml")


def test_broken_config_file(bare: CLI, home: Path) -> None:
    """A TOML syntax error or unknown setting is reported on one line."""
    (home / "authgate.toml").write_text("public_url = \n")
    assert_one_error(bare("users", "list"), 2, "authgate.toml")
    (home / "authgate.toml").write_text("colour = 'blue'\n")
    assert_one_error(bare("users", "list"), 2, "colour")


def test_global_options_after_the_command(bare: CLI, home: Path) -> None:
    """--data-dir works before or after the command, and AUTHGATE_DATA_DIR too."""
    bare.ok("init", "--data-dir", "d1")
    (home / "authgate.toml").unlink()
    bare.ok("--data-dir", "d1", "users", "list")
    bare.ok("users", "list", "--data-dir", "d1")
    bare.monkeypatch.setenv("AUTHGATE_DATA_DIR", str(home / "d1"))
    bare.ok("users", "list")


def test_unreadable_data_is_an_error_not_a_traceback(cli: CLI, home: Path) -> None:
    """A keys file that is not JSON: one line naming it."""
    (home / ".authgate" / "keys.json").write_text("{not json")
    assert_one_error(cli("users", "list"), 2, "keys.json")
