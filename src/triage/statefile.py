"""Crash-safe persistence of pipeline state for the embedded runtimes (``--state``).

A SQLite database in WAL mode: dedup and flap state per fingerprint, silences, incidents,
change records, the pipeline clock and a checkpoint of how far the input was read and how
much output was written. Each commit is one transaction, so after ``kill -9`` the file holds
exactly the last checkpoint: the runtime cuts output written after it and resumes reading the
input right after the last line it covers.

**A commit is one unit.** ``take`` moves what changed out of memory into a ``Pending`` batch
(encoded rows); ``write`` applies a batch in one transaction. If the write fails (disk full,
I/O error), ``give_back`` keeps the batch and the next ``take`` merges it with what changed
since, newest first: a record marked saved in memory is never lost by a failed commit. The
runtimes write their outputs before the state (``triage.sinks``), so nothing is marked in the
state that was not written.

**Durability.** ``durability="power"`` (``synchronous=FULL``, outputs fsynced) survives a
power loss; ``"process"`` (``synchronous=NORMAL``, no fsync) survives a killed process, which
is what ``kill -9``, an OOM kill or a crash do, at a fraction of the cost.

**Integrity.** Every row carries a CRC-32 of its key and value, checked at load: a flipped
bit or a torn page is named (table and key), never loaded as wrong state. ``PRAGMA
quick_check`` runs at open.
"""

from __future__ import annotations

import contextlib
import sqlite3
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson

from triage.core.changes import ChangeRecord
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.silences import Silence
from triage.errors import StateError

FORMAT_VERSION = 2  # 2: a CRC-32 per row
TABLES = ("meta", "alerts", "silences", "incidents", "changes")
Durability = Literal["power", "process"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a run stood at its last commit: the input line reached and, per output
    (``output``, ``outcomes``, ``dead_letter``), its path and size then."""

    input_key: str | None
    lines_done: int
    sinks: dict[str, tuple[str | None, int]]
    input_hash: str | None = None  # hash chain of the lines up to lines_done (triage run)


Row = tuple[bytes, int]  # (value, crc)


@dataclass(slots=True)
class Pending:
    """Rows taken from memory and not durable yet: per table, key -> row, or None to
    delete it. ``silences`` replaces the whole table when not None."""

    rows: dict[str, dict[str, Row | None]] = field(
        default_factory=lambda: {t: {} for t in TABLES if t != "silences"})
    silences: list[tuple[str, Row]] | None = None

    def merge_newer(self, newer: Pending) -> Pending:
        """This batch (older) overlaid by ``newer``, as one batch."""
        for table, rows in newer.rows.items():
            self.rows[table].update(rows)
        if newer.silences is not None:
            self.silences = newer.silences
        return self

    def __len__(self) -> int:
        return sum(len(r) for r in self.rows.values()) + (self.silences is not None)


def _row(key: str, value: Any) -> Row:
    data = orjson.dumps(value)
    return data, zlib.crc32(data, zlib.crc32(key.encode()))


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

    def __init__(self, path: Path, *, durability: Durability = "power") -> None:
        self.path = path
        self.durability = durability
        self._carry: Pending | None = None  # a batch whose write failed
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One writer at a time, possibly from a worker thread (triage serve commits
            # off the event loop); the caller serialises.
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(
                f"PRAGMA synchronous={'FULL' if durability == 'power' else 'NORMAL'}")
            fresh = self._db.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'meta'").fetchone()[0] == 0
            if not fresh:
                self._check_pages()
                self._upgrade()
            self._db.executescript("".join(
                f"CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY, rec BLOB NOT NULL, "
                "crc INTEGER NOT NULL);" for t in TABLES))
            version = self._meta("format_version")
        except OSError as exc:
            raise StateError(f"{path}: cannot create the state file ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: not a triage state file, or a corrupt one "
                             f"({exc})") from None
        if version is None:
            self._put("meta", "format_version", FORMAT_VERSION)
        elif version != FORMAT_VERSION:
            raise StateError(f"{path}: state format {version}, this triage reads "
                             f"{FORMAT_VERSION}")

    def _check_pages(self) -> None:
        problems = [r[0] for r in self._db.execute("PRAGMA quick_check(5)")]
        if problems != ["ok"]:
            raise StateError(f"{self.path}: the database is corrupt: {'; '.join(problems)}")

    def _upgrade(self) -> None:
        """Format 1 (no checksums, keys in fp/id columns): add a CRC to every row."""
        cols = [r[1] for r in self._db.execute("PRAGMA table_info(meta)")]
        if "crc" in cols:
            return
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for table in TABLES:
                old = [r[1] for r in db.execute(f"PRAGMA table_info({table})")]
                if not old:
                    continue
                rows = db.execute(f"SELECT {old[0]}, {old[1]} FROM {table}").fetchall()
                db.execute(f"DROP TABLE {table}")
                db.execute(f"CREATE TABLE {table} (key TEXT PRIMARY KEY, rec BLOB NOT NULL, "
                           "crc INTEGER NOT NULL)")
                db.executemany(f"INSERT INTO {table} VALUES (?, ?, ?)", (
                    (k, *_row(k, FORMAT_VERSION if k == "format_version" else orjson.loads(v)))
                    for k, v in rows))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def __enter__(self) -> StateFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    # -- reading -------------------------------------------------------------------------

    def _rows(self, table: str) -> Iterator[tuple[str, Any]]:
        for key, rec, crc in self._db.execute(f"SELECT key, rec, crc FROM {table}"):
            if zlib.crc32(rec, zlib.crc32(key.encode())) != crc:
                raise StateError(
                    f"{self.path}: corrupt row in table {table}, key {key!r}: its checksum "
                    "does not match (a flipped bit or a torn write). Restore the file from a "
                    "backup, or start over with a new --state (the outputs then start over "
                    "too: --force)")
            yield key, orjson.loads(rec)

    def _meta(self, key: str) -> Any:
        row = self._db.execute("SELECT key, rec, crc FROM meta WHERE key = ?",
                               (key,)).fetchone()
        if row is None:
            return None
        if zlib.crc32(row[1], zlib.crc32(key.encode())) != row[2]:
            raise StateError(f"{self.path}: corrupt row in table meta, key {key!r}: its "
                             "checksum does not match")
        return orjson.loads(row[1])

    def _put(self, table: str, key: str, value: Any) -> None:
        self._db.execute(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)",
                         (key, *_row(key, value)))

    def restore(self, pipeline: Pipeline, engine: IncidentEngine | None = None
                ) -> Checkpoint | None:
        """Load saved state into ``pipeline`` (and ``engine``); returns the last checkpoint."""
        try:
            if engine is not None:
                for _, rec in self._rows("changes"):
                    engine.changes.add(ChangeRecord(**rec))
                engine.changes.take_new()
                engine.load((rec for _, rec in self._rows("incidents")),
                            self._meta("engine_timers") or [])
                engine.counts.update(self._meta("engine_counts") or {})
                engine.take_changes()
            pipeline.dedup.load(self._rows("alerts"))
            for _, rec in self._rows("silences"):
                pipeline.silences.add(Silence.from_record(rec))
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
        return Checkpoint(checkpoint["input_key"], checkpoint["lines_done"], sinks,
                          checkpoint.get("input_hash"))

    # -- writing -------------------------------------------------------------------------

    def take(self, pipeline: Pipeline, checkpoint: Checkpoint | None,
             engine: IncidentEngine | None = None) -> Pending:
        """Move what changed since the last ``take`` out of memory into a batch, merged
        over a batch whose write failed. Cheap and synchronous: call it where the state
        lives (the event loop); ``write`` may run elsewhere."""
        batch = Pending()
        rows = batch.rows
        if engine is not None:
            incidents, forgotten = engine.take_changes()
            out = rows["incidents"]
            for i in forgotten:
                out[i] = None
            for i, r in incidents.items():
                out[i] = _row(i, r)
            for c in engine.changes.take_new():
                rows["changes"][c.id] = _row(c.id, asdict(c))
            rows["meta"]["engine_timers"] = _row("engine_timers", engine.timers())
            rows["meta"]["engine_counts"] = _row("engine_counts", dict(engine.counts))
        changed, removed = pipeline.dedup.take_changes()
        alerts = rows["alerts"]
        for fp in removed:
            alerts[fp] = None
        for fp, rec in changed.items():
            alerts[fp] = _row(fp, rec)
        if pipeline.silences_changed:
            batch.silences = [(s.id, _row(s.id, s.to_record())) for s in pipeline.silences]
            pipeline.silences_changed = False
        meta = rows["meta"]
        for key, value in (("clock", [pipeline.watermark, pipeline.next_sweep]),
                           ("counts", dict(pipeline.counts)),
                           ("checkpoint", asdict(checkpoint) if checkpoint else None)):
            meta[key] = _row(key, value)
        if self._carry is not None:
            batch = self._carry.merge_newer(batch)
            self._carry = None
        return batch

    def write(self, batch: Pending) -> None:
        """Apply ``batch`` in one transaction. Raises ``sqlite3.Error`` (or ``OSError``) if
        it could not be made durable; nothing of it is then in the file."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for table, rows in batch.rows.items():
                gone = [(k,) for k, r in rows.items() if r is None]
                if gone:
                    db.executemany(f"DELETE FROM {table} WHERE key = ?", gone)
                db.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?, ?)",
                               ((k, r[0], r[1]) for k, r in rows.items() if r is not None))
            if batch.silences is not None:
                db.execute("DELETE FROM silences")
                db.executemany("INSERT INTO silences VALUES (?, ?, ?)",
                               ((k, r[0], r[1]) for k, r in batch.silences))
            db.execute("COMMIT")
        except BaseException:
            # SQLite may have rolled back already (SQLITE_FULL): "cannot rollback" otherwise
            if db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    db.execute("ROLLBACK")
            raise

    def give_back(self, batch: Pending) -> None:
        """Keep a batch whose ``write`` failed: the next ``take`` includes it."""
        self._carry = batch if self._carry is None else self._carry.merge_newer(batch)

    def commit(self, pipeline: Pipeline, checkpoint: Checkpoint | None,
               engine: IncidentEngine | None = None) -> None:
        """Save what changed since the last commit, atomically with ``checkpoint``. If it
        fails, nothing is lost from memory's view: the next commit carries it."""
        batch = self.take(pipeline, checkpoint, engine)
        try:
            self.write(batch)
        except BaseException:
            self.give_back(batch)
            raise
