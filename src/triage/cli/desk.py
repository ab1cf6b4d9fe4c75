"""``triage desk ingest`` (triage's incident events into the desk's store) and ``triage
incident list|show`` (what the desk holds).

Exit codes: 0 done; 1 the database or Kafka unusable; 2 bad usage or config.
"""

from __future__ import annotations

import functools
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated, Any

import orjson
import typer
from rich.table import Table

from triage.cli.app import app, err, fail
from triage.cli.stream import BootstrapOpt, ConfigOpt, _kafka_unavailable, _settings
from triage.errors import InputError

if TYPE_CHECKING:
    from triage.app.settings import DeskSettings
    from triage.desk.store import DeskStore
    from triage.streams.ingest import IngestCounts
    from triage.streams.topics import Record

desk_app = typer.Typer(no_args_is_help=True,
                       help="The incident desk's store: take in triage's incident events.")
incident_app = typer.Typer(no_args_is_help=True, help="Incidents on the desk.")
app.add_typer(desk_app, name="desk")
app.add_typer(incident_app, name="incident")

DbOpt = Annotated[str | None, typer.Option(
    "--db", help="The desk's database: a SQLAlchemy URL (sqlite:///desk.db, "
    "postgresql+psycopg://user@host/db) or a SQLite file path (default: desk.url).")]
CLIENT_ID = "triage-desk-ingest"


@functools.lru_cache(maxsize=4)
def _desk(config: Path | None) -> DeskSettings:
    """The desk's settings (the file's, or the environment's alone), read once per command
    however many helpers ask."""
    return _settings(config, None).desk


def _url(db: str | None, config: Path | None) -> str:
    if db is None:
        return _desk(config).url
    return db if "://" in db else f"sqlite:///{db}"


def routes_of(config: Path | None) -> list[Any]:
    """The webhook routes of ``desk.notify`` (every writer queues deliveries for them)."""
    from triage.desk.notify import Route
    return [Route(r.name, r.url, r.format, tuple(r.priorities), tuple(r.teams),
                  tuple(r.audiences), tuple(r.kinds),
                  r.token.get_secret_value() if r.token else None)
            for r in _desk(config).notify]


def _open(url: str, config: Path | None = None) -> DeskStore:
    from sqlalchemy.exc import SQLAlchemyError

    from triage.desk.store import DeskStore
    try:
        return DeskStore(url, routes=routes_of(config), lifecycle=_desk(config).lifecycle)
    except SQLAlchemyError as exc:
        cause = getattr(exc, "orig", None) or exc  # the driver's own words, when it has them
        raise fail(f"--db {url}: {type(cause).__name__}: {cause}", 1) from None


def _dead_letter(raw: Any, exc: Exception, where: dict[str, Any]) -> bytes:
    from triage.core.render import render_failure
    from triage.core.types import Failed
    text = raw.decode("utf-8", "backslashreplace") if isinstance(raw, bytes) else str(raw)
    failed = Failed(type(exc).__name__, getattr(exc, "field", ""),
                    getattr(exc, "message", str(exc)), text, "incidents")
    return orjson.dumps(render_failure(failed, time.time()) | where)


def _lines(path: Path, size: int) -> Iterator[list[tuple[int, bytes]]]:
    stream: IO[bytes] = sys.stdin.buffer if str(path) == "-" else path.open("rb")
    try:
        batch: list[tuple[int, bytes]] = []
        for n, line in enumerate(stream, 1):
            if line.strip():
                batch.append((n, line.rstrip(b"\r\n")))
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch
    finally:
        if stream is not sys.stdin.buffer:
            stream.close()


@desk_app.command("ingest")
def desk_ingest(
    config: ConfigOpt = None,
    db: DbOpt = None,
    input_path: Annotated[Path | None, typer.Option(
        "--input", "-i", help="Incident events as JSON Lines (triage run's --output; - for "
        "stdin). Without it, the incidents topic is read.", dir_okay=False)] = None,
    dead_letter: Annotated[Path | None, typer.Option(
        "--dead-letter", help="With --input: where refused lines go, with the reason "
        "(JSON Lines, appended). From Kafka they go to the deadletter topic.",
        dir_okay=False)] = None,
    bootstrap: BootstrapOpt = None,
    once: Annotated[bool, typer.Option(
        "--once/--follow", help="From Kafka: --once reads what the topic holds now, then "
        "exits; --follow (default) keeps reading until SIGTERM/SIGINT.")] = False,
    group: Annotated[str | None, typer.Option(
        help="Consumer group (default: desk.group, else <kafka.app_id>-desk).")] = None,
    batch: Annotated[int, typer.Option(
        min=1, help="Events per database transaction (and per offset commit).")] = 500,
    timeout: Annotated[float, typer.Option(
        min=1.0, help="Seconds to wait for Kafka (partitions assigned, acks).")] = 60.0,
) -> None:
    """Apply triage's incident events to the desk, each once (by event_id): a replay, or a
    restart before offsets were committed, changes nothing. Offsets are committed only
    after the database has committed the batch; a database that goes away is waited for."""
    url = _url(db, config)
    store = _open(url, config)
    try:
        if input_path is not None:
            counts = _ingest_file(store, input_path, dead_letter, batch)
        else:
            counts = _ingest_kafka(store, config, bootstrap, once, group, batch, timeout)
    finally:
        store.close()
    err.print(f"desk ingest: {counts[0]:,} events applied, {counts[1]:,} seen before, "
              f"{counts[2]:,} dead-lettered", highlight=False)


def _ingest_file(store: DeskStore, path: Path, dead_letter: Path | None,
                 size: int) -> tuple[int, int, int]:
    from sqlalchemy.exc import SQLAlchemyError
    if str(path) != "-" and not path.exists():
        raise fail(f"--input {path}: no such file")
    added = seen = dead = 0
    out = dead_letter.open("ab") if dead_letter is not None else None
    try:
        for lines in _lines(path, size):
            try:
                result = store.ingest([raw for _, raw in lines])
            except SQLAlchemyError as exc:
                raise fail(f"--db {store.url}: {exc}", 1) from None
            added, seen = added + result.added, seen + result.duplicates
            for i, why in result.rejected:
                n, raw = lines[i]
                dead += 1
                letter = _dead_letter(raw, why, {"input": str(path), "line": n})
                if out is not None:
                    out.write(letter + b"\n")
                else:  # nothing lost: the whole dead letter, raw line included
                    sys.stderr.write(f"{path}:{n}: refused: {why}\n{letter.decode()}\n")
    finally:
        if out is not None:
            out.close()
    return added, seen, dead


def _ingest_kafka(store: DeskStore, config: Path | None, bootstrap: str | None, once: bool,
                  group: str | None, size: int, timeout: float) -> tuple[int, int, int]:
    from kafka.errors import KafkaError
    from sqlalchemy.exc import SQLAlchemyError

    from triage.cli.feedback import _stop_on_signals
    from triage.streams.ingest import (
        IngestCounts,
        KafkaDeadLetters,
        KafkaTopicSource,
        run_batches,
    )
    from triage.streams.topics import explained

    settings = _settings(config, bootstrap)
    consumer_group = group or settings.desk.group or f"{settings.kafka.app_id}-desk"
    source = sink = None
    stopping = threading.Event()

    def handle(records: Sequence[Record], now: float) -> IngestCounts:
        result = store.ingest([r.value or b"" for r in records])
        letters = [_dead_letter(records[i].value or b"", exc, {
            "topic": "incidents", "partition": records[i].partition,
            "offset": records[i].offset}) for i, exc in result.rejected]
        if letters:
            assert sink is not None
            sink(letters)
        return IngestCounts(read=len(records), stored=result.added,
                            repeats=result.duplicates, dead_lettered=len(letters))

    try:
        source = KafkaTopicSource(settings.kafka, "incidents", group=consumer_group,
                                  client_id=CLIENT_ID, timeout=timeout, max_records=size)
        sink = KafkaDeadLetters(settings.kafka, client_id=CLIENT_ID, timeout=timeout)
        err.print(f"desk ingest: {source.topic} (group {consumer_group}) → {store.url}"
                  f"{'' if once else '; following until SIGTERM/SIGINT'}", highlight=False)
        with _stop_on_signals(stopping), explained(settings.kafka):
            counts = run_batches(source, handle, what="incident events", once=once,
                                 stop=stopping.is_set)
    except KafkaError as exc:
        raise _kafka_unavailable(exc, settings) from None
    except SQLAlchemyError as exc:  # --once: the batch was not committed, nor its offsets
        raise fail(f"--db {store.url}: {exc}", 1) from None
    finally:
        if sink is not None:
            sink.close()
        if source is not None:
            source.close()
    return counts.stored, counts.repeats, counts.dead_lettered


def _when(t: float | None) -> str:
    from triage.core.timeutil import format_timestamp
    return (format_timestamp(t) or "")[:19].replace("T", " ") if t is not None else ""


def _jsonable(row: dict[str, Any]) -> dict[str, Any]:
    from triage.core.timeutil import format_timestamp
    return {k: (format_timestamp(v) if k.endswith(("_at", "_seen")) and isinstance(v, float)
                else v) for k, v in row.items()}


@incident_app.command("list")
def incident_list(
    config: ConfigOpt = None,
    db: DbOpt = None,
    status: Annotated[list[str] | None, typer.Option(
        "--status", "-s", help="Only these statuses (repeatable).")] = None,
    priority: Annotated[list[str] | None, typer.Option(
        "--priority", "-p", help="Only these priorities, P1..P4 (repeatable).")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many.")] = 50,
    unattended: Annotated[float | None, typer.Option(
        "--unattended", help="Only open P1/P2 incidents with no incident commander this "
        "many minutes after they were triggered.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON Lines.")] = False,
) -> None:
    """The desk's incidents, newest first."""
    client = _client(db, config)
    if client is not None:
        rows = _api_list(client, status, priority, limit, unattended)
    else:
        store = _open(_url(db, config), config)
        try:
            if unattended is not None:
                rows = store.unattended(time.time(), after=unattended * 60)[:limit]
            else:
                rows = store.incidents(status=status, priority=priority, limit=limit)
        finally:
            store.close()
    if as_json:
        for row in rows:
            sys.stdout.write(orjson.dumps(_jsonable(row)).decode() + "\n")
        return
    table = Table("id", "P", "status", "title", "owner", "commander", "triggered", box=None)
    for r in rows:
        owner = "/".join(x for x in (r["owner_team"], r["owner_person"]) if x)
        table.add_row(r["id"], r["priority"], r["status"], r["title"], owner,
                      r["commander"] or "—", _when(r["triggered_at"]))
    from rich.console import Console
    Console().print(table)


def _api_list(client: Any, status: list[str] | None, priority: list[str] | None, limit: int,
              unattended: float | None) -> list[dict[str, Any]]:
    """The incident list through the API, its times back as epoch seconds."""
    from triage.core.timeutil import parse_timestamp
    from triage.desk.client import ApiError
    try:
        rows = client.get("/api/v1/incidents", status=status, priority=priority,
                          limit=500 if unattended is not None else limit)["incidents"]
    except ApiError as exc:
        raise fail(str(exc), 1) from None
    for r in rows:
        for k, v in list(r.items()):
            if (k.endswith("_at") or k.endswith("_seen")) and isinstance(v, str):
                r[k] = parse_timestamp(v)
    if unattended is not None:
        now = time.time()
        rows = [r for r in rows if r["priority"] in ("P1", "P2") and not r["commander"]
                and r["status"] not in ("resolved", "closed")
                and r["triggered_at"] <= now - unattended * 60][:limit]
    return list(rows)


@incident_app.command("show")
def incident_show(
    incident_id: Annotated[str, typer.Argument(help="The incident's id.")],
    config: ConfigOpt = None,
    db: DbOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object: the incident "
                                          "and its log.")] = False,
) -> None:
    """One incident: its current state and its log, oldest first."""
    client = _client(db, config)
    if client is not None:
        _api_show(client, incident_id, as_json)
        return
    store = _open(_url(db, config), config)
    try:
        row = store.incident(incident_id)
        log = store.log(incident_id) if row is not None else []
    finally:
        store.close()
    if row is None:
        raise fail(f"no incident {incident_id!r} on the desk", 1)
    if as_json:
        from triage.desk.lifecycle import holders, timeline
        sys.stdout.write(orjson.dumps({
            "incident": _jsonable(row), "roles": holders(log),
            "timeline": [_jsonable(e) for e in timeline(log)],
            "log": [_jsonable({k: v for k, v in e.items() if k != "recorded_at"})
                    for e in log]}).decode() + "\n")
        return
    from rich.console import Console
    out = Console()
    out.print(f"[bold]{row['id']}[/]  {row['priority']}  {row['status']}  {row['title']}")
    out.print(f"services: {', '.join(row['services'])}; root cause: {row['root_cause']}; "
              f"owner: {row['owner_team']}/{row['owner_person']}; war room: "
              f"{'open' if row['war_room'] else 'no'}", highlight=False)
    from triage.desk.lifecycle import holders, timeline
    roles = holders(log)
    if "incident_commander" not in roles and row["owner_person"]:
        out.print(f"incident commander: none yet; proposed: {row['owner_person']} (on call "
                  f"for {row['owner_team']}, triage's owner)", highlight=False)
    if roles:
        out.print("roles: " + "; ".join(f"{r}: {h['person']}" for r, h in roles.items()),
                  highlight=False)
    table = Table("#", "at", "type", "by", "", "what", box=None)
    for e in timeline(log):
        mark = ("📌" if e["pinned"] else "") + (f"[{e['state']}]" if "state" in e else "")
        table.add_row(str(e["seq"]), _when(e["at"]), e["type"], e["author"], mark, e["text"])
    out.print(table)


def _api_show(client: Any, incident_id: str, as_json: bool) -> None:
    """``incident show`` through the API: the incident, its roles, its timeline."""
    from rich.console import Console

    from triage.desk.client import ApiError
    try:
        got = client.get(client.incident_path(incident_id))
    except ApiError as exc:
        raise fail(str(exc) if exc.status != 404 else
                   f"no incident {incident_id!r} on the desk", 1) from None
    if as_json:
        sys.stdout.write(orjson.dumps(got).decode() + "\n")
        return
    inc, out = got["incident"], Console()
    out.print(f"[bold]{inc['id']}[/]  {inc['priority']}  {inc['status']}  {inc['title']}")
    if got["roles"]:
        out.print("roles: " + "; ".join(f"{r}: {h['person']}" for r, h in
                                        got["roles"].items()), highlight=False)
    table = Table("#", "at", "type", "by", "what", box=None)
    for e in got["timeline"]:
        table.add_row(str(e["seq"]), str(e["at"])[:19].replace("T", " "), e["type"],
                      e["author"], e["text"])
    out.print(table)


ActorOpt = Annotated[str | None, typer.Option(
    "--as", help="Who does it (default: $TRIAGE_ACTOR, else the login name).")]


def _actor(given: str | None) -> str:
    import getpass
    import os
    return given or os.environ.get("TRIAGE_ACTOR") or getpass.getuser()


def _client(db: str | None, config: Path | None) -> Any:
    """The API client when desk.api_url is set and no --db is given, else None."""
    if db is not None:
        return None
    desk = _desk(config)
    if not desk.api_url:
        return None
    if desk.api_token is None:
        raise fail("desk.api_token: desk.api_url is set, but no token to call it with")
    from triage.desk.client import DeskClient
    return DeskClient(desk.api_url, desk.api_token.get_secret_value())


def _act(db: str | None, config: Path | None, incident_id: str, command: Any,
         api: tuple[str, dict[str, Any]] | list[tuple[str, dict[str, Any]]] | None = None
         ) -> None:
    """Run a lifecycle command on the incident (through the API when one is configured:
    ``api`` is its path under the incident and its body); print what it appended."""
    from sqlalchemy.exc import SQLAlchemyError

    from triage.desk.lifecycle import timeline
    from triage.errors import InputError
    client = _client(db, config) if api is not None else None
    if client is not None and api is not None:
        from triage.desk.client import ApiError
        for path, body in api if isinstance(api, list) else [api]:
            try:
                done = client.post(client.incident_path(incident_id, path), body)
            except ApiError as exc:
                raise fail(str(exc), 1) from None
            for e in done["appended"]:
                err.print(f"{incident_id} #{e['seq']} {e['type']}: {e.get('text', '')}",
                          highlight=False)
        return
    store = _open(_url(db, config), config)
    try:
        rows = store.act(incident_id, command)
    except InputError as exc:
        raise fail(str(exc), 1) from None
    except SQLAlchemyError as exc:
        raise fail(f"--db {store.url}: {exc}", 1) from None
    finally:
        store.close()
    for e in timeline(rows):
        err.print(f"{incident_id} #{e['seq']} {e['type']}: {e['text']}", highlight=False)


def _status_command(to: str, actor: str, reason: str | None, correct: bool) -> Any:

    from triage.desk import lifecycle
    return lambda row, log: lifecycle.set_status(row, log, to, actor=actor, at=time.time(),
                                                 reason=reason, correct=correct)


IdArg = Annotated[str, typer.Argument(help="The incident's id.")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", "-r", help="Why.")]


@incident_app.command("ack")
def incident_ack(incident_id: IdArg, config: ConfigOpt = None, db: DbOpt = None,
                 actor: ActorOpt = None) -> None:
    """Acknowledge the incident: someone is on it."""
    _act(db, config, incident_id, _status_command("acknowledged", _actor(actor), None, False),
         ("/status", {"status": "acknowledged"}))


@incident_app.command("status")
def incident_status(
    incident_id: IdArg,
    status: Annotated[str, typer.Argument(help="acknowledged, investigating, identified, "
                                          "mitigated, resolved or closed.")],
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
    reason: ReasonOpt = None,
    correct: Annotated[bool, typer.Option(
        "--correct", help="Go back to an earlier status (a correction; needs --reason).")
    ] = False,
) -> None:
    """Move the incident's status (forward; back only as a correction, or a reopen of a
    resolved incident to investigating, each with a reason)."""
    _act(db, config, incident_id, _status_command(status, _actor(actor), reason, correct),
         ("/status", {"status": status, "reason": reason, "correct": correct}))


@incident_app.command("resolve")
def incident_resolve(incident_id: IdArg, config: ConfigOpt = None, db: DbOpt = None,
                     actor: ActorOpt = None, reason: ReasonOpt = None) -> None:
    """The incident is over for its users."""
    _act(db, config, incident_id, _status_command("resolved", _actor(actor), reason, False),
         ("/status", {"status": "resolved", "reason": reason}))


@incident_app.command("close")
def incident_close(incident_id: IdArg, config: ConfigOpt = None, db: DbOpt = None,
                   actor: ActorOpt = None, reason: ReasonOpt = None) -> None:
    """Close a resolved incident (final)."""
    _act(db, config, incident_id, _status_command("closed", _actor(actor), reason, False),
         ("/status", {"status": "closed", "reason": reason}))


@incident_app.command("note")
def incident_note(
    incident_id: IdArg,
    text: Annotated[str, typer.Argument(help="What to put on the timeline.")],
    kind: Annotated[str, typer.Option(
        "--type", "-t", help="observation, hypothesis, negative_finding, decision or "
        "action.")] = "observation",
    pin: Annotated[bool, typer.Option("--pin", help="Pin it to the top.")] = False,
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
) -> None:
    """Add a typed entry to the incident's timeline."""
    from triage.desk import lifecycle
    who = _actor(actor)
    _act(db, config, incident_id, lambda row, log: lifecycle.add_entry(
        row, log, kind, text, actor=who, at=time.time(), pinned=pin),
        ("/entries", {"type": kind, "text": text, "pinned": pin}))


@incident_app.command("judge")
def incident_judge(
    incident_id: IdArg,
    entry: Annotated[int, typer.Argument(help="The hypothesis's entry number (#).")],
    state: Annotated[str, typer.Argument(help="confirmed, refuted or open.")],
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
    reason: ReasonOpt = None,
) -> None:
    """Confirm or refute a hypothesis on the timeline."""
    from triage.desk import lifecycle
    who = _actor(actor)
    _act(db, config, incident_id, lambda row, log: lifecycle.judge(
        row, log, entry, state, actor=who, at=time.time(), reason=reason),
        (f"/entries/{entry}/judgement", {"state": state, "reason": reason}))


@incident_app.command("role")
def incident_role(
    incident_id: IdArg,
    role: Annotated[str, typer.Argument(help="incident_commander, comms_lead, ops_lead, "
                                        "scribe or liaison.")],
    person: Annotated[str | None, typer.Argument(
        help="Who takes it (a handoff if someone holds it). Omit with --renounce.")] = None,
    renounce: Annotated[bool, typer.Option("--renounce", help="Its holder gives it up.")
                        ] = False,
    note: Annotated[str | None, typer.Option("--note", "-n", help="The handoff note.")
                    ] = None,
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
) -> None:
    """Assign a role (time-bounded: who held it before renounces it, with the note)."""
    from triage.desk import lifecycle
    who = _actor(actor)
    if renounce:
        _act(db, config, incident_id, lambda row, log: lifecycle.renounce_role(
            row, log, role, actor=who, at=time.time(), note=note),
            ("/roles", {"role": role, "renounce": True, "note": note}))
        return
    if person is None:
        raise fail("role: give the person who takes it (or --renounce)")
    _act(db, config, incident_id, lambda row, log: lifecycle.assume_role(
        row, log, role, person, actor=who, at=time.time(), note=note),
        ("/roles", {"role": role, "person": person, "note": note}))


@desk_app.command("serve")
def desk_serve(
    config: ConfigOpt = None,
    db: DbOpt = None,
    host: Annotated[str | None, typer.Option(help="Address (default: desk.host).")] = None,
    port: Annotated[int | None, typer.Option(
        min=0, max=65535, help="Port (default: desk.port, 9095).")] = None,
) -> None:
    """Serve the desk's HTTP API (OpenAPI document at /api/v1/openapi.json) until
    SIGTERM/SIGINT. Tokens and their roles come from desk.tokens."""
    from aiohttp import web

    from triage.desk.api import Token, create_desk_app
    desk = _desk(config)
    if not desk.tokens:
        raise fail("desk.tokens: no API token configured (each: name, token of 16+ "
                   "characters, role viewer|responder|admin)")
    store = _open(_url(db, config), config)
    tokens = [Token(t.name, t.token.get_secret_value(), t.role) for t in desk.tokens]
    app = create_desk_app(store, tokens, clock=time.time,
                          prometheus_url=desk.prometheus_url)
    where = (host or desk.host, desk.port if port is None else port)
    err.print(f"desk: http://{where[0]}:{where[1]}/api/v1/incidents ({store.url})",
              highlight=False)
    try:
        web.run_app(app, host=where[0], port=where[1], print=None, access_log=None)
    finally:
        store.close()


@incident_app.command("update")
def incident_update(
    incident_id: IdArg,
    audience: Annotated[str, typer.Option(
        "--audience", "-A", help="responders, internal, executive or customers.")],
    text: Annotated[str | None, typer.Option(
        "--text", help="The message sent (recorded in the comms log). Without it, the "
        "audience's template is printed, filled in, and nothing is recorded.")] = None,
    channel: Annotated[str, typer.Option(
        help="Where it was sent: desk, webhook, email, chat or status-page.")] = "desk",
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
) -> None:
    """A status update to an audience: the template to start from, or the message sent.
    A customer update that names a service, team or person is refused."""
    from triage.desk import updates
    if text is None:
        store = _open(_url(db, config), config)
        try:
            row = store.incident(incident_id)
            if row is None:
                raise fail(f"no incident {incident_id!r} on the desk", 1)
            try:
                sys.stdout.write(updates.draft(row, store.log(incident_id), audience,
                                               now=time.time()) + "\n")
            except InputError as exc:
                raise fail(str(exc)) from None
        finally:
            store.close()
        return
    who = _actor(actor)
    _act(db, config, incident_id, lambda row, log: updates.send_update(
        row, log, audience, text, actor=who, at=time.time(), channel=channel),
        ("/updates", {"audience": audience, "text": text, "channel": channel}))


@incident_app.command("mitigate")
def incident_mitigate(
    incident_id: IdArg,
    action: Annotated[str, typer.Argument(help="What is tried.")],
    tests: Annotated[int | None, typer.Option(
        "--tests", help="The hypothesis it tests (its timeline entry #).")] = None,
    promql: Annotated[str | None, typer.Option(
        help="Success criteria: holds while Prometheus returns a series for it.")] = None,
    manual: Annotated[str | None, typer.Option(
        help="Success criteria a person checks (triage incident check).")] = None,
    window: Annotated[float, typer.Option(
        min=0, help="Minutes the criteria must hold before the incident may resolve.")
    ] = 10.0,
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
) -> None:
    """Log a mitigation: the action, the hypothesis it tests, how to tell it worked."""
    from triage.desk import mitigation
    who = _actor(actor)
    _act(db, config, incident_id, lambda row, log: mitigation.add_mitigation(
        row, log, action, actor=who, at=time.time(), hypothesis=tests, promql=promql,
        manual=manual, window=window * 60),
        ("/mitigations", {"action": action, "hypothesis": tests, "promql": promql,
                          "manual": manual, "window": window * 60}))


@incident_app.command("check")
def incident_check(
    incident_id: IdArg,
    mitigation_seq: Annotated[int, typer.Argument(help="The mitigation's entry #.")],
    holds: Annotated[bool, typer.Option("--holds/--fails", help="Whether its criteria "
                                        "hold now.")],
    outcome: Annotated[str | None, typer.Option(
        help="Also set its outcome: worked, failed or abandoned.")] = None,
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
) -> None:
    """Record a manual check of a mitigation's criteria (and its outcome)."""
    from triage.desk import mitigation
    who = _actor(actor)
    at = time.time()

    def command(row: dict[str, Any], log: list[dict[str, Any]]) -> list[dict[str, Any]]:
        rows = mitigation.check(row, log, mitigation_seq, holds, actor=who, at=at)
        if outcome is not None:
            rows += mitigation.set_outcome(row, [*log, *rows], mitigation_seq, outcome,
                                           actor=who, at=at)
        return rows

    calls: list[tuple[str, dict[str, Any]]] = [
        (f"/mitigations/{mitigation_seq}/checks", {"holds": holds})]
    if outcome is not None:
        calls.append((f"/mitigations/{mitigation_seq}/outcome", {"outcome": outcome}))
    _act(db, config, incident_id, command, calls)


@incident_app.command("change")
def incident_change(
    incident_id: IdArg,
    service: Annotated[str, typer.Argument(help="The service changed.")],
    what: Annotated[str, typer.Option("--what", help="What is changed.")],
    why: Annotated[str, typer.Option("--why", help="Why, now.")],
    rollback: Annotated[str, typer.Option("--rollback", help="How to undo it.")],
    kind: Annotated[str, typer.Option(
        help="deploy, config, feature_flag or infra.")] = "config",
    risk: Annotated[str, typer.Option(help="low, medium or high.")] = "medium",
    approver: Annotated[str | None, typer.Option(
        help="Who approved it, if approved already (else: triage incident approve).")
    ] = None,
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
) -> None:
    """Record an emergency change made for the incident (triage then suspects it)."""
    from triage.desk import changes
    who = _actor(actor)
    _act(db, config, incident_id, lambda row, log: changes.record_change(
        row, log, service=service, kind=kind, what=what, why=why, risk=risk,
        rollback=rollback, actor=who, at=time.time(), approver=approver),
        ("/changes", {"service": service, "kind": kind, "what": what, "why": why,
                      "risk": risk, "rollback": rollback, "approver": approver}))


@incident_app.command("approve")
def incident_approve(
    incident_id: IdArg,
    change: Annotated[int, typer.Argument(help="The emergency change's timeline entry #.")],
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
) -> None:
    """Approve an emergency change (after it is made: a retro-approval)."""
    from triage.desk import changes
    who = _actor(actor)
    _act(db, config, incident_id, lambda row, log: changes.approve_change(
        row, log, change, approver=who, at=time.time()),
        (f"/changes/{change}/approval", {}))


@incident_app.command("access")
def incident_access(
    incident_id: IdArg,
    resource: Annotated[str, typer.Argument(help="What access is asked to.")],
    why: Annotated[str, typer.Option("--why", help="What it is needed for.")],
    level: Annotated[str, typer.Option(help="read, write or admin.")] = "read",
    minutes: Annotated[float, typer.Option(min=0, help="How long, at most.")] = 60.0,
    person: Annotated[str | None, typer.Option(
        "--for", help="Who needs it (default: you).")] = None,
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
) -> None:
    """Request just-in-time access for the incident (granted with triage incident grant)."""
    from triage.desk import changes
    who = _actor(actor)
    holder = person or who
    _act(db, config, incident_id, lambda row, log: changes.request_access(
        row, log, who=holder, resource=resource, level=level, why=why, minutes=minutes,
        actor=who, at=time.time()),
        ("/access", {"who": holder, "resource": resource, "level": level, "why": why,
                     "minutes": minutes}))


def _decide(approve: bool) -> Any:
    def decide(
        incident_id: IdArg,
        request: Annotated[int, typer.Argument(help="The access request's timeline entry #.")],
        note: Annotated[str | None, typer.Option(help="Why.")] = None,
        config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
    ) -> None:
        from triage.desk import changes
        who = _actor(actor)
        _act(db, config, incident_id, lambda row, log: changes.decide_access(
            row, log, request, approve, approver=who, at=time.time(), note=note),
            (f"/access/{request}/decision", {"approve": approve, "note": note}))
    decide.__doc__ = ("Grant an access request, until its expiry; you are the approver."
                      if approve else "Deny an access request.")
    return decide


incident_app.command("grant")(_decide(True))
incident_app.command("deny")(_decide(False))


@incident_app.command("revoke")
def incident_revoke(
    incident_id: IdArg,
    request: Annotated[int, typer.Argument(help="The access request's timeline entry #.")],
    reason: ReasonOpt = None,
    config: ConfigOpt = None, db: DbOpt = None, actor: ActorOpt = None,
) -> None:
    """Revoke granted access before it expires."""
    from triage.desk import changes
    who = _actor(actor)
    _act(db, config, incident_id, lambda row, log: changes.revoke_access(
        row, log, request, actor=who, at=time.time(), reason=reason),
        (f"/access/{request}/revoke", {"reason": reason}))


@desk_app.command("publish")
def desk_publish(
    config: ConfigOpt = None,
    db: DbOpt = None,
    bootstrap: BootstrapOpt = None,
    once: Annotated[bool, typer.Option(
        "--once/--follow", help="--once: publish what is queued, then exit; --follow "
        "(default): keep publishing until SIGTERM/SIGINT.")] = False,
) -> None:
    """Publish the desk's lifecycle events (every change to an incident) on the lifecycle
    topic (kafka.topics.lifecycle, incidents.lifecycle), in order per incident, keyed by
    its id; desk.lifecycle: true makes every writer queue them."""
    from kafka.errors import KafkaError

    from triage.cli.feedback import _stop_on_signals
    from triage.desk.events import LIFECYCLE_ROUTE
    from triage.streams.relay import relay
    from triage.streams.topics import explained

    settings = _settings(config, bootstrap)
    if not settings.desk.lifecycle:
        err.print("desk publish: desk.lifecycle is off, so nothing new is queued; publishing "
                  "what is queued already", highlight=False)
    store = _open(_url(db, config), config)
    stopping = threading.Event()

    def fetch(n: int) -> list[tuple[Any, bytes | None, Any]]:
        return [(d["id"], d["incident_id"].encode(), d["payload"]) for d in
                store.due(time.time() + 1e9, n, routes=[LIFECYCLE_ROUTE])]

    try:
        with _stop_on_signals(stopping), explained(settings.kafka):
            sent = relay(settings.kafka, "lifecycle", fetch=fetch, mark=store.mark_sent,
                         once=once, stop=stopping.is_set)
    except KafkaError as exc:
        raise _kafka_unavailable(exc, settings) from None
    finally:
        store.close()
    err.print(f"desk publish: {sent:,} lifecycle events published", highlight=False)
