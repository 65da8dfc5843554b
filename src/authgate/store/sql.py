"""The relational schema shared by the SQLite and PostgreSQL backends, and its migrations.

One table holds every record; the indexes cover every lookup the contract
makes (primary key for id lookups, ``grant_id`` for family revocation,
``(kind, subject)`` for per-user listings, ``expires_at`` for purge), so no
hot path scans the table. The schema is owned by Alembic
(``authgate/store/migrations``) and applied automatically on start.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

if TYPE_CHECKING:
    from .base import Record

# Byte-wise id order on PostgreSQL, whatever the database collation, like every other backend.
_ID = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")

metadata = sa.MetaData()

records = sa.Table(
    "authgate_records",
    metadata,
    sa.Column("kind", sa.String(32), primary_key=True),
    sa.Column("id", _ID, primary_key=True),
    sa.Column("payload", sa.LargeBinary, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("grant_id", sa.String(64), nullable=True),
    sa.Column("subject", sa.String(255), nullable=True),
    sa.Column("consumed_at", sa.Float, nullable=True),
    sa.Index("ix_authgate_records_grant", "grant_id"),
    sa.Index("ix_authgate_records_subject", "kind", "subject"),
    sa.Index("ix_authgate_records_expires", "expires_at"),
)

MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(connection: sa.Connection) -> None:
    """Bring the schema to head on an open (sync) connection."""
    cfg = alembic_config()
    cfg.attributes["connection"] = connection
    command.upgrade(cfg, "head")


# -- statements shared by the SQL backends ---------------------------------------

_pk = (records.c.kind, records.c.id)


def _live(now: float) -> sa.ColumnElement[bool]:
    return sa.or_(records.c.expires_at.is_(None), records.c.expires_at > now)


def row_values(record: Record) -> dict[str, object]:
    return {
        "kind": record.kind,
        "id": record.id,
        "payload": record.payload,
        "expires_at": record.expires_at,
        "grant_id": record.grant_id,
        "subject": record.subject,
        "consumed_at": record.consumed_at,
    }


def to_record(row: sa.Row[Any]) -> Record:
    from .base import Record

    return Record(
        kind=row.kind,
        id=row.id,
        payload=bytes(row.payload),
        expires_at=row.expires_at,
        grant_id=row.grant_id,
        subject=row.subject,
        consumed_at=row.consumed_at,
    )


def upsert_stmt(insert: Any, record: Record) -> sa.Executable:
    """``insert`` is the dialect's ``insert`` (sqlite/postgresql) with ON CONFLICT support."""
    values = row_values(record)
    stmt = insert(records).values(**values)
    out: sa.Executable = stmt.on_conflict_do_update(
        index_elements=list(_pk), set_={k: v for k, v in values.items() if k not in ("kind", "id")}
    )
    return out


def insert_stmt(insert: Any, record: Record, now: float) -> sa.Executable:
    """Create, or take over an expired record with the same id; no-op on a live one."""
    values = row_values(record)
    stmt = insert(records).values(**values)
    out: sa.Executable = stmt.on_conflict_do_update(
        index_elements=list(_pk),
        set_={k: v for k, v in values.items() if k not in ("kind", "id")},
        where=sa.and_(records.c.expires_at.is_not(None), records.c.expires_at <= now),
    )
    return out


def find_stmt(kind: str, id: str, now: float) -> sa.Select[Any]:
    return sa.select(records).where(records.c.kind == kind, records.c.id == id, _live(now))


def consume_stmt(kind: str, id: str, now: float) -> sa.Executable:
    return (
        sa.update(records)
        .where(records.c.kind == kind, records.c.id == id, records.c.consumed_at.is_(None), _live(now))
        .values(consumed_at=now)
        .returning(*records.c)
    )


def destroy_stmt(kind: str, id: str) -> sa.Executable:
    return sa.delete(records).where(records.c.kind == kind, records.c.id == id)


def revoke_by_grant_stmt(grant_id: str) -> sa.Executable:
    return sa.delete(records).where(records.c.grant_id == grant_id)


def by_subject_stmt(kind: str, subject: str, now: float, limit: int) -> sa.Select[Any]:
    return (
        sa.select(records)
        .where(records.c.kind == kind, records.c.subject == subject, _live(now))
        .order_by(records.c.id)
        .limit(limit)
    )


def scan_stmt(kind: str, after: str | None, limit: int) -> sa.Select[Any]:
    stmt = sa.select(records).where(records.c.kind == kind)
    if after is not None:
        stmt = stmt.where(records.c.id > after)
    return stmt.order_by(records.c.id).limit(limit)


def purge_stmt(now: float, limit: int) -> sa.Executable:
    """Delete a bounded batch of expired rows (by primary key, so locks stay short)."""
    victims = (
        sa.select(records.c.kind, records.c.id)
        .where(records.c.expires_at.is_not(None), records.c.expires_at <= now)
        .limit(limit)
    )
    return sa.delete(records).where(sa.tuple_(records.c.kind, records.c.id).in_(victims))


def count_stmt(kind: str | None) -> sa.Select[Any]:
    stmt = sa.select(sa.func.count()).select_from(records)
    return stmt.where(records.c.kind == kind) if kind is not None else stmt
