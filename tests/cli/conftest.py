"""Fixtures for the command line: ``main(argv)`` in-process over a real SQLite store.

Each test gets a fresh working directory (``tmp_path``) with no ``AUTHGATE_*``
variables, so the CLI finds ``./authgate.toml`` and ``./.authgate/`` exactly
as an operator's shell would.
"""

from __future__ import annotations

import asyncio
import io
import os
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from authgate.cli import main
from authgate.config import load_settings
from authgate.service import AuthGate

T = TypeVar("T")
PASSWORD = "correct horse battery staple"


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def all(self) -> str:
        return self.out + self.err


class CLI:
    """Runs ``authgate ARGV...`` in-process, optionally with a line on stdin."""

    def __init__(self, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch,
                 home: Path) -> None:
        self.capsys = capsys
        self.monkeypatch = monkeypatch
        self.home = home

    def __call__(self, *argv: str, stdin: str | None = None) -> Result:
        self.capsys.readouterr()
        self.monkeypatch.setattr(sys, "stdin", io.StringIO(stdin or ""))
        code = main(list(argv))
        captured = self.capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def ok(self, *argv: str, stdin: str | None = None) -> Result:
        """Run and insist on success."""
        result = self(*argv, stdin=stdin)
        assert result.code == 0, result
        assert result.err == "", result
        return result

    def service(self, fn: Callable[[AuthGate], Awaitable[T]]) -> T:
        """Reach into the same installation through the library, as the server would."""

        async def go() -> T:
            gate = await AuthGate.open(load_settings())
            try:
                return await fn(gate)
            finally:
                await gate.close()

        return asyncio.run(go())


def assert_one_error(result: Result, code: int, *fragments: str) -> None:
    """Failed with ``code`` and exactly one ``authgate: error:`` line, no traceback."""
    assert result.code == code, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("authgate: error: "), lines[0]
    assert "Traceback" not in result.all
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for name in list(os.environ):
        if name.startswith("AUTHGATE_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path) -> CLI:
    """A fresh, initialised installation in the working directory."""
    runner = CLI(capsys, monkeypatch, home)
    runner.ok("init")
    return runner


@pytest.fixture
def bare(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path) -> CLI:
    """A working directory where nothing has been set up yet."""
    return CLI(capsys, monkeypatch, home)


@pytest.fixture
def alice(cli: CLI) -> str:
    """A user ``alice``; returns her id."""
    cli.ok("users", "add", "alice", "--password-stdin", "--email", "alice@example.com",
           stdin=PASSWORD + "\n")
    user_id: str = cli.service(lambda g: _user_id(g, "alice"))
    return user_id


async def _user_id(gate: AuthGate, name: str) -> str:
    user = await gate.accounts.by_username(name)
    assert user is not None
    return user.id
