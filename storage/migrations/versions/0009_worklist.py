"""The rep's worklist: a seat's rep, each lead's last disposition and next call, the dispositions.

Revision ID: 0009_worklist
Revises: 0008_leads
Create Date: 2026-12-04 21:30:00

A seat's credential opens its rep's worklist (``seats.rep``). A rep's disposition of a call
(no answer, call back at..., deal) is a row of ``dispositions``, written on the seat first and
sent by its outbox (an SQLite trigger queues it, as for calls), then applied at the centre to
the lead's ``last_code``, ``last_at``, ``next_at`` and ``closed_at``.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009_worklist"
down_revision: str | Sequence[str] | None = "0008_leads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

#: Insert only: a seat notes the centre's answer (received_at, conflict) in the row afterwards,
#: and that must not send it again.
_TRIGGER = (
    "CREATE TRIGGER outbox_dispositions_insert AFTER INSERT ON dispositions "
    "WHEN EXISTS (SELECT 1 FROM sync_state WHERE name = 'enabled') "
    "BEGIN INSERT INTO outbox (kind, ref) VALUES ('disposition', NEW.uuid); END"
)


def upgrade() -> None:
    """Add ``seats.rep``, the leads' disposition columns, ``dispositions`` and its outbox trigger."""
    with op.batch_alter_table("seats") as batch:
        batch.add_column(sa.Column("rep", sa.String(length=100), nullable=True))
    with op.batch_alter_table("leads") as batch:
        batch.add_column(sa.Column("last_code", sa.String(length=32), nullable=True))
        batch.add_column(sa.Column("last_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("next_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True))
    op.create_index(op.f("ix_leads_next_at"), "leads", ["next_at"])
    op.create_table(
        "dispositions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("uuid", sa.String(length=36), nullable=False),
        sa.Column("seat", sa.String(length=64), nullable=True),
        sa.Column("rep", sa.String(length=100), nullable=True),
        sa.Column("lead_id", sa.Integer(), nullable=True),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("follow_up_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("call_uuid", sa.String(length=36), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("conflict", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispositions")),
        sa.UniqueConstraint("uuid", name=op.f("uq_dispositions_uuid")),
    )
    op.create_index(op.f("ix_dispositions_lead_id"), "dispositions", ["lead_id"])
    op.create_index(op.f("ix_dispositions_customer_id"), "dispositions", ["customer_id"])
    if op.get_bind().dialect.name == "sqlite":
        op.execute(_TRIGGER)


def downgrade() -> None:
    """Drop the trigger, ``dispositions`` and the added columns."""
    if op.get_bind().dialect.name == "sqlite":
        op.execute(sa.text("DROP TRIGGER IF EXISTS outbox_dispositions_insert"))
    op.drop_table("dispositions")
    op.drop_index(op.f("ix_leads_next_at"), table_name="leads")
    with op.batch_alter_table("leads") as batch:
        for column in ("closed_at", "next_at", "last_at", "last_code"):
            batch.drop_column(column)
    with op.batch_alter_table("seats") as batch:
        batch.drop_column("rep")
