"""Lead lists on the centre: which list each customer came on, its team and rep, the transfer log.

Revision ID: 0008_leads
Revises: 0007_session_generation
Create Date: 2026-12-04 18:20:00

A floor's lead data is handed from the manager to a team and from the team lead to a
rep; each customer is a lead of one list at most, and every hand-over is a row of
``transfers`` that is never changed.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008_leads"
down_revision: str | Sequence[str] | None = "0007_session_generation"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _now() -> sa.TextClause:
    return sa.text("CURRENT_TIMESTAMP")


def upgrade() -> None:
    """Create ``lead_lists``, ``leads`` and ``transfers``."""
    op.create_table(
        "lead_lists",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("premium", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_lead_lists")),
        sa.UniqueConstraint("name", name=op.f("uq_lead_lists_name")),
    )
    op.create_table(
        "leads",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("list_id", sa.Integer(), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=False),
        sa.Column("team", sa.String(length=100), nullable=True),
        sa.Column("rep", sa.String(length=100), nullable=True),
        sa.Column("team_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("rep_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["customer_id"], ["customers.id"], name=op.f("fk_leads_customer_id_customers"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lead_lists.id"], name=op.f("fk_leads_list_id_lead_lists"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_leads")),
        sa.UniqueConstraint("customer_id", name=op.f("uq_leads_customer_id")),
    )
    op.create_index(op.f("ix_leads_list_id_team_rep"), "leads", ["list_id", "team", "rep"])
    op.create_index(op.f("ix_leads_rep"), "leads", ["rep"])
    op.create_table(
        "transfers",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("actor", sa.String(length=100), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("customer_id", sa.Integer(), nullable=True),
        sa.Column("list_id", sa.Integer(), nullable=True),
        sa.Column("from_team", sa.String(length=100), nullable=True),
        sa.Column("from_rep", sa.String(length=100), nullable=True),
        sa.Column("to_team", sa.String(length=100), nullable=True),
        sa.Column("to_rep", sa.String(length=100), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint(
            "action IN ('import', 'to_team', 'to_rep', 'recall', 'move')", name=op.f("ck_transfers_action")
        ),
        sa.ForeignKeyConstraint(
            ["customer_id"],
            ["customers.id"],
            name=op.f("fk_transfers_customer_id_customers"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["list_id"], ["lead_lists.id"], name=op.f("fk_transfers_list_id_lead_lists"), ondelete="SET NULL"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transfers")),
    )
    op.create_index(op.f("ix_transfers_at"), "transfers", ["at"])
    op.create_index(op.f("ix_transfers_customer_id"), "transfers", ["customer_id"])


def downgrade() -> None:
    """Drop ``transfers``, ``leads`` and ``lead_lists``."""
    op.drop_table("transfers")
    op.drop_table("leads")
    op.drop_table("lead_lists")
