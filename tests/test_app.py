"""The ASGI app's lifespan as ``authgate serve`` runs it."""

from __future__ import annotations

import gc
from pathlib import Path

import httpx

from authgate.app import create_app

from .live import serve
from .support import make_settings


def test_startup_moves_what_it_built_out_of_the_collectors_full_passes(tmp_path: Path) -> None:
    """A full collection walks every tracked object: with the process' long-lived ones frozen
    after startup, it stops costing tens of milliseconds in the middle of requests."""
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    try:
        with serve(create_app(make_settings(tmp_path))) as base:
            assert gc.get_freeze_count() > 10_000
            assert httpx.get(base + "/.auth/keys", timeout=10).status_code == 200
    finally:
        gc.unfreeze()
