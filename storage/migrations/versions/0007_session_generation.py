"""Console users get a session generation: log-out and a new password end sessions server-side.

Revision ID: 0007_session_generation
Revises: 0006_seats
Create Date: 2026-12-03 17:30:00

A console session is a signed cookie; until now nothing on the server could
take one back before it expired. Every cookie now carries the user's
generation, checked on every request, and log-out or a password change
raises it.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_session_generation"
down_revision: str | Sequence[str] | None = "0006_seats"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``users.session_generation`` (0 for every existing user)."""
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("session_generation", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    """Drop ``users.session_generation``."""
    with op.batch_alter_table("users") as batch:
        batch.drop_column("session_generation")
