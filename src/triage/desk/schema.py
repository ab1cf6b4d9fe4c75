"""The desk's tables (SQLAlchemy Core). Alembic migrations (``triage.desk.migrations``) build
them; this module is what the code reads and writes through, and a test checks the two agree.

``incident_event`` is the record: append-only, one row per change to an incident (triage's
own events, status changes, and, as the desk grows, timeline entries, roles, updates), in
``seq`` order per incident. ``incident`` is its projection, the current state, rewritten
from the log's rows as they are appended; it holds nothing the log does not.

Times are epoch seconds (double precision), as everywhere in triage.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    Float,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

STATUSES = ("triggered", "acknowledged", "investigating", "identified", "mitigated",
            "resolved", "closed")
# each status's timestamp column in ``incident``
STATUS_AT = {s: f"{s}_at" for s in STATUSES}

incident_event = Table(
    "incident_event", metadata,
    Column("incident_id", String(64), primary_key=True),
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("type", String(64), nullable=False),  # triage.created, status.changed, ...
    Column("actor", String(128), nullable=False),  # "triage", or who did it
    Column("at", Float, nullable=False),
    Column("body", JSON, nullable=False),
    # triage's event_id for triage's events: what makes a replay change nothing
    Column("source_id", String(128), nullable=True, unique=True),
    Column("recorded_at", Float, nullable=False),  # wall time it was written
)

incident = Table(
    "incident", metadata,
    Column("id", String(64), primary_key=True),
    Column("title", Text, nullable=False),
    Column("status", String(32), nullable=False),
    Column("priority", String(8), nullable=False),
    Column("services", JSON, nullable=False),
    Column("root_cause", String(256), nullable=True),
    Column("owner_team", String(128), nullable=True),
    Column("owner_person", String(128), nullable=True),
    Column("commander", String(128), nullable=True),  # who holds incident_commander now
    Column("war_room", Boolean, nullable=False),
    Column("alert_count", Integer, nullable=False),
    Column("firing", Boolean, nullable=False),  # triage still sees a firing alert
    Column("first_seen", Float, nullable=False),
    Column("last_seen", Float, nullable=False),
    *(Column(col, Float, nullable=True) for col in STATUS_AT.values()),
    Column("triage_sequence", Integer, nullable=False),  # triage's last event applied
    Column("seq", Integer, nullable=False),  # the last incident_event row applied
    Column("updated_at", Float, nullable=False),
)

# Deliveries to webhook receivers (``triage.desk.notify``): queued in the transaction that
# appended the rows they tell of, so none is lost; a queue, updated as it is worked (each
# attempt is also a row of the incident's log: the comms log).
outbox = Table(
    "outbox", metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("incident_id", String(64), nullable=False),
    Column("seq", Integer, nullable=False),  # the log row it tells of
    Column("route", String(128), nullable=False),
    Column("payload", JSON, nullable=False),
    Column("state", String(16), nullable=False),  # pending, sent, dead
    Column("attempts", Integer, nullable=False),
    Column("next_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

Index("ix_outbox_due", outbox.c.state, outbox.c.next_at)
Index("ix_incident_status_priority", incident.c.status, incident.c.priority)
Index("ix_incident_triggered_at", incident.c.triggered_at)
Index("ix_incident_event_at", incident_event.c.incident_id, incident_event.c.at)
