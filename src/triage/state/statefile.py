"""Crash-safe persistence of pipeline state for the embedded runtimes (``--state``).

A SQLite database in WAL mode: dedup and flap state per fingerprint, silences, incidents,
change records, the pipeline clock and a checkpoint of how far the input was read and how
much output was written. Each commit is one transaction, so after ``kill -9`` the file holds
exactly the last checkpoint: the runtime cuts output written after it and resumes reading the
input right after the last line it covers.

**The records are the snapshot format** of ``triage.core.snapshot``, which the Kafka stages'
tables hold too; this file adds the checkpoint to its ``meta`` table.

**A commit is one row.** ``take`` moves what changed out of memory into a ``Pending`` batch;
``write`` appends it to the ``log`` table as one row (one JSON document, one checksum), in one
transaction. Rows keyed per alert, incident, change and silence are the *base*; ``fold`` moves
logged batches into it (newest wins), when the runtime is idle, at a clean close, and at the
latest every ``FOLD_AT`` batches, so a storm pays one insert per commit rather than one per
alert. ``restore`` reads the base, then the log on top. If the write fails (disk full,
I/O error), ``give_back`` keeps the batch and the next ``take`` merges it with what changed
since, newest first: a record marked saved in memory is never lost by a failed commit. The
runtimes write their outputs before the state (``triage.state.sinks``), so nothing is marked in the
state that was not written.

**The input journal** (``triage serve``). A server commits the inputs it took since its last
commit (request bodies as received, clock ticks) as one ``journal`` row with its checkpoint
(``write_journal``), and takes the state only now and then, in the same transaction as a
commit; the rows that state covers are deleted with it. ``journal`` gives the rows after
the state ``restore`` loaded, for the server to run again.

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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import orjson

from triage.core import snapshot
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.snapshot import TABLES, Delta, silences_of
from triage.errors import StateError

# 2: a CRC-32 per row, and the commit log; 3: serve's input journal (a triage that reads 2
# would not replay it, and could page twice: it refuses a 3)
FORMAT_VERSION = 3
FOLD_AT = 2000  # logged batches before a commit folds the oldest into the base
# batches folded at once: a fold holds the writer, so a storm's commits wait at most for
# this many batches' rows (about 0.5 s at 1M active alerts), not for the whole log (8 s)
FOLD_STEP = 250
Durability = Literal["power", "process"]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """Where a run stood at its last commit: the input line reached and, per output
    (``output``, ``outcomes``, ``dead_letter``), its path and size then."""

    input_key: str | None
    lines_done: int
    sinks: dict[str, tuple[str | None, int]]
    input_hash: str | None = None  # hash chain of the lines up to lines_done (triage run)
    inputs: int = 0  # inputs journaled before this point (triage serve: requests and ticks)


Row = tuple[bytes, int]  # (value, crc)
Pending = Delta  # a commit not durable yet (the name the runtimes use)
Input = tuple[str, float, bytes]  # a journaled input: (kind, time, body)


@dataclass(slots=True)
class Journaled:
    """One journal row: ``inputs`` (numbered from ``first``) and the checkpoint after them;
    ``model``, the noise model version that decided them."""

    first: int
    inputs: list[Input]
    checkpoint: Checkpoint
    model: str | None = None

    def encode(self) -> bytes:
        head = orjson.dumps({"first": self.first, "checkpoint": asdict(self.checkpoint),
                             "model": self.model,
                             "inputs": [[k, at, len(body)] for k, at, body in self.inputs]})
        return len(head).to_bytes(4, "big") + head + b"".join(b for _, _, b in self.inputs)

    @classmethod
    def decode(cls, data: bytes) -> Journaled:
        n = int.from_bytes(data[:4], "big")
        head = orjson.loads(data[4:4 + n])
        inputs: list[Input] = []
        at = 4 + n
        for kind, when, length in head["inputs"]:
            inputs.append((kind, when, data[at:at + length]))
            at += length
        if at != len(data):
            raise ValueError("journal row longer than its inputs")
        return cls(head["first"], inputs, _checkpoint(head["checkpoint"]), head["model"])


def _checkpoint(cp: dict[str, Any]) -> Checkpoint:
    return Checkpoint(cp["input_key"], cp["lines_done"],
                      {k: (v[0], v[1]) for k, v in cp["sinks"].items()},
                      cp.get("input_hash"), cp.get("inputs", 0))


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
            # the whole working set in cache: a storm rewrites rows all over the table
            self._db.execute("PRAGMA cache_size=-262144")  # KiB: up to 256 MiB
            self._db.execute(
                f"PRAGMA synchronous={'FULL' if durability == 'power' else 'NORMAL'}")
            fresh = self._db.execute(
                "SELECT count(*) FROM sqlite_master WHERE name = 'meta'").fetchone()[0] == 0
            if not fresh:
                self._check_pages()
                self._upgrade()
            self._db.executescript("".join(
                f"CREATE TABLE IF NOT EXISTS {t} (key TEXT PRIMARY KEY, rec BLOB NOT NULL, "
                "crc INTEGER NOT NULL);" for t in TABLES)
                + "CREATE TABLE IF NOT EXISTS log (seq INTEGER PRIMARY KEY, batch BLOB NOT NULL,"
                  " crc INTEGER NOT NULL);"
                + "CREATE TABLE IF NOT EXISTS journal (seq INTEGER PRIMARY KEY, "
                  "upto INTEGER NOT NULL, rec BLOB NOT NULL, crc INTEGER NOT NULL);")
            self.logged = self._db.execute("SELECT count(*) FROM log").fetchone()[0]
            version = self._meta("format_version")
        except OSError as exc:
            raise StateError(f"{path}: cannot create the state file ({exc})") from None
        except sqlite3.DatabaseError as exc:
            raise StateError(f"{path}: not a triage state file, or a corrupt one "
                             f"({exc})") from None
        if version is None or version == 2:  # 2 -> 3: the journal table, created above
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
        """Fold the log into the base (if the disk lets it: the log is as good) and close."""
        with contextlib.suppress(sqlite3.Error, OSError, StateError):
            self.fold()
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

    @staticmethod
    def last_checkpoint(path: Path) -> Checkpoint | None:
        """The checkpoint of the last commit in ``path``, read without loading the state
        (cheap: for watching a running process)."""
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=0.5)
        try:
            with contextlib.suppress(sqlite3.OperationalError):  # a file without a journal
                last = db.execute("SELECT rec FROM journal ORDER BY seq DESC LIMIT 1"
                                  ).fetchone()
                if last is not None:
                    return Journaled.decode(last[0]).checkpoint
            row = db.execute("SELECT batch FROM log ORDER BY seq DESC LIMIT 1").fetchone()
            if row is not None:
                cp = orjson.loads(row[0])["put"]["meta"].get("checkpoint")
            else:
                base = db.execute("SELECT rec FROM meta WHERE key = 'checkpoint'").fetchone()
                cp = orjson.loads(base[0]) if base else None
        finally:
            db.close()
        return _checkpoint(cp) if cp else None

    def _log(self) -> Iterator[Pending]:
        for seq, data, crc in self._db.execute("SELECT seq, batch, crc FROM log ORDER BY seq"):
            if zlib.crc32(data) != crc:
                raise StateError(
                    f"{self.path}: corrupt commit in the log, batch {seq}: its checksum does "
                    "not match (a flipped bit or a torn write). Restore the file from a "
                    "backup, or start over with a new --state (and --force)")
            yield Pending.decode(data)

    def _state(self) -> tuple[dict[str, dict[str, Any]], list[Any]]:
        """Every table as key -> value: the base with the log applied in order."""
        tables = {t: dict(self._rows(t)) for t in TABLES if t != "silences"}
        silences: list[Any] | None = None
        for batch in self._log():
            for table, rows in batch.put.items():
                tables[table].update(rows)
            for table, keys in batch.gone.items():
                for key in keys:
                    tables[table].pop(key, None)
            if batch.silences is not None:
                silences = [v for _, v in batch.silences]
        if silences is None:
            silences = [v for _, v in self._rows("silences")]
        return tables, silences

    def restore(self, pipeline: Pipeline, engine: IncidentEngine | None = None
                ) -> Checkpoint | None:
        """Load saved state into ``pipeline`` (and ``engine``); returns the last checkpoint."""
        try:
            tables, silences = self._state()
            tables["silences"] = silences_of(silences)
            checkpoint = snapshot.restore(tables, pipeline, engine).get("checkpoint")
        except (sqlite3.DatabaseError, ValueError, TypeError, KeyError) as exc:
            raise StateError(f"{self.path}: unreadable state ({exc})") from None
        return _checkpoint(checkpoint) if checkpoint else None

    def journal(self, after: int) -> Iterator[Journaled]:
        """The journal rows written after the state ``restore`` loaded, which covers the
        inputs before ``after`` (``Checkpoint.inputs``), in order. A row may start before
        ``after``: the inputs it holds before it are in the state already."""
        for seq, rec, crc in self._db.execute(
                "SELECT seq, rec, crc FROM journal WHERE upto >= ? ORDER BY seq", (after,)):
            if zlib.crc32(rec) != crc:
                raise StateError(
                    f"{self.path}: corrupt row in the input journal, row {seq}: its checksum "
                    "does not match (a flipped bit or a torn write). Restore the file from a "
                    "backup, or start over with a new --state (and --force)")
            try:
                yield Journaled.decode(rec)
            except (ValueError, KeyError, TypeError) as exc:
                raise StateError(f"{self.path}: unreadable input journal row {seq} "
                                 f"({exc})") from None

    # -- writing -------------------------------------------------------------------------

    def take(self, pipeline: Pipeline, checkpoint: Checkpoint | None,
             engine: IncidentEngine | None = None) -> Pending:
        """Move what changed since the last ``take`` out of memory into a batch, merged
        over a batch whose write failed. Cheap and synchronous: call it where the state
        lives (the event loop); ``write`` may run elsewhere."""
        batch = snapshot.take(pipeline, engine)
        batch.put["meta"]["checkpoint"] = asdict(checkpoint) if checkpoint else None
        if self._carry is not None:
            batch = self._carry.merge_newer(batch)
            self._carry = None
        return batch

    def write(self, batch: Pending) -> None:
        """Append ``batch`` to the log in one transaction (folding the log first if it is
        long). Raises ``sqlite3.Error`` (or ``OSError``) if it could not be made durable;
        nothing of it is then in the file."""
        data = batch.encode()
        if self.logged >= FOLD_AT:
            self.fold(FOLD_STEP)
        self._transaction(lambda db: db.execute(
            "INSERT INTO log (batch, crc) VALUES (?, ?)", (data, zlib.crc32(data))))
        self.logged += 1

    def write_journal(self, row: Journaled | None, batch: Pending | None) -> None:
        """One commit of a server that journals its input: ``row`` (its inputs and
        checkpoint) and, when the state was taken too, ``batch`` (whose checkpoint counts
        every input up to it), in one transaction. Journal rows the state covers are
        dropped in it."""
        data = row.encode() if row is not None else None
        state = batch.encode() if batch is not None else None
        if state is not None and self.logged >= FOLD_AT:
            self.fold(FOLD_STEP)

        def apply(db: sqlite3.Connection) -> None:
            if data is not None and row is not None:
                db.execute("INSERT INTO journal (upto, rec, crc) VALUES (?, ?, ?)",
                           (row.first + len(row.inputs), data, zlib.crc32(data)))
            if state is not None and batch is not None:
                db.execute("INSERT INTO log (batch, crc) VALUES (?, ?)",
                           (state, zlib.crc32(state)))
                covered = (batch.put["meta"].get("checkpoint") or {}).get("inputs", 0)
                db.execute("DELETE FROM journal WHERE upto <= ?", (covered,))

        self._transaction(apply)
        if state is not None:
            self.logged += 1

    def fold(self, limit: int | None = None) -> int:
        """Move the oldest ``limit`` logged batches (every one by default) into the base
        tables, in one transaction; returns how many. The batches left in the log are newer
        than the base, as ``restore`` reads them. The runtimes call it when idle and at a
        clean close."""
        if not self.logged:
            return 0
        merged = Pending()
        seqs = []
        for seq, data, crc in self._db.execute("SELECT seq, batch, crc FROM log ORDER BY seq "
                                               "LIMIT ?", (-1 if limit is None else limit,)):
            if zlib.crc32(data) != crc:
                raise StateError(f"{self.path}: corrupt commit in the log, batch {seq}")
            merged.merge_newer(Pending.decode(data))
            seqs.append(seq)
        if not seqs:  # folded by another opener of the file
            self.logged = 0
            return 0

        def apply(db: sqlite3.Connection) -> None:
            for table, keys in merged.gone.items():
                if keys:
                    db.executemany(f"DELETE FROM {table} WHERE key = ?", ((k,) for k in keys))
            for table, rows in merged.put.items():
                # an upsert updates in place; REPLACE deletes and re-inserts (7x slower for
                # a storm's updates to rows spread over the table)
                db.executemany(f"INSERT INTO {table} VALUES (?, ?, ?) ON CONFLICT(key) DO "
                               "UPDATE SET rec = excluded.rec, crc = excluded.crc",
                               ((k, *_row(k, v)) for k, v in rows.items()))
            if merged.silences is not None:
                db.execute("DELETE FROM silences")
                db.executemany("INSERT INTO silences VALUES (?, ?, ?)",
                               ((k, *_row(k, v)) for k, v in merged.silences))
            db.execute("DELETE FROM log WHERE seq <= ?", (seqs[-1],))

        self._transaction(apply)
        self.logged = max(0, self.logged - len(seqs)) if limit is not None else 0
        return len(seqs)

    def _transaction(self, work: Callable[[sqlite3.Connection], object]) -> None:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            work(db)
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
