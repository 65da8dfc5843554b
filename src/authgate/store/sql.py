"""The relational schema shared by the SQLite and PostgreSQL backends, and its migrations.

One table holds every record; the indexes cover every lookup the contract
makes (primary key for id lookups, ``grant_id`` for family revocation,
``(kind, subject)`` for per-user listings, ``expires_at`` for purge), so no
hot path scans the table. The schema is owned by Alembic
(``authgate/store/migrations``) and applied automatically on start.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

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
