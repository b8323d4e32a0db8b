"""Recordings: a ``flags`` column for what the completeness checks found.

Revision ID: 0002_recording_flags
Revises: 0001_initial
Create Date: 2026-11-27 00:00:00

``flags`` is a comma-separated list (``silent``, ``one_sided``, ``short``,
``missing``, ``overrun``, ``device_lost``, ``disk_full``, ``io_error``); NULL or
empty when the recording looks whole.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002_recording_flags"
down_revision: str | Sequence[str] | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``recordings.flags``."""
    op.add_column("recordings", sa.Column("flags", sa.Text(), nullable=True))


def downgrade() -> None:
    """Drop ``recordings.flags``."""
    with op.batch_alter_table("recordings") as batch:
        batch.drop_column("flags")
