"""The incident log and its projection.

Revision ID: 0001
Revises:
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

STATUSES = ("triggered", "acknowledged", "investigating", "identified", "mitigated",
            "resolved", "closed")


def upgrade() -> None:
    op.create_table(
        "incident_event",
        sa.Column("incident_id", sa.String(64), primary_key=True),
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("type", sa.String(64), nullable=False),
        sa.Column("actor", sa.String(128), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("source_id", sa.String(128), nullable=True, unique=True),
        sa.Column("recorded_at", sa.Float, nullable=False),
    )
    op.create_index("ix_incident_event_at", "incident_event", ["incident_id", "at"])
    op.create_table(
        "incident",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("title", sa.Text, nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("priority", sa.String(8), nullable=False),
        sa.Column("services", sa.JSON, nullable=False),
        sa.Column("root_cause", sa.String(256), nullable=True),
        sa.Column("owner_team", sa.String(128), nullable=True),
        sa.Column("owner_person", sa.String(128), nullable=True),
        sa.Column("war_room", sa.Boolean, nullable=False),
        sa.Column("alert_count", sa.Integer, nullable=False),
        sa.Column("firing", sa.Boolean, nullable=False),
        sa.Column("first_seen", sa.Float, nullable=False),
        sa.Column("last_seen", sa.Float, nullable=False),
        *(sa.Column(f"{s}_at", sa.Float, nullable=True) for s in STATUSES),
        sa.Column("triage_sequence", sa.Integer, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_index("ix_incident_status_priority", "incident", ["status", "priority"])
    op.create_index("ix_incident_triggered_at", "incident", ["triggered_at"])


def downgrade() -> None:
    op.drop_table("incident")
    op.drop_table("incident_event")
