"""The one exception tree of triage.

Errors are classified by type, never by message text::

    TriageError
    ├── ConfigError          a setting is missing or invalid (names the key)
    ├── StateError           a --state file is unreadable or from an incompatible version
    ├── ModelError           a model artifact fails verification or cannot be loaded
    │                        (defined in triage.models.registry, beside the registry)
    ├── PublishError         Kafka did not acknowledge a message; ``retryable`` says whether
    │                        a sender should try again (triage.streams.publisher)
    └── InputError           one payload or alert cannot be triaged (names the field);
        │                    at the stream boundary it becomes a ``Failed`` outcome and is
        │                    dead-lettered with its raw payload, it never escapes the pipeline
        ├── DecodeError      not UTF-8 / not JSON
        ├── OversizeError    payload larger than ``intake.max_payload_bytes``
        ├── UnknownFormatError  valid JSON that no normalizer recognises
        ├── SchemaError      recognised format, wrong shape: missing field, wrong type
        └── TimestampError   a timestamp that is not RFC 3339 / ISO 8601 or epoch seconds
"""

from __future__ import annotations


class TriageError(Exception):
    """Base of every error triage raises on purpose."""


class ConfigError(TriageError):
    """A configuration value is missing or invalid; ``key`` is its dotted path."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"config {key}: {message}")
        self.key = key
        self.message = message


class StateError(TriageError):
    """The state file cannot be used (corrupt, or written by an incompatible version)."""


class OutputConflict(TriageError):
    """An output file holds records the run's state does not account for: opening it would
    lose them."""


class StorageError(TriageError):
    """Outputs or state could not be written (disk full, I/O error); nothing was lost that
    was reported written, and a run with state resumes after its last checkpoint."""


class InputError(TriageError):
    """Bad input. ``field`` is a path into the payload such as ``alerts[2].labels``."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field
        self.message = message

    def at(self, prefix: str) -> InputError:
        """Return the same error with ``prefix`` prepended to its field path."""
        field = f"{prefix}.{self.field}" if self.field and not self.field.startswith("[") else (
            f"{prefix}{self.field}"
        )
        return type(self)(field, self.message)


class DecodeError(InputError):
    """The payload is not UTF-8 text or not JSON."""


class OversizeError(InputError):
    """The payload exceeds the configured size limit."""


class UnknownFormatError(InputError):
    """Valid JSON, but no normalizer recognises its shape."""


class SchemaError(InputError):
    """A recognised format with a missing field or a field of the wrong type."""


class TimestampError(InputError):
    """A timestamp that cannot be parsed."""
