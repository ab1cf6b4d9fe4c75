"""Crash-safe persistence of pipeline state for the embedded runtime (``--state``).

A SQLite database in WAL mode with ``synchronous=FULL``: dedup and flap state per
fingerprint, silences, the pipeline clock and a checkpoint of how far the input was read and
how much output was written. Each ``commit`` is one transaction, so after ``kill -9`` the file
holds exactly the last checkpoint: the runtime truncates output written after it and resumes
reading the input right after the last line it covers.
"""

from __future__ import annotations

import sqlite3
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import orjson

from triage.core.changes import ChangeRecord
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.silences import Silence
from triage.errors import StateError

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a run stood at its last commit: the input line reached and, per output
    (``output``, ``outcomes``, ``dead_letter``), its path and size then."""

    input_key: str | None
    lines_done: int
    sinks: dict[str, tuple[str | None, int]]


class StateFile:
    """The ``--state`` database.

    >>> import tempfile, pathlib
    >>> from triage.core.pipeline import Pipeline
    >>> p = Pipeline(); _ = p.process(b'{"alertname": "Up", "at": 10}')
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "state.db"
    >>> with StateFile(path) as sf: sf.commit(p, None)
    >>> q = Pipeline()
    >>> with StateFile(path) as sf: _ = sf.restore(q)
    >>> len(q.dedup), q.watermark
    (1, 10.0)
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.executescript(
                """
                CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS alerts (fp TEXT PRIMARY KEY, rec BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, rec BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS incidents (id TEXT PRIMARY KEY, rec BLOB NOT NULL);
                CREATE TABLE IF NOT EXISTS changes (id TEXT PRIMARY KEY, rec BLOB NOT NULL);
                """
            )
            version = self._meta("format_version")
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: not a triage state file ({exc})") from None
        if version is None:
            self._db.execute("INSERT INTO meta VALUES ('format_version', ?)",
                             (orjson.dumps(FORMAT_VERSION),))
        elif version != FORMAT_VERSION:
            raise StateError(f"{path}: state format {version}, this triage reads "
                             f"{FORMAT_VERSION}")

    def __enter__(self) -> StateFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else orjson.loads(row[0])

    def restore(self, pipeline: Pipeline, engine: IncidentEngine | None = None
                ) -> Checkpoint | None:
        """Load saved state into ``pipeline`` (and ``engine``); returns the last checkpoint."""
        try:
            if engine is not None:
                for (rec,) in self._db.execute("SELECT rec FROM changes"):
                    engine.changes.add(ChangeRecord(**orjson.loads(rec)))
                engine.changes.take_new()
                engine.load((orjson.loads(rec) for (rec,) in
                             self._db.execute("SELECT rec FROM incidents")),
                            self._meta("engine_timers") or [])
                engine.counts.update(self._meta("engine_counts") or {})
                engine.take_changes()
            rows = self._db.execute("SELECT fp, rec FROM alerts")
            pipeline.dedup.load((fp, orjson.loads(rec)) for fp, rec in rows)
            for (rec,) in self._db.execute("SELECT rec FROM silences"):
                pipeline.silences.add(Silence.from_record(orjson.loads(rec)))
            clock = self._meta("clock")
            if clock is not None:
                pipeline.watermark, pipeline.next_sweep = clock
            counts = self._meta("counts")
            if counts:
                pipeline.counts.update(counts)
            pipeline.dedup.take_changes()  # what was just loaded is already saved
            checkpoint = self._meta("checkpoint")
        except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
            raise StateError(f"{self.path}: unreadable state ({exc})") from None
        if not checkpoint:
            return None
        sinks = {k: (v[0], v[1]) for k, v in checkpoint["sinks"].items()}
        return Checkpoint(checkpoint["input_key"], checkpoint["lines_done"], sinks)

    def commit(self, pipeline: Pipeline, checkpoint: Checkpoint | None,
               engine: IncidentEngine | None = None) -> None:
        """Save what changed since the last commit, atomically with ``checkpoint``."""
        changed, removed = pipeline.dedup.take_changes()
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            if engine is not None:
                incidents, forgotten = engine.take_changes()
                if forgotten:
                    db.executemany("DELETE FROM incidents WHERE id = ?",
                                   ((i,) for i in forgotten))
                if incidents:
                    db.executemany("INSERT OR REPLACE INTO incidents VALUES (?, ?)",
                                   ((i, orjson.dumps(r)) for i, r in incidents.items()))
                db.executemany("INSERT OR IGNORE INTO changes VALUES (?, ?)",
                               ((c.id, orjson.dumps(asdict(c)))
                                for c in engine.changes.take_new()))
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", (
                    ("engine_timers", orjson.dumps(engine.timers())),
                    ("engine_counts", orjson.dumps(dict(engine.counts)))))
            if removed:
                db.executemany("DELETE FROM alerts WHERE fp = ?", ((fp,) for fp in removed))
            if changed:
                db.executemany("INSERT OR REPLACE INTO alerts VALUES (?, ?)",
                               ((fp, orjson.dumps(rec)) for fp, rec in changed.items()))
            if pipeline.silences_changed:
                db.execute("DELETE FROM silences")
                db.executemany("INSERT INTO silences VALUES (?, ?)",
                               ((s.id, orjson.dumps(s.to_record())) for s in pipeline.silences))
                pipeline.silences_changed = False
            meta = {
                "clock": [pipeline.watermark, pipeline.next_sweep],
                "counts": dict(pipeline.counts),
                "checkpoint": asdict(checkpoint) if checkpoint else None,
            }
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           ((k, orjson.dumps(v)) for k, v in meta.items()))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
