"""The incident desk: where an incident triage raised is taken up, worked and closed.

Its record is an append-only log per incident (``incident_event``) with the current state
projected from it (``incident``), in SQLite by default or PostgreSQL through a URL
(``triage.desk.store``), migrated by Alembic (``triage.desk.migrations``). Triage's own
incident events are its first input (``triage.desk.projection``), applied once each by their
``event_id``. May import ``triage.core`` and ``triage.errors``; never faust or Kafka clients
(``triage.streams`` feeds it).
"""
