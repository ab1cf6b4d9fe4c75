"""triage: alert-stream triage pipeline."""

__version__ = "0.1.0"
