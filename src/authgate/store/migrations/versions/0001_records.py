"""The records table.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "authgate_records",
        sa.Column("kind", sa.String(32), primary_key=True),
        sa.Column("id", sa.String(255), primary_key=True),
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
