"""Stage 2: stage-1 alert state changes in, explained incidents out."""

from triage.core.incidents.engine import (
    SCHEMA_VERSION,
    CorrelationPolicy,
    Event,
    Incident,
    IncidentEngine,
    render_event,
)

__all__ = ["SCHEMA_VERSION", "CorrelationPolicy", "Event", "Incident", "IncidentEngine",
           "render_event"]
