"""Park, don't block: the outbox counts the centre's refusals of an entry and when it was parked.

Revision ID: 0005_outbox_parking
Revises: 0004_search_indexes
Create Date: 2026-12-03 13:45:00

``rejections`` counts the times the centre refused the entry's row for a
permanent reason (a constraint, an encoding); after ``storage.faults.PARK_AFTER``
of them the entry is parked (``parked``, ``parked_at``) and the outbox behind
it flows on. ``attempts`` goes on counting every failed try, outages included,
so an outage never parks a row. ``cti-agent sync --retry-parked`` clears both.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_outbox_parking"
down_revision: str | Sequence[str] | None = "0004_search_indexes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    """Add ``outbox.rejections`` and ``outbox.parked_at``."""
    op.add_column("outbox", sa.Column("rejections", sa.Integer(), server_default="0", nullable=False))
    op.add_column("outbox", sa.Column("parked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    """Drop them again."""
    with op.batch_alter_table("outbox") as batch:
        batch.drop_column("parked_at")
        batch.drop_column("rejections")
