"""Shared test helpers that do not need the web app."""

from __future__ import annotations

import os
from pathlib import Path

from authgate.clock import Clock, FrozenClock
from authgate.config import Settings
from authgate.keystore import LocalKeys, new_sealing_key
from authgate.service import AuthGate


def make_settings(tmp_path: Path, **tokens: float) -> Settings:
    s = Settings(public_url="http://localhost", store=f"sqlite:///{tmp_path}/authgate.db",
                 data_dir=str(tmp_path))
    for k, v in tokens.items():
        setattr(s.tokens, k, v)
    return s


async def open_gate(tmp_path: Path, clock: Clock | None = None, settings: Settings | None = None) -> AuthGate:
    return await AuthGate.open(settings or make_settings(tmp_path), clock=clock or FrozenClock(),
                               local_keys=LocalKeys([new_sealing_key()], os.urandom(32)))
