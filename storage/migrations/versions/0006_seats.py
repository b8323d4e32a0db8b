"""The centre's seats: one row per seat credential, stored as its SHA-256.

Revision ID: 0006_seats
Revises: 0005_outbox_parking
Create Date: 2026-12-03 13:30:00

A seat reaches the centre's seat API with a random token the IT person gave it
(``cti-agent seats add``); the centre keeps only the token's hash, so a copy
of the database opens no seat.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_seats"
down_revision: str | Sequence[str] | None = "0005_outbox_parking"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Create ``seats``."""
    op.create_table(
        "seats",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("team", sa.String(length=100), nullable=True),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("backlog", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_seats")),
        sa.UniqueConstraint("name", name=op.f("uq_seats_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_seats_token_hash")),
    )


def downgrade() -> None:
    """Drop ``seats``."""
    op.drop_table("seats")
