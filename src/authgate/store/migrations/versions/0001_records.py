"""The records table.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

# Byte-wise id order on PostgreSQL, whatever the database collation, like every other backend.
_ID = sa.String(255).with_variant(sa.String(255, collation="C"), "postgresql")

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authgate_records",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("id", _ID, primary_key=True),
        sa.Column("payload", sa.LargeBinary, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("grant_id", sa.String(64), nullable=True),
        sa.Column("subject", sa.String(255), nullable=True),
        sa.Column("consumed_at", sa.Float, nullable=True),
    )
    op.create_index("ix_authgate_records_grant", "authgate_records", ["grant_id"])
    op.create_index("ix_authgate_records_subject", "authgate_records", ["kind", "subject"])
    op.create_index("ix_authgate_records_expires", "authgate_records", ["expires_at"])


def downgrade() -> None:
    op.drop_table("authgate_records")
