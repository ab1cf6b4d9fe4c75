"""The desk's store: SQLite (the default, embedded: WAL, a busy timeout) or PostgreSQL (a
URL), migrated by Alembic at open, written in one transaction per batch.

``ingest`` takes triage's incident events in any number and order, as often as they come:
each is applied once, by its ``event_id`` (a unique column of the log), so a replay, a
consumer restarted before its offsets were committed, or a second desk on the same
database changes nothing. A batch commits as a whole or not at all; the caller acknowledges
its input only after ``ingest`` returns (``triage desk ingest`` commits Kafka offsets then).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    create_engine,
    event,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.exc import IntegrityError, OperationalError

from triage.desk.changes import expire_access
from triage.desk.events import queued as lifecycle_queued
from triage.desk.lifecycle import apply_status, holders, timeline
from triage.desk.notify import MAX_ATTEMPTS, Route, deliveries, next_try, retryable
from triage.desk.projection import apply_triage, check_event
from triage.desk.rules import MissingError
from triage.desk.schema import incident, incident_event, outbox
from triage.desk.updates import CADENCE, OPEN, next_due
from triage.desk.updates import remind as reminder
from triage.errors import DecodeError, InputError

Command = Callable[[dict[str, Any], list[dict[str, Any]]], list[dict[str, Any]]]
MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CHUNK = 500  # keys per IN (...) query
BUSY_TIMEOUT_MS = 10_000
UNATTENDED_AFTER = 600.0  # a P1/P2 without an incident commander this long is flagged


def default_url(path: Path | str = "desk.db") -> str:
    """The embedded default: a SQLite file."""
    return f"sqlite:///{Path(path)}"


def make_engine(url: str) -> Engine:
    """An engine for ``url``; SQLite in WAL mode with a busy timeout, so a reader never
    blocks the writer and two writers wait for each other instead of failing.

    On SQLite every transaction begins with an explicit ``BEGIN`` (pysqlite would run the
    reads before the first write outside of it, each on its own snapshot), and a writing
    one (``writing``) with ``BEGIN IMMEDIATE``: it holds the write lock from its first read,
    so what it read is still true when it writes (two acknowledgements at once: the second
    sees the first)."""
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            dbapi_conn.isolation_level = None  # transactions are begun below, explicitly
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: Connection) -> None:
            immediate = conn.get_execution_options().get("writing", False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine
    return create_engine(url, pool_pre_ping=True)


@contextlib.contextmanager
def writing(engine: Engine) -> Iterator[Connection]:
    """A transaction that writes what it decides from what it reads (committed at the end,
    rolled back on an error); on SQLite it holds the write lock from the start."""
    with engine.connect() as conn:
        conn.execution_options(writing=True)
        with conn.begin():
            yield conn


def migrate(engine: Engine) -> None:
    """Bring the database to the newest schema (Alembic ``upgrade head``)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


@dataclass
class Ingested:
    """What a batch did: events applied, events seen before (or twice in the batch), and
    events refused: (their index in the batch, why), for the caller to dead-letter with
    their payload."""

    added: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, InputError]] = field(default_factory=list)


class DeskStore:
    """The incident log and its projection in one database."""

    def __init__(self, url: str, *, now: Callable[[], float] = time.time,
                 upgrade: bool = True, routes: Sequence[Route] = (),
                 lifecycle: bool = False) -> None:
        self.url = url
        self.engine = make_engine(url)
        self.now = now
        self.routes = list(routes)  # webhook receivers told of what is appended
        self.lifecycle = lifecycle  # queue every row for the lifecycle topic
        if upgrade:
            migrate(self.engine)

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> DeskStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writing ---------------------------------------------------------------------------

    def ingest(self, events: Iterable[Any], *, retries: int = 5) -> Ingested:
        """Apply triage's incident events (decoded JSON, or raw bytes/str lines) in one
        transaction. A conflict with another writer, or a database that went away, retries
        the whole batch (up to ``retries`` times, backing off); then it raises and nothing
        of the batch is in the database."""
        batch = list(events)
        for attempt in range(retries + 1):
            try:
                with writing(self.engine) as conn:
                    return self._ingest(conn, batch)
            except (IntegrityError, OperationalError):
                if attempt == retries:
                    raise
                time.sleep(min(2.0, 0.05 * 2 ** attempt))
        raise AssertionError("unreachable")

    def _ingest(self, conn: Connection, batch: Sequence[Any]) -> Ingested:
        result = Ingested()
        valid: dict[str, dict[str, Any]] = {}
        for i, raw in enumerate(batch):
            try:
                ev = orjson.loads(raw) if isinstance(raw, bytes | bytearray | str) else raw
                event_id = check_event(ev)[0]
            except orjson.JSONDecodeError as exc:
                result.rejected.append((i, DecodeError("", f"not JSON: {exc}")))
                continue
            except InputError as exc:
                result.rejected.append((i, exc))
                continue
            if event_id in valid:
                result.duplicates += 1
            else:
                valid[event_id] = ev
        seen = set(self._existing(conn, list(valid)))
        result.duplicates += len(seen)
        new = [ev for eid, ev in valid.items() if eid not in seen]
        if not new:
            return result
        ids = list(dict.fromkeys(ev["incident"]["id"] for ev in new))
        before = {row["id"]: row for row in self._rows(conn, ids)}
        rows: dict[str, dict[str, Any]] = dict(before)
        logs: dict[str, list[dict[str, Any]]] = {}
        recorded = self.now()
        for ev in new:
            iid = ev["incident"]["id"]
            log = logs.setdefault(iid, [])
            rows[iid], appended = apply_triage(rows.get(iid), ev, log)
            log.extend(appended)
        conn.execute(insert(incident_event), [
            {**r, "recorded_at": recorded} for log in logs.values() for r in log])
        queued = [d for iid, log in logs.items() for d in self._outgoing(rows[iid], log,
                                                                         recorded)]
        if queued:
            conn.execute(insert(outbox), queued)
        fresh = [rows[i] for i in ids if i not in before]
        if fresh:
            conn.execute(insert(incident), fresh)
        changed = [rows[i] for i in ids if i in before]
        if changed:
            cols = [c.name for c in incident.c if c.name != "id"]
            stmt = update(incident).where(incident.c.id == bindparam("_id")).values(
                {c: bindparam(c) for c in cols})
            conn.execute(stmt, [{"_id": r["id"], **{c: r[c] for c in cols}} for r in changed])
        result.added = len(new)
        return result

    @staticmethod
    def _existing(conn: Connection, event_ids: list[str]) -> Iterable[str]:
        for i in range(0, len(event_ids), CHUNK):
            chunk = event_ids[i:i + CHUNK]
            yield from conn.execute(select(incident_event.c.source_id).where(
                incident_event.c.source_id.in_(chunk))).scalars()

    @staticmethod
    def _rows(conn: Connection, ids: list[str]) -> Iterable[dict[str, Any]]:
        for i in range(0, len(ids), CHUNK):
            for row in conn.execute(select(incident).where(incident.c.id.in_(ids[i:i + CHUNK]))):
                yield _plain(row)

    def act(self, incident_id: str, command: Command, *, retries: int = 5
            ) -> list[dict[str, Any]]:
        """Run a responder's command (``triage.desk.lifecycle``: ``command(row, log)`` gives
        the rows to append, or raises a ``RuleError``) against the incident's current state,
        append its rows and update the projection, in one transaction; returns the rows.
        Two commands at once on one incident: one waits or retries, and then sees the
        other's rows (its rules are checked against them)."""
        for attempt in range(retries + 1):
            try:
                with writing(self.engine) as conn:
                    q = select(incident).where(incident.c.id == incident_id)
                    if conn.dialect.name == "postgresql":
                        q = q.with_for_update()
                    found = conn.execute(q).first()
                    if found is None:
                        raise MissingError("incident", f"no incident {incident_id!r}")
                    row = _plain(found)
                    log = [_plain(r) for r in conn.execute(
                        select(incident_event).where(incident_event.c.incident_id == incident_id)
                        .order_by(incident_event.c.seq))]
                    rows = command(row, log)
                    if not rows:
                        return []
                    recorded = self.now()
                    conn.execute(insert(incident_event),
                                 [{**r, "recorded_at": recorded} for r in rows])
                    new = project(row, log, rows)
                    conn.execute(update(incident).where(incident.c.id == incident_id).values(
                        {k: v for k, v in new.items() if k != "id"}))
                    queued = self._outgoing(new, rows, recorded)
                    if queued:
                        conn.execute(insert(outbox), queued)
                    return rows
            except (IntegrityError, OperationalError):
                if attempt == retries:
                    raise
                time.sleep(min(2.0, 0.05 * 2 ** attempt))
        raise AssertionError("unreachable")

    def remind(self, now: float) -> list[str]:
        """Append an ``update.overdue`` row to each open incident whose next status update
        is overdue (once per due time); returns the ids of every overdue incident."""
        overdue = []
        for row in self.incidents(status=list(OPEN), priority=list(CADENCE), limit=100_000):
            rows = self.act(row["id"], lambda r, log: reminder(r, log, now=now))
            if rows or self._overdue(row["id"], now):
                overdue.append(row["id"])
        return overdue

    def expire(self, now: float) -> int:
        """Expire the access grants whose time is up (``access.expired`` rows); how many."""
        with self.engine.connect() as conn:
            ids = list(conn.execute(select(incident_event.c.incident_id).where(
                incident_event.c.type == "access.granted").distinct()).scalars())
        expired = 0
        for iid in ids:
            expired += len(self.act(iid, lambda r, log: expire_access(r, log, now=now)))
        return expired

    def _overdue(self, incident_id: str, now: float) -> bool:
        row = self.incident(incident_id)
        if row is None:
            return False
        due = next_due(row, self.log(incident_id))
        return due is not None and due <= now

    def _outgoing(self, incident_row: dict[str, Any], rows: list[dict[str, Any]],
                  now: float) -> list[dict[str, Any]]:
        """The outbox rows for ``rows`` appended: webhook deliveries, lifecycle events."""
        out = deliveries(self.routes, incident_row, rows, now=now) if self.routes else []
        if self.lifecycle:
            out += lifecycle_queued(incident_row, rows, now=now)
        return out

    def due(self, now: float, limit: int = 100, *, routes: Sequence[str] | None = None
            ) -> list[dict[str, Any]]:
        """Deliveries to attempt now (of ``routes``, by name), in the order queued."""
        q = select(outbox).where(outbox.c.state == "pending", outbox.c.next_at <= now)
        if routes is not None:
            q = q.where(outbox.c.route.in_(list(routes)))
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(q.order_by(outbox.c.id).limit(limit))]

    def mark_sent(self, ids: Sequence[int]) -> None:
        """Deliveries done (the lifecycle topic acknowledged them)."""
        with self.engine.begin() as conn:
            for i in range(0, len(ids), CHUNK):
                conn.execute(update(outbox).where(outbox.c.id.in_(list(ids[i:i + CHUNK])))
                             .values(state="sent", attempts=outbox.c.attempts + 1))

    def attempted(self, delivery: dict[str, Any], *, status: int | None, error: str | None,
                  now: float) -> str:
        """Record one delivery attempt: in the incident's log (the comms log) and in the
        outbox (sent, pending again later, or dead); returns the new state."""
        attempts = delivery["attempts"] + 1
        ok = status is not None and 200 <= status < 300
        state = ("sent" if ok else "pending" if retryable(status) and attempts < MAX_ATTEMPTS
                 else "dead")
        body = {"route": delivery["route"], "about": delivery["seq"], "attempt": attempts,
                "status": status, "error": error, "outcome": state}

        def rows(row: dict[str, Any], log: list[dict[str, Any]]) -> list[dict[str, Any]]:
            seq = log[-1]["seq"] + 1
            out = [{"incident_id": row["id"], "seq": seq, "type": "notify.attempt",
                    "actor": "desk", "at": now, "body": body, "source_id": None}]
            if state == "dead":
                out.append({"incident_id": row["id"], "seq": seq + 1, "type": "notify.dead",
                            "actor": "desk", "at": now, "source_id": None,
                            "body": {**body, "payload": delivery["payload"]}})
            return out

        self.act(delivery["incident_id"], rows)
        with self.engine.begin() as conn:
            conn.execute(update(outbox).where(outbox.c.id == delivery["id"]).values(
                state=state, attempts=attempts,
                next_at=next_try(attempts, now) if state == "pending" else now))
        return state

    def timeline(self, incident_id: str) -> list[dict[str, Any]]:
        """The incident's typed timeline (``lifecycle.timeline``)."""
        return timeline(self.log(incident_id))

    # -- reading ---------------------------------------------------------------------------

    def incidents(self, *, status: Sequence[str] | None = None,
                  priority: Sequence[str] | None = None, limit: int = 100,
                  search: str | None = None, by_priority: bool = False
                  ) -> list[dict[str, Any]]:
        """Incidents, newest first (by when they were triggered), optionally filtered by
        status, priority, and ``search``: words that must each be in the id, the title, the
        root cause, the owner or the commander (any case). ``by_priority``: P1 first, then
        newest first within a priority."""
        q = select(incident)
        for word in (search or "").split():
            like = "%" + "".join("\\" + c if c in "\\%_" else c for c in word) + "%"
            q = q.where(or_(*(col.ilike(like, escape="\\") for col in (
                incident.c.id, incident.c.title, incident.c.root_cause, incident.c.owner_team,
                incident.c.owner_person, incident.c.commander))))
        if status:
            q = q.where(incident.c.status.in_(list(status)))
        if priority:
            q = q.where(incident.c.priority.in_(list(priority)))
        order = [incident.c.triggered_at.desc(), incident.c.id]
        q = q.order_by(*([incident.c.priority] if by_priority else []), *order).limit(limit)
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(q)]

    def unattended(self, now: float, *, after: float = UNATTENDED_AFTER,
                   priorities: Sequence[str] = ("P1", "P2")) -> list[dict[str, Any]]:
        """Open incidents of ``priorities`` with no incident commander ``after`` seconds
        (10 minutes by default) after they were triggered: the ones to chase."""
        q = (select(incident).where(
            incident.c.priority.in_(list(priorities)), incident.c.commander.is_(None),
            incident.c.status.not_in(["resolved", "closed"]),
            incident.c.triggered_at <= now - after)
            .order_by(incident.c.priority, incident.c.triggered_at))
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(q)]

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        with self.engine.connect() as conn:
            row = conn.execute(select(incident).where(incident.c.id == incident_id)).first()
            return _plain(row) if row is not None else None

    def log(self, incident_id: str) -> list[dict[str, Any]]:
        """The incident's log rows in order."""
        with self.engine.connect() as conn:
            return [_plain(r) for r in conn.execute(
                select(incident_event).where(incident_event.c.incident_id == incident_id)
                .order_by(incident_event.c.seq))]

    def count(self) -> tuple[int, int]:
        """(incidents, log rows)."""
        with self.engine.connect() as conn:
            n = conn.execute(select(func.count()).select_from(incident)).scalar_one()
            m = conn.execute(select(func.count()).select_from(incident_event)).scalar_one()
            return int(n), int(m)


def _plain(row: Any) -> dict[str, Any]:
    """A result row as a dict with plain ``str`` keys (SQLAlchemy's are a ``str`` subclass,
    which orjson refuses as keys)."""
    return {str(k): v for k, v in row._mapping.items()}


def project(row: dict[str, Any], log: list[dict[str, Any]], rows: list[dict[str, Any]]
            ) -> dict[str, Any]:
    """The incident's state after a command's ``rows`` (appended to ``log``)."""
    new = dict(row)
    for r in rows:
        if r["type"] == "status.changed":
            new = apply_status(new, r)
    held = holders([*log, *rows]).get("incident_commander")
    new["commander"] = held["person"] if held is not None else None
    new["seq"] = rows[-1]["seq"]
    new["updated_at"] = max(new["updated_at"], rows[-1]["at"])
    return new
