"""The audit log's event ids."""

from __future__ import annotations

from authgate.audit import AuditLog


def test_audit_ids_keep_order_within_one_millisecond() -> None:
    """Audit events recorded in the same millisecond still list in the order they happened."""
    log = AuditLog.__new__(AuditLog)
    log._last = (0, 0)
    ids = [log._next_id(1_800_000_000.0001) for _ in range(50)]
    assert ids == sorted(ids)
