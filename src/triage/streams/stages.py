"""The two stages as partitioned, persistent objects: what the faust agents call.

No Kafka and no event loop here (the agents in ``triage.streams.agents`` do the I/O), so the
stream semantics are plain functions to test.

**A partition is the unit of state, ownership and clock.** Each assigned partition of
``alerts.raw`` gets its own ``Pipeline`` and each of ``alerts.keyed`` its own
``IncidentEngine``, built from the worker's templates (one topology, one noise model, one
change index shared by all). When Kafka moves a partition to another worker, its objects are
dropped here and rebuilt there from the partition's table state, nothing else moves.

**State** is written per batch as key/value deltas (``take_changes``) into a faust table whose
changelog is co-partitioned with the input topic. Keys start with the partition number:
``<p>|a|<fingerprint>`` (dedup/flap state), ``<p>|s`` (silences from the stream),
``<p>|i|<incident id>`` (an incident with its sequence number) and ``<p>|m``, the partition's
meta record: the input offset its state reflects, its clock and counters (and, in stage 2,
its timers). The meta record is written last, so a crash between the deltas and the meta
replays the batch against partly newer state, which dedup and the incident engine recognise
as repeats; a message at or before the meta's offset is skipped, so a batch whose meta was
written is never applied twice.

**Outputs are delivered before state is written** (the agents await the broker's acks
first). A crash after the outputs but before the state replays the input and sends the same
records again, with the same event ids: exact duplicates, never a loss.

**Clock.** Event time, as in the embedded path: stage 1's clock is the pipeline's watermark
(envelope ``received_at`` or the alerts' own times), stage 2's is the largest ``at`` of the
stage-1 records it has seen. A partition that gets no input for ``idle_after`` seconds of wall
time has its clock moved on by the wall time that passes (``tick_idle``), so timeouts, held
alerts and waiting pages are decided without new input. A replay that never pauses that long
is decided by event time alone, as ``triage run`` decides it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from time import perf_counter
from typing import Any, NamedTuple

import orjson

from triage.core.changes import ChangeRecord, change_from_dict
from triage.core.dedup import DedupStore
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.render import render_failure, render_outcome
from triage.core.silences import Silence, SilenceSet
from triage.core.timeutil import format_timestamp, parse_timestamp
from triage.core.types import Alert, Failed, Outcome, Triaged
from triage.errors import DecodeError, InputError, SchemaError


class Output(NamedTuple):
    """A message to send: logical topic (``keyed`` | ``incidents`` | ``deadletter`` |
    ``changes``), key, value, and a partition when it must go to one (clock records)."""

    topic: str
    key: bytes | None
    value: bytes
    partition: int | None = None

# (table key, value); value None deletes the key (a tombstone in the changelog)
StateWrite = tuple[bytes, bytes | None]

IDLE_AFTER = 1.0  # wall seconds without input before a partition's clock moves by itself
# Stage 1 tells every stage-2 partition its clock when it has moved this much (event time)
# since it last did: stage 2 then decides pages and quiet periods on time even when the
# input only repeats what is known (repeats send nothing downstream).
CLOCK_RESOLUTION = 1.0

_dumps = orjson.dumps


def state_prefix(partition: int) -> bytes:
    """Every table key of ``partition`` starts with this."""
    return b"%d|" % partition


@dataclass
class _Part:
    """What every partition object has: the input offset its state reflects, and when (wall
    time) it last had input or last moved its clock."""

    offset: int = -1
    last_input: float = 0.0
    last_advance: float = 0.0


@dataclass
class IntakePartition(_Part):
    pipeline: Pipeline = field(default_factory=Pipeline)
    changes: list[ChangeRecord] = field(default_factory=list)
    clock_sent: float = 0.0


@dataclass
class IncidentPartition(_Part):
    engine: IncidentEngine = field(default_factory=IncidentEngine)
    clock: float = 0.0


def domain_mapper(template: IncidentEngine) -> Callable[[Mapping[str, str]], str]:
    """The correlation domain of an alert: the topology component of its service (as
    ``IncidentEngine.service_of`` finds it). Everything that can join one incident has the
    same domain, so keying ``alerts.keyed`` by it brings an incident's alerts together.

    >>> domain_mapper(IncidentEngine())({"alertname": "Up", "service": "db"})
    'db'
    """
    mapper, topology = template.mapper, template.topology

    def domain_of(labels: Mapping[str, str]) -> str:
        service = mapper.service_of(labels)
        if service is None:
            return "alert:" + labels.get("alertname", "?")
        return topology.component(service)

    return domain_of


@dataclass
class Observations:
    """What a stage did since the last ``take_observations`` (for the worker's metrics;
    collected only while ``IntakeStage.observe`` / ``IncidentStage.observe`` is set).

    ``outcomes``: stage-1 outcomes of the input; ``swept``: state changes stage 1 decided
    on its own clock; ``events``: incident events; ``seconds``: processing time per payload
    (stage 1) or per observed group of stage-1 records (stage 2)."""

    outcomes: list[Outcome] = field(default_factory=list)
    swept: int = 0
    events: list[dict[str, Any]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)


class IntakeStage:
    """Stage 1 over the partitions of ``alerts.raw`` this worker owns."""

    def __init__(self, template: Pipeline, *,
                 domain_of: Callable[[Mapping[str, str]], str],
                 keyed_partitions: int = 1) -> None:
        self.template = template
        self.domain_of = domain_of
        self.keyed_partitions = keyed_partitions
        self.parts: dict[int, IntakePartition] = {}
        self.replayed = 0  # messages skipped because their effect is already in the state
        self.observe = False  # collect Observations (metrics)
        self.observed = Observations()

    def take_observations(self) -> Observations:
        """What was observed since the last call (empty unless ``observe``)."""
        taken, self.observed = self.observed, Observations()
        return taken

    def new_pipeline(self) -> Pipeline:
        """A pipeline like the template, with state of its own."""
        t = self.template
        return Pipeline(fingerprinter=t.fingerprinter, silences=SilenceSet(t.silences),
                        thresholds=t.thresholds,
                        dedup=DedupStore(t.dedup.policy, t.dedup.flap), limits=t.limits,
                        noise_scorer=t.noise_scorer, noise_threshold=t.noise_threshold)

    def restore(self, partition: int, items: Iterable[tuple[bytes, bytes]],
                wall: float = 0.0) -> IntakePartition:
        """Build the partition's pipeline from its table entries."""
        pipeline = self.new_pipeline()
        part = IntakePartition(pipeline=pipeline, last_input=wall, last_advance=wall)
        pipeline.on_change = part.changes.append
        alerts: list[tuple[str, list[Any]]] = []
        for key, value in items:
            _, kind, ident = [*key.split(b"|", 2), b""][:3]
            rec = orjson.loads(value)
            if kind == b"a":
                alerts.append((ident.decode(), rec))
            elif kind == b"s":
                for s in rec:
                    pipeline.silences.add(Silence.from_record(s))
            elif kind == b"m":
                part.offset = rec["offset"]
                pipeline.watermark, pipeline.next_sweep = rec["clock"]
                part.clock_sent = rec.get("clock_sent", 0.0)
                pipeline.counts.update(rec["counts"])
        pipeline.dedup.load(alerts)
        pipeline.dedup.take_changes()  # what was just loaded is already saved
        self.parts[partition] = part
        return part

    def drop(self, partition: int) -> None:
        """Forget a partition (revoked: another worker owns it now)."""
        self.parts.pop(partition, None)

    def process(self, partition: int, offset: int, raw: bytes | None,
                wall: float = 0.0) -> list[Output]:
        """Triage one ``alerts.raw`` message; returns what to send."""
        part = self.parts[partition]
        part.last_input = part.last_advance = wall
        if offset <= part.offset:
            self.replayed += 1
            return []
        part.offset = offset
        pipeline = part.pipeline
        if self.observe:
            swept_before = pipeline.counts["swept"]
            started = perf_counter()
            outcomes = pipeline.process(raw if raw is not None else b"")
            seen = self.observed
            seen.seconds.append(perf_counter() - started)
            swept = pipeline.counts["swept"] - swept_before
            seen.swept += swept
            seen.outcomes.extend(outcomes[swept:] if swept else outcomes)
        else:
            outcomes = pipeline.process(raw if raw is not None else b"")
        out = self._route(outcomes, pipeline.watermark, partition, offset)
        if part.changes:
            for change in part.changes:
                out.append(Output("changes", change.id.encode(),
                                  _dumps(render_change(change))))
            part.changes.clear()
        self._clock(part, out)
        return out

    def _clock(self, part: IntakePartition, out: list[Output]) -> None:
        now = part.pipeline.watermark
        if now - part.clock_sent >= CLOCK_RESOLUTION:
            part.clock_sent = now
            record = _dumps({"schema_version": 1, "kind": "clock", "t": now})
            out.extend(Output("keyed", None, record, p) for p in range(self.keyed_partitions))

    def process_many(self, partition: int, messages: Sequence[tuple[int, bytes | None]],
                     wall: float = 0.0) -> list[Output]:
        """``process`` for consecutive messages of one partition."""
        out: list[Output] = []
        for offset, raw in messages:
            out += self.process(partition, offset, raw, wall)
        return out

    def tick_idle(self, partition: int, wall: float,
                  idle_after: float = IDLE_AFTER) -> list[Output] | None:
        """If the partition has been idle, move its clock on by the wall time that passed
        and return what expired (timeouts, released holds); None if it was not idle."""
        part = self.parts[partition]
        if wall - part.last_input < idle_after:
            return None
        elapsed = max(0.0, wall - part.last_advance)
        part.last_advance = wall
        pipeline = part.pipeline
        outcomes = pipeline.tick(pipeline.watermark + elapsed)
        if self.observe:
            self.observed.swept += len(outcomes)
        out = self._route(outcomes, pipeline.watermark, partition, None)
        if out:
            self._clock(part, out)
        return out

    def _route(self, outcomes: list[Outcome], now: float, partition: int,
               offset: int | None) -> list[Output]:
        out: list[Output] = []
        for o in outcomes:
            if isinstance(o, Triaged):
                record = render_outcome(o, now)
                assert record is not None
                record["t"] = now  # the exact clock: stage 2's event time
                # the input message it came from: stage 2 observes the records of one
                # message together, as the embedded runtime observes one line
                record["src"] = [partition, offset]
                out.append(Output("keyed", self.domain_of(o.alert.labels).encode(),
                                  _dumps(record)))
            elif isinstance(o, Failed):
                out.append(Output("deadletter", None,
                                  _dumps(dead_letter(o, now, "raw", partition, offset))))
        return out

    def take_state(self, partition: int) -> list[StateWrite]:
        """The partition's state changed since the last call, meta record last."""
        part = self.parts[partition]
        pipeline = part.pipeline
        prefix = state_prefix(partition)
        changed, removed = pipeline.dedup.take_changes()
        writes: list[StateWrite] = [(prefix + b"a|" + fp.encode(), None) for fp in removed]
        writes.extend((prefix + b"a|" + fp.encode(), _dumps(rec)) for fp, rec in changed.items())
        if pipeline.silences_changed:
            writes.append((prefix + b"s", _dumps([s.to_record() for s in pipeline.silences])))
            pipeline.silences_changed = False
        writes.append((prefix + b"m", _dumps({
            "offset": part.offset, "clock": [pipeline.watermark, pipeline.next_sweep],
            "clock_sent": part.clock_sent, "counts": dict(pipeline.counts)})))
        return writes

    def counts(self) -> Counter[str]:
        """Stage-1 counts summed over this worker's partitions."""
        total: Counter[str] = Counter()
        for part in self.parts.values():
            total.update(part.pipeline.counts)
        return total


class IncidentStage:
    """Stage 2 over the partitions of ``alerts.keyed`` this worker owns."""

    def __init__(self, template: IncidentEngine) -> None:
        self.template = template
        self.changes = template.changes  # shared: every partition sees every change
        self.parts: dict[int, IncidentPartition] = {}
        self.replayed = 0
        self.observe = False  # collect Observations (metrics)
        self.observed = Observations()

    def take_observations(self) -> Observations:
        """What was observed since the last call (empty unless ``observe``)."""
        taken, self.observed = self.observed, Observations()
        return taken

    def new_engine(self) -> IncidentEngine:
        """An engine like the template, with incidents of its own."""
        t = self.template
        return IncidentEngine(topology=t.topology, mapper=t.mapper, changes=self.changes,
                              policy=t.policy, priority=t.priority_policy,
                              war_room=t.war_room_policy, oncall=t.oncall)

    def restore(self, partition: int, items: Iterable[tuple[bytes, bytes]],
                wall: float = 0.0) -> IncidentPartition:
        """Build the partition's engine from its table entries."""
        engine = self.new_engine()
        part = IncidentPartition(engine=engine, last_input=wall, last_advance=wall)
        records: list[dict[str, Any]] = []
        timers: list[list[Any]] = []
        for key, value in items:
            _, kind, _ = [*key.split(b"|", 2), b""][:3]
            rec = orjson.loads(value)
            if kind == b"i":
                records.append(rec)
            elif kind == b"m":
                part.offset = rec["offset"]
                part.clock = rec["clock"]
                timers = rec["timers"]
                engine.counts.update(rec["counts"])
        engine.load(records, timers)
        engine.take_changes()
        self.parts[partition] = part
        return part

    def drop(self, partition: int) -> None:
        """Forget a partition (revoked: another worker owns it now)."""
        self.parts.pop(partition, None)

    def process(self, partition: int, offset: int, value: bytes | None,
                wall: float = 0.0) -> list[Output]:
        """Correlate one ``alerts.keyed`` record; returns the incident events to send."""
        return self.process_many(partition, [(offset, value)], wall)

    def process_many(self, partition: int, messages: Sequence[tuple[int, bytes | None]],
                     wall: float = 0.0) -> list[Output]:
        """Correlate consecutive records of one partition. Records that came from the same
        input message (``src``) are observed together, one decision for all of them, as
        ``triage run`` observes the alerts of one line."""
        part = self.parts[partition]
        part.last_input = part.last_advance = wall
        out: list[Output] = []
        group: list[Triaged] = []
        group_src: Any = None
        group_offset = -1
        for offset, value in messages:
            if offset <= part.offset:
                self.replayed += 1
                continue
            try:
                triaged, at, src = _decode_keyed(value)
            except InputError as exc:
                out += self._observe(part, group, group_offset, partition)
                group = []
                failure = Failed(type(exc).__name__, exc.field, exc.message,
                                 _text(value), "alerts.keyed")
                out.append(Output("deadletter", None, _dumps(
                    dead_letter(failure, part.clock, "keyed", partition, offset))))
                part.offset = offset
                continue
            if group and (triaged is None or src is None or src != group_src
                          or at != part.clock):
                out += self._observe(part, group, group_offset, partition)
                group = []
            part.clock = max(part.clock, at)
            if triaged is None:  # a clock record: time has passed upstream
                out += self._guard(part, partition, offset, value,
                                   lambda: part.engine.tick(part.clock))
                part.offset = offset
                continue
            group.append(triaged)
            group_src, group_offset = src, offset
        out += self._observe(part, group, group_offset, partition)
        return out

    def _observe(self, part: IncidentPartition, group: list[Triaged], offset: int,
                 partition: int) -> list[Output]:
        if not group:
            return []
        started = perf_counter()
        out = self._guard(part, partition, offset, None,
                          lambda: part.engine.observe(group, part.clock))
        if self.observe:
            self.observed.seconds.append(perf_counter() - started)
        part.offset = offset
        return out

    def _guard(self, part: IncidentPartition, partition: int, offset: int,
               value: bytes | None, step: Callable[[], list[dict[str, Any]]]) -> list[Output]:
        try:
            events = step()
        except Exception as exc:  # the boundary: a bug must not stop the stream
            failure = Failed(type(exc).__name__, "", f"internal error: {exc!r}",
                             _text(value), "alerts.keyed")
            return [Output("deadletter", None, _dumps(
                dead_letter(failure, part.clock, "keyed", partition, offset)))]
        if self.observe:
            self.observed.events.extend(events)
        return _events(events)

    def tick_idle(self, partition: int, wall: float,
                  idle_after: float = IDLE_AFTER) -> list[Output] | None:
        """As ``IntakeStage.tick_idle``: pages due, quiet periods over, war-room rules."""
        part = self.parts[partition]
        if wall - part.last_input < idle_after:
            return None
        part.clock += max(0.0, wall - part.last_advance)
        part.last_advance = wall
        events = part.engine.tick(part.clock)
        if self.observe:
            self.observed.events.extend(events)
        return _events(events)

    def take_state(self, partition: int) -> list[StateWrite]:
        """The partition's state changed since the last call, meta record last."""
        part = self.parts[partition]
        engine = part.engine
        prefix = state_prefix(partition)
        changed, removed = engine.take_changes()
        writes: list[StateWrite] = [(prefix + b"i|" + i.encode(), None) for i in removed]
        writes.extend((prefix + b"i|" + i.encode(), _dumps(rec)) for i, rec in changed.items())
        writes.append((prefix + b"m", _dumps({
            "offset": part.offset, "clock": part.clock, "timers": engine.timers(),
            "counts": dict(engine.counts)})))
        return writes

    def add_change(self, value: bytes | None) -> bool:
        """Index a change record from the ``changes`` topic; False if bad or known."""
        try:
            obj = orjson.loads(value or b"")
            if not isinstance(obj, dict):
                raise SchemaError("", "expected a change record object")
            record = change_from_dict(obj)
        except (orjson.JSONDecodeError, InputError):
            return False
        added = self.changes.add(record)
        self.changes.take_new()  # persistence is the topic itself, nothing to keep here
        return added

    def counts(self) -> Counter[str]:
        """Stage-2 counts summed over this worker's partitions."""
        total: Counter[str] = Counter()
        for part in self.parts.values():
            total.update(part.engine.counts)
        return total


def _decode_keyed(value: bytes | None) -> tuple[Triaged | None, float, Any]:
    triaged, at = triaged_from_record(value)
    src = None
    if triaged is not None:
        # cheap second look for the source marker (the record was valid JSON just now)
        rec = orjson.loads(value or b"")
        src = tuple(rec["src"]) if isinstance(rec.get("src"), list) else None
    return triaged, at, src


def _events(events: list[dict[str, Any]]) -> list[Output]:
    return [Output("incidents", e["incident"]["id"].encode(), _dumps(e)) for e in events]


def render_change(change: ChangeRecord) -> dict[str, Any]:
    """A change record as it goes on the ``changes`` topic.

    >>> render_change(ChangeRecord("d1", "cart", "deploy", 0.0))["at"]
    '1970-01-01T00:00:00.000Z'
    """
    rec = asdict(change)
    rec["at"] = format_timestamp(change.at)
    return rec


def dead_letter(failure: Failed, now: float, topic: str, partition: int,
                offset: int | None) -> dict[str, Any]:
    """``render_failure`` plus where the message came from (logical topic, partition,
    offset), so it can be found and replayed."""
    record = render_failure(failure, now)
    record.update(topic=topic, partition=partition, offset=offset)
    return record


def triaged_from_record(value: bytes | None) -> tuple[Triaged | None, float]:
    """An ``alerts.keyed`` record back into the ``Triaged`` outcome stage 2 observes, with
    the stage-1 clock (``t``) it was decided at; ``(None, t)`` for a clock record.

    >>> a = Alert({"alertname": "Up", "service": "db"}, {}, "firing", 5.0, None, 5.0,
    ...           "generic", fingerprint="f1")
    >>> rec = render_outcome(Triaged(a, "firing", 1, 1, 5.0, 5.0), 5.0) | {"t": 5.0}
    >>> t, at = triaged_from_record(orjson.dumps(rec))
    >>> t is not None and (t.alert.fingerprint, t.change, at)
    ('f1', 'firing', 5.0)
    """
    try:
        rec = orjson.loads(value or b"")
    except orjson.JSONDecodeError as exc:
        raise DecodeError("", f"not JSON: {exc}") from None
    if isinstance(rec, dict) and rec.get("kind") == "clock" and isinstance(
            rec.get("t"), int | float):
        return None, float(rec["t"])
    if not isinstance(rec, dict) or rec.get("kind") != "alert":
        raise SchemaError("kind", "expected a stage-1 alert record (kind: alert or clock)")
    try:
        at = float(rec["t"]) if "t" in rec else parse_timestamp(rec["at"], "at")
        labels = rec["labels"]
        status = rec["status"]
        fingerprint = rec["fingerprint"]
        change = rec["change"]
    except KeyError as exc:
        raise SchemaError(str(exc.args[0]), "missing") from None
    if at is None:
        raise SchemaError("at", "missing")
    if not isinstance(labels, dict) or not isinstance(fingerprint, str):
        raise SchemaError("labels", "expected labels (object) and fingerprint (string)")
    if status not in ("firing", "resolved") or change not in (
            "firing", "resolved", "flapping", "stable"):
        raise SchemaError("status", f"unexpected status/change {status!r}/{change!r}")
    starts = parse_timestamp(rec.get("starts_at"), "starts_at") or at
    ends = parse_timestamp(rec.get("ends_at"), "ends_at")
    alert = Alert(labels=labels, annotations=rec.get("annotations") or {}, status=status,
                  starts_at=starts, ends_at=ends, at=at, source=rec.get("source") or "",
                  value=rec.get("value"), fingerprint=fingerprint)
    return Triaged(alert, change, int(rec.get("occurrence") or 1), int(rec.get("count") or 1),
                   parse_timestamp(rec.get("first_seen"), "first_seen") or at,
                   parse_timestamp(rec.get("last_seen"), "last_seen") or at,
                   flapping=bool(rec.get("flapping")), reason=rec.get("reason") or ""), at


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "backslashreplace")
