"""Responder feedback: what an alert was (actionable or noise), kept as an append-only history.

A feedback record says one alert (or one incident's alert) was ``actionable`` or ``noise``,
optionally with a hint that its threshold is ``too_low`` or ``too_high``, and carries what the
learning stage needs to learn from it: the alert's rule, service, value, the threshold it
fired at, how long it fired, and its context (flaps, repeats, recent changes on the service).

The history is a SQLite table (stdlib ``sqlite3``) that only ever grows: triggers refuse
``UPDATE`` and ``DELETE``, so a correction is a newer record for the same alert
(``latest_labels`` keeps the newest per fingerprint). pandas reads it with
``read_history``, which also reads Parquet, CSV and JSON Lines exports of the same columns.

A record's identity is its content (``feedback_id``: a hash of the validated record), so
a judgement delivered twice (a Kafka replay after a crash, an HTTP client's retry) is one
judgement: ``FeedbackStore.append_new`` skips records already in the history, in the same
transaction as it appends the others. Two judgements that differ in any field (a later
``at``, another responder) are two records.

Validation (``feedback_from_dict``) is pure; ``FeedbackStore`` and ``read_history`` are the
only functions here that touch files.
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

import pandas as pd

from triage.core.timeutil import parse_duration, parse_timestamp
from triage.errors import InputError, SchemaError

Label = Literal["actionable", "noise"]
Hint = Literal["too_low", "too_high"]
LABELS: Final = ("actionable", "noise")
HINTS: Final = ("too_low", "too_high")

# The history's columns, in order (the SQLite table, and every frame ``read_history`` returns).
COLUMNS: Final = (
    "at", "label", "hint", "alertname", "service", "tier", "severity", "value", "threshold",
    "direction", "duration", "fingerprint", "incident_id", "flap_count", "repeat_count",
    "recent_changes", "responder", "source_rule", "labels", "context",
)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS feedback (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    label TEXT NOT NULL CHECK (label IN ('actionable', 'noise')),
    hint TEXT CHECK (hint IS NULL OR hint IN ('too_low', 'too_high')),
    alertname TEXT NOT NULL,
    service TEXT NOT NULL,
    tier TEXT NOT NULL,
    severity TEXT NOT NULL,
    value REAL,
    threshold REAL,
    direction TEXT NOT NULL CHECK (direction IN ('above', 'below')),
    duration REAL,
    fingerprint TEXT NOT NULL,
    incident_id TEXT NOT NULL,
    flap_count INTEGER NOT NULL,
    repeat_count INTEGER NOT NULL,
    recent_changes INTEGER,
    responder TEXT NOT NULL,
    source_rule TEXT NOT NULL,
    labels TEXT NOT NULL,
    context TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS feedback_at ON feedback (at);
CREATE TRIGGER IF NOT EXISTS feedback_no_update BEFORE UPDATE ON feedback
BEGIN SELECT RAISE(ABORT, 'feedback history is append-only'); END;
CREATE TRIGGER IF NOT EXISTS feedback_no_delete BEFORE DELETE ON feedback
BEGIN SELECT RAISE(ABORT, 'feedback history is append-only'); END;
CREATE TABLE IF NOT EXISTS feedback_ids (id TEXT PRIMARY KEY) WITHOUT ROWID;
"""


@dataclass(frozen=True, slots=True)
class Feedback:
    """One responder judgement of one alert.

    ``duration`` is how long the alert fired (seconds), ``threshold`` the threshold it fired
    at (the Prometheus rule's), ``recent_changes`` the changes to its service shortly before.
    """

    at: float
    label: Label
    alertname: str
    service: str = ""
    hint: Hint | None = None
    tier: str = ""
    severity: str = ""
    value: float | None = None
    threshold: float | None = None
    direction: Literal["above", "below"] = "above"
    duration: float | None = None
    fingerprint: str = ""
    incident_id: str = ""
    flap_count: int = 0
    repeat_count: int = 1
    recent_changes: int | None = None
    responder: str = ""
    source_rule: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    context: Mapping[str, Any] = field(default_factory=dict)

    def to_row(self) -> dict[str, Any]:
        """The record as a history row (``labels`` and ``context`` as JSON text)."""
        row = asdict(self)
        row["labels"] = json.dumps(dict(self.labels), sort_keys=True)
        row["context"] = json.dumps(dict(self.context), sort_keys=True, default=str)
        return row


def feedback_id(record: Feedback) -> str:
    """The identity of a judgement: a hash of every field of the validated record, so the
    same judgement sent twice (in any accepted spelling of ``at`` or ``duration``) has one id.

    >>> a = feedback_from_dict({"at": "1970-01-01T00:01:00Z", "label": "noise", "alertname": "X"})
    >>> b = feedback_from_dict({"at": 60, "label": "noise", "alertname": "X"})
    >>> feedback_id(a) == feedback_id(b), len(feedback_id(a))
    (True, 32)
    """
    text = json.dumps(record.to_row(), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def feedback_from_dict(obj: Mapping[str, Any]) -> Feedback:
    """Validate a decoded feedback record; ``SchemaError`` names the bad field.

    Accepts the ``Feedback`` fields; ``at`` may be RFC 3339 or epoch seconds and ``duration``
    a Prometheus duration. ``labels`` fills ``alertname``/``service``/``tier``/``severity``
    when they are not given.

    >>> fb = feedback_from_dict({"at": "2026-11-27T10:00:00Z", "label": "noise",
    ...                          "labels": {"alertname": "HighCPU", "service": "cart"},
    ...                          "value": 0.83, "threshold": 0.8, "duration": "2m"})
    >>> fb.alertname, fb.service, fb.duration
    ('HighCPU', 'cart', 120.0)
    >>> feedback_from_dict({"at": 0, "label": "maybe", "alertname": "X"})
    Traceback (most recent call last):
    ...
    triage.errors.SchemaError: label: expected actionable or noise, got 'maybe'
    """
    if not isinstance(obj, Mapping):
        raise SchemaError("", "a feedback record must be an object")
    labels = obj.get("labels") or {}
    if not isinstance(labels, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
    ):
        raise SchemaError("labels", "expected a map of strings")
    at = parse_timestamp(obj.get("at"), "at")
    if at is None:
        raise SchemaError("at", "missing")
    label = obj.get("label")
    if label not in LABELS:
        raise SchemaError("label", f"expected actionable or noise, got {label!r}")
    hint = obj.get("hint") or None
    if hint is not None and hint not in HINTS:
        raise SchemaError("hint", f"expected too_low or too_high, got {hint!r}")
    direction = obj.get("direction") or "above"
    if direction != "above" and direction != "below":
        raise SchemaError("direction", f"expected above or below, got {direction!r}")
    text = {name: _text(obj.get(name, labels.get(name, "")), name)
            for name in ("alertname", "service", "tier", "severity")}
    if not text["alertname"]:
        raise SchemaError("alertname", "missing")
    context = obj.get("context") or {}
    if not isinstance(context, Mapping):
        raise SchemaError("context", "expected an object")
    duration = obj.get("duration")
    try:
        duration_s = None if duration is None else parse_duration(duration, "duration")
    except (InputError, ValueError) as exc:
        raise SchemaError("duration", str(exc)) from None
    return Feedback(
        at=at,
        label=label,
        hint=hint,
        direction="below" if direction == "below" else "above",
        value=_number(obj.get("value"), "value"),
        threshold=_number(obj.get("threshold"), "threshold"),
        duration=duration_s,
        fingerprint=_text(obj.get("fingerprint", ""), "fingerprint"),
        incident_id=_text(obj.get("incident_id", ""), "incident_id"),
        flap_count=_count(obj.get("flap_count", 0), "flap_count"),
        repeat_count=_count(obj.get("repeat_count", 1), "repeat_count"),
        recent_changes=(None if obj.get("recent_changes") is None
                        else _count(obj.get("recent_changes"), "recent_changes")),
        responder=_text(obj.get("responder", ""), "responder"),
        source_rule=_text(obj.get("source_rule", ""), "source_rule"),
        labels=dict(labels),
        context=dict(context),
        **text,
    )


class FeedbackStore:
    """The append-only feedback history in a SQLite file.

    >>> import tempfile, pathlib
    >>> store = FeedbackStore(pathlib.Path(tempfile.mkdtemp()) / "feedback.db")
    >>> store.append([Feedback(at=0.0, label="noise", alertname="HighCPU", service="cart")])
    1
    >>> store.read()[["label", "alertname", "service"]].to_dict("records")
    [{'label': 'noise', 'alertname': 'HighCPU', 'service': 'cart'}]
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def _connect(self) -> sqlite3.Connection:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path)
        conn.executescript(_SCHEMA)
        return conn

    def append(self, records: Iterable[Feedback]) -> int:
        """Append ``records`` in one transaction, repeats included; returns how many were
        written. (Their ids are noted, so ``append_new`` knows them.)"""
        records = list(records)
        rows = [r.to_row() for r in records]
        if not rows:
            return 0
        placeholders = ", ".join(f":{c}" for c in COLUMNS)
        conn = self._connect()
        try:
            with conn:
                conn.executemany(
                    f"INSERT INTO feedback ({', '.join(COLUMNS)}) VALUES ({placeholders})", rows
                )
                conn.executemany("INSERT OR IGNORE INTO feedback_ids (id) VALUES (?)",
                                 [(feedback_id(r),) for r in records])
        finally:
            conn.close()
        return len(rows)

    def append_new(self, records: Iterable[Feedback]) -> int:
        """Append the ``records`` not in the history yet (by ``feedback_id``; repeats within
        ``records`` count once), in one transaction; returns how many were written.

        Idempotent: appending the same records again writes nothing, so a consumer may
        replay what it appended before a crash.

        >>> import tempfile, pathlib
        >>> store = FeedbackStore(pathlib.Path(tempfile.mkdtemp()) / "feedback.db")
        >>> fb = Feedback(at=0.0, label="noise", alertname="HighCPU")
        >>> store.append_new([fb, fb]), store.append_new([fb]), len(store.read())
        (1, 0, 1)
        """
        rows = [(feedback_id(r), r.to_row()) for r in records]
        if not rows:
            return 0
        placeholders = ", ".join(f":{c}" for c in COLUMNS)
        insert = f"INSERT INTO feedback ({', '.join(COLUMNS)}) VALUES ({placeholders})"
        written = 0
        conn = self._connect()
        try:
            with conn:
                for key, row in rows:
                    seen = conn.execute("INSERT OR IGNORE INTO feedback_ids (id) VALUES (?)",
                                        (key,))
                    if seen.rowcount == 1:
                        conn.execute(insert, row)
                        written += 1
        finally:
            conn.close()
        return written

    def append_frame(self, frame: pd.DataFrame) -> int:
        """Append a history frame (``COLUMNS``; e.g. from ``simulate_feedback``)."""
        return self.append(feedback_from_dict(_clean(rec))
                           for rec in frame.to_dict("records"))

    def read(self) -> pd.DataFrame:
        """The whole history, oldest first, as a frame with ``COLUMNS``."""
        conn = self._connect()
        try:
            frame = pd.read_sql_query(
                f"SELECT {', '.join(COLUMNS)} FROM feedback ORDER BY at, seq", conn
            )
        finally:
            conn.close()
        return normalize_history(frame)


def read_history(path: Path) -> pd.DataFrame:
    """A feedback history from SQLite (``.db``/``.sqlite``), Parquet, CSV or JSON Lines.

    Raises ``FileNotFoundError`` or ``ValueError`` (unknown suffix, missing columns).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    suffix = path.suffix.lower()
    if suffix in (".db", ".sqlite", ".sqlite3"):
        return FeedbackStore(path).read()
    if suffix == ".parquet":
        frame = pd.read_parquet(path)
    elif suffix == ".csv":
        frame = pd.read_csv(path)
    elif suffix in (".jsonl", ".ndjson", ".json"):
        frame = pd.read_json(path, lines=suffix != ".json")
    else:
        raise ValueError(f"{path}: unknown history format {suffix!r} "
                         "(use .db, .parquet, .csv or .jsonl)")
    return normalize_history(frame)


def normalize_history(frame: pd.DataFrame) -> pd.DataFrame:
    """Check the required columns and fill the optional ones with their defaults.

    >>> normalize_history(pd.DataFrame({"at": [0.0], "label": ["noise"],
    ...                                 "alertname": ["X"]})).loc[0, "repeat_count"]
    np.int64(1)
    """
    missing = [c for c in ("at", "label", "alertname") if c not in frame.columns]
    if missing:
        raise ValueError(f"history lacks the columns {', '.join(missing)}")
    out = frame.copy()
    defaults: dict[str, Any] = {
        "hint": None, "service": "", "tier": "", "severity": "", "value": math.nan,
        "threshold": math.nan, "direction": "above", "duration": math.nan, "fingerprint": "",
        "incident_id": "", "flap_count": 0, "repeat_count": 1, "recent_changes": math.nan,
        "responder": "", "source_rule": "", "labels": "{}", "context": "{}",
    }
    for name, default in defaults.items():
        if name not in out.columns:
            out[name] = default
    bad = sorted(set(out["label"].unique()) - set(LABELS))
    if bad:
        raise ValueError(f"history column label has values other than actionable/noise: {bad}")
    for name in ("service", "tier", "severity", "fingerprint", "incident_id", "responder",
                 "source_rule"):
        out[name] = out[name].astype(object).where(out[name].notna(), "").astype(str)
    for name in ("at", "value", "threshold", "duration", "recent_changes"):
        out[name] = pd.to_numeric(out[name], errors="coerce").astype(float)
    for name in ("flap_count", "repeat_count"):
        out[name] = pd.to_numeric(out[name], errors="coerce").fillna(0).astype("int64")
    out["direction"] = out["direction"].fillna("above")
    return out[list(COLUMNS)].sort_values("at", kind="stable").reset_index(drop=True)


def latest_labels(history: pd.DataFrame) -> pd.DataFrame:
    """One row per judged alert: the newest record wins (corrections are appended, not edited).

    Rows without a fingerprint are each their own alert.
    """
    keyed = history["fingerprint"].astype(str) != ""
    newest = history[keyed].drop_duplicates(["fingerprint", "incident_id"], keep="last")
    return pd.concat([newest, history[~keyed]]).sort_values("at", kind="stable").reset_index(
        drop=True
    )


def _clean(rec: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in rec.items():
        if isinstance(value, float) and math.isnan(value):
            continue
        if key in ("labels", "context") and isinstance(value, str):
            value = json.loads(value)
        out[str(key)] = value
    return out


def _text(value: object, name: str) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise SchemaError(name, f"expected a string, got {type(value).__name__}")
    return value


def _number(value: object, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise SchemaError(name, f"expected a number, got {type(value).__name__}")
    number = float(value)
    if math.isnan(number):
        return None
    if not math.isfinite(number):
        raise SchemaError(name, f"expected a finite number, got {value!r}")
    return number


def _count(value: object, name: str) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise SchemaError(name, f"expected a count >= 0, got {value!r}")
    return value
