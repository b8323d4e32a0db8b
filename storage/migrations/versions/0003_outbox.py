"""Team mode: the outbox, verified recording uploads and the sync's state; SQLite triggers fill the outbox.

Revision ID: 0003_outbox
Revises: 0002_recording_flags
Create Date: 2026-11-27 10:30:00

The triggers are created on SQLite only: a seat's local database is SQLite,
and the central PostgreSQL must not queue its own writes for a sync that never
reads them. They fire only while ``sync_state`` holds ``enabled`` (set when a
seat first syncs), so a single-machine seat's outbox stays empty. See
``storage/outbox.py`` for the design.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_outbox"
down_revision: str | Sequence[str] | None = "0002_recording_flags"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Frozen copies of the triggers described in storage/outbox.py: each queues the row it changed.
_TRIGGERS: dict[str, str] = {
    "outbox_calls_insert": (
        "CREATE TRIGGER outbox_calls_insert AFTER INSERT ON calls "
        "WHEN EXISTS (SELECT 1 FROM sync_state WHERE name = 'enabled') "
        "BEGIN INSERT INTO outbox (kind, ref) VALUES ('call', NEW.uuid); END"
    ),
    "outbox_calls_update": (
        "CREATE TRIGGER outbox_calls_update AFTER UPDATE ON calls "
        "WHEN EXISTS (SELECT 1 FROM sync_state WHERE name = 'enabled') "
        "BEGIN INSERT INTO outbox (kind, ref) VALUES ('call', NEW.uuid); END"
    ),
    "outbox_recordings_insert": (
        "CREATE TRIGGER outbox_recordings_insert AFTER INSERT ON recordings "
        "WHEN EXISTS (SELECT 1 FROM sync_state WHERE name = 'enabled') "
        "BEGIN INSERT INTO outbox (kind, ref) VALUES ('recording', CAST(NEW.id AS TEXT)); END"
    ),
    "outbox_recordings_update": (
        "CREATE TRIGGER outbox_recordings_update AFTER UPDATE ON recordings "
        "WHEN EXISTS (SELECT 1 FROM sync_state WHERE name = 'enabled') "
        "BEGIN INSERT INTO outbox (kind, ref) VALUES ('recording', CAST(NEW.id AS TEXT)); END"
    ),
}


def upgrade() -> None:
    """Create ``outbox``, ``recording_uploads``, ``sync_state``; on SQLite, the outbox triggers."""
    op.create_table(
        "outbox",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("ref", sa.String(64), nullable=False),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            server_default=sa.text("CURRENT_TIMESTAMP"),
            nullable=False,
        ),
        sa.Column("attempts", sa.Integer(), server_default="0", nullable=False),
        sa.Column("parked", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
    )
    op.create_index(op.f("ix_outbox_kind_ref"), "outbox", ["kind", "ref"])
    op.create_table(
        "recording_uploads",
        sa.Column("recording_id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("bytes", sa.BigInteger(), nullable=False),
        sa.Column("verified_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("recording_id", name=op.f("pk_recording_uploads")),
    )
    op.create_table(
        "sync_state",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_sync_state")),
    )
    if op.get_bind().dialect.name == "sqlite":
        for statement in _TRIGGERS.values():
            op.execute(statement)


def downgrade() -> None:
    """Drop the triggers and the three tables."""
    if op.get_bind().dialect.name == "sqlite":
        for name in _TRIGGERS:
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}"))
    op.drop_table("sync_state")
    op.drop_table("recording_uploads")
    op.drop_index(op.f("ix_outbox_kind_ref"), table_name="outbox")
    op.drop_table("outbox")
