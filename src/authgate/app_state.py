"""Reaching the running :class:`AuthGate` from a request (kept apart from app.py to avoid import cycles)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request

if TYPE_CHECKING:
    from .service import AuthGate


def gate_of(request: Request) -> AuthGate:
    gate: AuthGate = request.app.state.gate
    return gate
