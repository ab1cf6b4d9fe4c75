"""One snapshot format for triage's state, whatever stores it.

Every state store saves the same records, built and read here: the SQLite state file of the
embedded runtimes (``triage.state.statefile``, ``--state``) and the tables of the Kafka path's two
stages (``triage.streams.stages``). Neither reads or sets a field of the pipeline or the
incident engine; each adds only where its input stood (a checkpoint of lines and output
sizes; an offset per partition).

A snapshot is a ``Delta``: what changed since the last ``take``, per table, as key -> record
(``put``) and keys forgotten (``gone``):

========== ===================== ==================================================
table      key                   record
========== ===================== ==================================================
alerts     fingerprint           dedup and flap state of one alert (``AlertState``)
silences   silence id            one silence (the whole table is written at once)
incidents  incident id, or       one incident without its alerts, or one alert row
           ``id/fingerprint``    of an incident (``IncidentEngine.take_changes``)
changes    change id             one change record (deploy, config, flag)
meta       ``clock``, ``counts``  the pipeline's clock and counters
           ``engine_timers``,    the engine's pending timers and counters
           ``engine_counts``
========== ===================== ==================================================

The first ``take`` of a pipeline or engine never restored gives everything. ``restore``
reads the tables back (a store applies its deltas in order, newest wins, before).

>>> from triage.core.pipeline import Pipeline
>>> p = Pipeline(); _ = p.process(b'{"alertname": "Up", "service": "db", "at": 10}')
>>> delta = take(p)
>>> sorted(t for t, rows in delta.put.items() if rows), delta.put["meta"]["clock"][0]
(['alerts', 'meta'], 10.0)
>>> q = Pipeline(); _ = restore(Delta.decode(delta.encode()).tables(), q)
>>> q.watermark, len(q.dedup.states)
(10.0, 1)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from triage.core.changes import ChangeRecord
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.silences import Silence

TABLES = ("meta", "alerts", "silences", "incidents", "changes")
KEYED = tuple(t for t in TABLES if t != "silences")  # tables written key by key


@dataclass(slots=True)
class Delta:
    """State taken from memory and not stored yet: per table, key -> record (``put``) or
    forgotten keys (``gone``); ``silences`` (id, record) replaces the whole table when not
    None."""

    put: dict[str, dict[str, Any]] = field(default_factory=lambda: {t: {} for t in KEYED})
    gone: dict[str, set[str]] = field(default_factory=lambda: {t: set() for t in KEYED})
    silences: list[tuple[str, Any]] | None = None

    def merge_newer(self, newer: Delta) -> Delta:
        """This delta (older) overlaid by ``newer``, as one delta.

        >>> a, b = Delta(), Delta()
        >>> a.put["alerts"]["x"] = 1; b.gone["alerts"].add("x"); b.put["alerts"]["y"] = 2
        >>> m = a.merge_newer(b); m.put["alerts"], m.gone["alerts"]
        ({'y': 2}, {'x'})
        """
        for table, rows in newer.put.items():
            self.put[table].update(rows)
            self.gone[table] -= rows.keys()
        for table, keys in newer.gone.items():
            for key in keys:
                self.put[table].pop(key, None)
            self.gone[table] |= keys
        if newer.silences is not None:
            self.silences = newer.silences
        return self

    def tables(self) -> dict[str, dict[str, Any]]:
        """The delta as whole tables (what ``restore`` reads): its puts, and the silences
        keyed by id."""
        tables = {t: dict(rows) for t, rows in self.put.items()}
        tables["silences"] = dict(self.silences or [])
        return tables

    def encode(self) -> bytes:
        return orjson.dumps({"put": self.put, "gone": {t: sorted(k) for t, k in
                                                       self.gone.items() if k},
                             "silences": self.silences})

    @classmethod
    def decode(cls, data: bytes) -> Delta:
        doc = orjson.loads(data)
        delta = cls()
        for table, rows in doc["put"].items():
            delta.put[table] = rows
        for table, keys in doc["gone"].items():
            delta.gone[table] = set(keys)
        if doc["silences"] is not None:
            delta.silences = [(k, v) for k, v in doc["silences"]]
        return delta

    def __len__(self) -> int:
        return (sum(len(r) for r in self.put.values())
                + sum(len(g) for g in self.gone.values()) + (self.silences is not None))


def take(pipeline: Pipeline | None, engine: IncidentEngine | None = None) -> Delta:
    """Move what changed since the last ``take`` out of ``pipeline`` and ``engine`` (either
    may be absent: one stage of the Kafka path) into a delta."""
    delta = Delta()
    put, gone = delta.put, delta.gone
    if engine is not None:
        incidents, forgotten = engine.take_changes()
        gone["incidents"] |= forgotten
        put["incidents"].update(incidents)
        for c in engine.changes.take_new():
            put["changes"][c.id] = asdict(c)
        put["meta"]["engine_timers"] = engine.timers()
        put["meta"]["engine_counts"] = dict(engine.counts)
    if pipeline is not None:
        changed, removed = pipeline.dedup.take_changes()
        gone["alerts"] |= removed
        put["alerts"].update(changed)
        if pipeline.silences_changed:
            delta.silences = [(s.id, s.to_record()) for s in pipeline.silences]
            pipeline.silences_changed = False
        put["meta"].update(pipeline.clock_state())
    return delta


def restore(tables: Mapping[str, Mapping[str, Any]], pipeline: Pipeline | None,
            engine: IncidentEngine | None = None) -> Mapping[str, Any]:
    """Load whole ``tables`` (table -> key -> record; a table may be missing) into
    ``pipeline`` and ``engine``; returns the meta table (a store keeps its own keys there).
    What was loaded counts as saved: the next ``take`` gives only what changes after."""
    meta = tables.get("meta") or {}
    if engine is not None:
        for rec in (tables.get("changes") or {}).values():
            engine.changes.add(ChangeRecord(**rec))
        engine.changes.take_new()
        engine.load(iter((tables.get("incidents") or {}).values()),
                    meta.get("engine_timers") or [])
        engine.counts.update(meta.get("engine_counts") or {})
        engine.take_changes()
    if pipeline is not None:
        pipeline.dedup.load(iter((tables.get("alerts") or {}).items()))
        for rec in (tables.get("silences") or {}).values():
            pipeline.silences.add(Silence.from_record(rec))
        pipeline.restore_clock_state(meta)
        pipeline.dedup.take_changes()
    return meta


def silences_of(records: Iterable[Any]) -> dict[str, Any]:
    """Silence records kept as one list (the Kafka stages' ``s`` record) as the
    ``silences`` table ``restore`` reads (keyed by position: the order is kept)."""
    return {str(i): rec for i, rec in enumerate(records)}


take_state, restore_state = take, restore  # names that do not shadow a caller's own
