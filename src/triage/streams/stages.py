"""The two stages as partitioned, persistent objects: what the faust agents call.

No Kafka and no event loop here (the agents in ``triage.streams.agents`` do the I/O), so the
stream semantics are plain functions to test.

**A partition is the unit of state, ownership and clock.** Each assigned partition of
``alerts.raw`` gets its own ``Pipeline`` and each of ``alerts.keyed`` its own
``IncidentEngine``, built from the worker's templates (one topology, one noise model, one
change index shared by all). When Kafka moves a partition to another worker, its objects are
dropped here and rebuilt there from the partition's table state, nothing else moves.

**An alert's state lives in one partition of ``alerts.raw``, its owner**: the partition
the producer's default partitioner gives its fingerprint (``partition_of``, murmur2 as in
``key_partitioner``), which is where a message keyed by that fingerprint lands. With more
than one partition, stage 1 triages only the alerts of a payload it owns. An alert owned by
another partition of the same worker is *handed over*: triaged on its owner at once, at the
payload's time, its records sent as the owner's (``_hand_over``), so unkeyed input gives
``triage run``'s answer on one worker; the sender's meta record is written only after the
owner's state (``take_handed``), and the owner notes the sender's offset, so a replay does
not apply it twice. Every other alert (its owner is another worker's)
is *forwarded*: sent back to ``alerts.raw`` keyed by its fingerprint, one message per alert,
normalized and fingerprinted already (``{"_triage": "alert", "src": [partition, offset],
"t": <the payload's time here>, "alert": ...}``). The owner triages it at that time (or its
own later clock), so a replay that re-forwards it is a repeat to dedup; a forwarded alert is
never forwarded again (one landing elsewhere, the partition count having changed, is
triaged where it lands and counted in ``misrouted``). Each alert is counted (``counts["in"]``,
observed outcomes) once, by the partition that triages it; the receiver counts
``forwarded`` and ``handed_over``. Bad alerts of a payload are dead-lettered by the
partition that received it.
Keyed records of a forwarded alert name the original message as ``src``. A silence from the
stream is added where it is received and copied to every other partition
(``{"_triage": "silence", ...}`` sent to each one; a copy is never copied again, and is
counted ``silences_copied``). One partition: none of this happens, and stage 1 is exactly
``Pipeline.process``.

**State** is written per batch as key/value deltas (``take_changes``) into a faust table whose
changelog is co-partitioned with the input topic. Keys start with the partition number:
``<p>|a|<fingerprint>`` (dedup/flap state), ``<p>|s`` (silences from the stream,
received or copied: each partition keeps its own),
``<p>|i|<incident id>`` (an incident with its sequence number) and ``<p>|m``, the partition's
meta record: the input offset its state reflects, its clock and counters (and, in stage 2,
its timers). The meta record is written last, so a crash between the deltas and the meta
replays the batch against partly newer state, which dedup and the incident engine recognise
as repeats; a message at or before the meta's offset is skipped, so a batch whose meta was
written is never applied twice.

**Outputs are delivered before state is written** (the agents await the broker's acks
first). A crash after the outputs but before the state replays the input and sends the same
records again, with the same event ids: exact duplicates, never a loss. Stage 2 skips the
keyed records it has applied already (``RecentRecords``), so stage 1's replayed copies
cannot undo what newer records did. Forwards and silence
copies are outputs too: the replay sends the same ones again (same key, same time), which
their owners take as repeats (dedup) or as the same silence (by id).

**Clock.** Event time, as in the embedded path, merged over partitions as
``triage.streams.eventtime`` and docs/streaming.md describe: a stage-1 message ahead of
what this worker's other partitions still reading have reached waits for them (in memory,
unacknowledged: ``safe_offset``), the clock stepping through their times first, and once
the worker has read all it has, for other workers' partitions too; a
partition that has read everything follows every partition's time; stage 2's clock is the
least of its upstreams' and its records are applied in event-time order. A partition that
gets no input for ``idle_after`` seconds of wall time, with nothing to wait for, has its
clock moved on by the wall time that passes (``tick_idle``), so timeouts, held alerts and
waiting pages are decided without new input. A replay that never pauses that long is
decided by event time alone, as ``triage run`` decides it.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from time import perf_counter
from typing import Any, NamedTuple

import orjson

from triage.core import snapshot
from triage.core.changes import ChangeRecord
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline, Read
from triage.core.triage import correlate
from triage.core.types import Alert, Failed, Outcome, Triaged
from triage.errors import InputError
from triage.streams.codec import (
    INTERNAL,
    INTERNAL_SOURCE,
    InternalSilence,
    clock_record,
    dead_letter,
    decode_change,
    decode_internal,
    decode_keyed,
    forward_record,
    keyed_record,
    render_change,
    silence_copy,
)
from triage.streams.eventtime import IDLE_TIMEOUT, UpstreamClock


class Output(NamedTuple):
    """A message to send: logical topic (``keyed`` | ``incidents`` | ``deadletter`` |
    ``changes`` | ``raw``), key, value, and a partition when it must go to one (clock
    records, silence copies). Without a partition the producer's default partitioner places
    it by key: stage 1's forwards to ``raw`` rely on that (see ``key_partitioner``)."""

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
# A stage-1 partition sends a clock record at least this often (wall seconds) while it is
# not idle, so stage 2 keeps waiting for it even while its clock stands still; and it says
# "idle" once it has been caught up with its input for IDLE_GRACE (stage 2 then stops
# waiting for it: triage.streams.eventtime).
HEARTBEAT = 1.0
IDLE_GRACE = 1.0
MAX_TIMES = 100_000  # stage-1 times kept for idle partitions to step through (IntakeStage)

_dumps = orjson.dumps




def key_partitioner(hash32: Callable[[bytes], int], partitions: int) -> Callable[[bytes], int]:
    """The partition Kafka's default partitioner gives a keyed message among ``partitions``:
    ``(hash32(key) & 0x7fffffff) % partitions``, ``hash32`` being murmur2 (Java client,
    kafka-python's ``kafka.partitioner.default.murmur2``, aiokafka's). Passed in, so this
    module needs no Kafka client.

    >>> key_partitioner(lambda key: -1, 4)(b"x")  # negative hashes are masked, as in Java
    3
    """
    # a storm repeats a few thousand fingerprints; murmur2 is pure Python (about 10 us)
    @functools.lru_cache(maxsize=1 << 16)
    def partition_of(key: bytes) -> int:
        return (hash32(key) & 0x7FFFFFFF) % partitions

    return partition_of


def state_prefix(partition: int) -> bytes:
    """Every table key of ``partition`` starts with this."""
    return b"%d|" % partition


# A partition's state in its table: the snapshot format (``triage.core.snapshot``), each
# keyed table under a letter, key ``<partition>|<letter>|<key>``; the silences as one list
# under ``<partition>|s``; the meta table, with where the partition stands, as one record
# under ``<partition>|m`` (written last).
LETTERS = {"alerts": b"a", "incidents": b"i", "changes": b"c"}
TABLE_OF = {letter: table for table, letter in LETTERS.items()}


def stored_writes(partition: int, delta: snapshot.Delta, position: dict[str, Any]
                  ) -> list[StateWrite]:
    """``delta`` as table writes for ``partition``, its meta record (with ``position``:
    where the partition stands) last."""
    prefix = state_prefix(partition)
    writes: list[StateWrite] = []
    for table, keys in delta.gone.items():
        if keys:
            head = prefix + LETTERS[table] + b"|"
            writes.extend((head + key.encode(), None) for key in keys)
    for table, rows in delta.put.items():
        if rows and table != "meta":
            head = prefix + LETTERS[table] + b"|"
            writes.extend((head + key.encode(), _dumps(rec)) for key, rec in rows.items())
    if delta.silences is not None:
        writes.append((prefix + b"s", _dumps([rec for _, rec in delta.silences])))
    writes.append((prefix + b"m", _dumps({**delta.put["meta"], **position})))
    return writes


def stored_tables(items: Iterable[tuple[bytes, bytes]]) -> dict[str, dict[str, Any]]:
    """A partition's table entries (``stored_writes``) back as snapshot tables."""
    tables: dict[str, dict[str, Any]] = {t: {} for t in snapshot.TABLES}
    for key, value in items:
        _, kind, ident = [*key.split(b"|", 2), b""][:3]
        rec = orjson.loads(value)
        if kind == b"m":
            tables["meta"] = rec
        elif kind == b"s":
            tables["silences"] = snapshot.silences_of(rec)
        elif kind in TABLE_OF:
            tables[TABLE_OF[kind]][ident.decode()] = rec
    return tables


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
    idle_sent: bool = False  # the last clock record said "idle" (see ``tick_idle``)
    drained: bool = False  # it has read all its input (and had none for IDLE_GRACE)
    beat_sent: float = 0.0  # wall time of the last clock record
    next_sent: float = 0.0  # the ``next`` of the last clock record
    # messages read, waiting for the other partitions' time to reach theirs (in memory:
    # not acknowledged, so a restart reads them again; ``IntakeStage.safe_offset``)
    queue: deque[Pending] = field(default_factory=deque)
    # partition of this worker -> the offset (there) of the last message whose alerts it
    # handed over to this one (``IntakeStage._hand_over``): a replay of that partition
    # after a crash skips what this state has already applied
    handed: dict[int, int] = field(default_factory=dict)

    def next_time(self) -> float:
        """The earliest time this partition triages anything at from now on."""
        return self.queue[0].t if self.queue else self.pipeline.watermark


class Pending(NamedTuple):
    """A stage-1 message read and waiting for its time (``IntakeStage._release``): a payload
    (``read``) or a forwarded or split alert (``alert``, with the source it names); or what
    a message did when it was read (``done``: a silence, a change record, a message that
    failed as a whole), waiting only for the messages before it to be triaged."""

    offset: int
    t: float
    read: Read | None = None
    alert: Alert | None = None
    src: list[Any] | None = None
    done: tuple[list[Outcome], list[Output], list[Any] | None] | None = None


@dataclass
class IncidentPartition(_Part):
    engine: IncidentEngine = field(default_factory=IncidentEngine)
    clock: float = 0.0
    recent: RecentRecords = field(default_factory=lambda: RecentRecords())
    upstream: UpstreamClock = field(default_factory=lambda: UpstreamClock(started=0.0))
    # stage-1 partition -> offset (here) of the last of its records applied: records are
    # applied in event-time order, so each upstream's in the order they arrived; after a
    # restart, what was applied past a record held at the time is skipped by this
    applied: dict[int, int] = field(default_factory=dict)


class RecentRecords:
    """Digests of the last ``size`` records a stage-2 partition applied.

    After a crash, stage 1 replays the input its saved state had not seen and sends those
    records again, after stage 2 has applied them and newer ones: an old "firing" arriving
    after the "resolved" that followed it would reopen an incident. A replay from the same
    state sends byte-identical records (``src`` names the input message, ``t`` its time), so
    stage 2 skips a record it has applied already. A record that differs in any byte is
    applied, as before: nothing new is ever dropped. Kept in memory only: after a restart
    the window fills again from the records stage 2 re-reads, which come before stage 1's
    replayed copies. ``size`` spans far more than the records of one commit interval.

    >>> seen = RecentRecords(size=2)
    >>> [seen.add(v) for v in (b"a", b"b", b"a", b"c", b"a")]
    [True, True, False, True, True]
    """

    __slots__ = ("digests", "order")

    def __init__(self, size: int = 50_000) -> None:
        self.order: deque[bytes] = deque(maxlen=size)
        self.digests: set[bytes] = set()

    def add(self, value: bytes) -> bool:
        """Remember ``value``; False if it is among the last ``size`` remembered."""
        digest = hashlib.blake2b(value, digest_size=16).digest()
        if digest in self.digests:
            return False
        if len(self.order) == self.order.maxlen:
            self.digests.discard(self.order[0])
        self.order.append(digest)
        self.digests.add(digest)
        return True


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
    """Stage 1 over the partitions of ``alerts.raw`` this worker owns.

    ``raw_partitions`` is the partition count of ``alerts.raw``; when it is more than one,
    ``partition_of`` must map a key (an alert's fingerprint, UTF-8) to the partition the
    producer's default partitioner sends it to (``key_partitioner(murmur2, raw_partitions)``):
    alerts are triaged on that partition, their owner, and silences are copied to every
    partition (see the module docstring). ``keyed_partitions`` is that of ``alerts.keyed``.
    """

    def __init__(self, template: Pipeline, *,
                 domain_of: Callable[[Mapping[str, str]], str],
                 keyed_partitions: int = 1, raw_partitions: int = 1,
                 partition_of: Callable[[bytes], int] | None = None,
                 hand_over: bool = True) -> None:
        self.template = template
        # an alert owned by another partition of this worker is triaged there at once, at
        # the payload's time (``_hand_over``); False: forwarded through alerts.raw, as to
        # another worker's partition (the code before; for tests of the forward path)
        self.hand_over = hand_over
        # partitions that handed alerts over since the last ``take_handed``: their meta
        # record is written after the receivers' state (``StageRunner._persist``)
        self._handed: set[int] = set()
        self.domain_of = domain_of
        self.keyed_partitions = keyed_partitions
        self.raw_partitions = raw_partitions
        self.partition_of = partition_of
        self.parts: dict[int, IntakePartition] = {}
        self.replayed = 0  # messages skipped because their effect is already in the state
        # forwarded alerts triaged where they landed, not on their owner (the partition
        # count or the partitioner differs from the sender's)
        self.misrouted = 0
        self.observe = False  # collect Observations (metrics)
        self.observed = Observations()
        # what the worker knows of every stage-1 partition's clock (its own stage 2 hears
        # them all: ``IncidentStage.upstream_marks``), so an idle partition's clock follows
        # the others' (``low_mark``); None: only this stage's own partitions
        self.peers: Callable[[], dict[int, Mark]] | None = None
        self.idle_timeout = IDLE_TIMEOUT  # a peer unheard this long holds no clock back
        # times stage-1 partitions' clocks reached (here, or heard by stage 2: ``note_time``),
        # not yet passed by this worker's partitions: an idle partition steps through them
        self._times: list[float] = []
        self._released: set[int] = set()  # partitions whose queue moved (``take_released``)
        # whether a partition's consumer has read to its end now (the worker's wiring;
        # None: never taken as at the end, so nothing waits for other workers)
        self.caught_up: Callable[[int], bool] | None = None

    def take_observations(self) -> Observations:
        """What was observed since the last call (empty unless ``observe``)."""
        taken, self.observed = self.observed, Observations()
        return taken

    def new_pipeline(self) -> Pipeline:
        """A pipeline like the template, with state of its own."""
        return self.template.spawn()

    def restore(self, partition: int, items: Iterable[tuple[bytes, bytes]],
                wall: float = 0.0) -> IntakePartition:
        """Build the partition's pipeline from its table entries."""
        pipeline = self.new_pipeline()
        part = IntakePartition(pipeline=pipeline, last_input=wall, last_advance=wall)
        pipeline.on_change = part.changes.append
        meta = snapshot.restore(stored_tables(items), pipeline)
        if meta:
            part.offset = meta["offset"]
            part.clock_sent = meta.get("clock_sent", 0.0)
            part.idle_sent = bool(meta.get("idle_sent", False))
            part.drained = bool(meta.get("drained", part.idle_sent))
            part.handed = {int(u): int(o) for u, o in (meta.get("handed") or {}).items()}
        self.parts[partition] = part
        return part

    def drop(self, partition: int) -> None:
        """Forget a partition (revoked: another worker owns it now)."""
        self.parts.pop(partition, None)

    def safe_offset(self, partition: int) -> int:
        """The offset up to which every message of ``partition`` has been applied: what the
        worker may acknowledge (a queued message is not, nor anything after it)."""
        part = self.parts[partition]
        return part.queue[0].offset - 1 if part.queue else part.offset

    def process(self, partition: int, offset: int, raw: bytes | None,
                wall: float = 0.0) -> list[Output]:
        """Triage one ``alerts.raw`` message; returns what to send."""
        return self.process_many(partition, [(offset, raw)], wall)

    def process_many(self, partition: int, messages: Sequence[tuple[int, bytes | None]],
                     wall: float = 0.0) -> list[Output]:
        """Triage consecutive messages of one partition; returns what to send (for this
        partition, and for others this worker owns whose messages waited for its time)."""
        part = self.parts[partition]
        part.last_input = part.last_advance = wall
        out: list[Output] = []
        for offset, raw in messages:
            if offset <= part.offset:
                self.replayed += 1
                continue
            part.offset = offset
            part.drained = False
            started = perf_counter() if self.observe else 0.0
            prepared = self._prepare(part.pipeline, partition, offset, raw)
            if not isinstance(prepared, Pending):
                if self.observe:  # a silence, a change record, or a message that failed
                    self.observed.seconds.append(perf_counter() - started)
                    self.observed.outcomes.extend(prepared[0])
                if part.queue:
                    # Sent after the messages before it, never past one still waiting: the
                    # offset acknowledged (``safe_offset``) covers all that was sent, so a
                    # re-read after a rebalance does not dead-letter the message twice.
                    part.queue.append(Pending(offset, part.queue[-1].t, done=prepared))
                else:
                    out += self._emit(part, partition, offset, *prepared, wall=wall)
            elif self.raw_partitions <= 1 and not part.queue:
                out += self._apply(part, partition, prepared, wall)
            else:
                part.queue.append(prepared)
        if self.raw_partitions <= 1:
            out += self._release(partition, wall)
        else:
            out += self._release_all(wall)
        return out

    def _prepare(self, pipeline: Pipeline, partition: int, offset: int, raw: bytes | None
                 ) -> Pending | tuple[list[Outcome], list[Output], list[Any] | None]:
        """Read a message: a ``Pending`` to triage at its time, or what it did at once (a
        silence, a change record, a message that failed as a whole)."""
        if raw is not None and raw[:len(INTERNAL)] == INTERNAL:
            return self._internal(pipeline, partition, offset, raw)
        read = pipeline.read(raw if raw is not None else b"")
        if read.items is None:
            sends: list[Output] = []
            if read.silence is not None and self.raw_partitions > 1:
                # every partition needs it: copies to the others
                copy = silence_copy(read.silence, [partition, offset])
                sends = [Output("raw", None, copy, q)
                         for q in range(self.raw_partitions) if q != partition]
            return list(read.done), sends, None
        return Pending(offset, pipeline.clock(read.items, read.now), read=read)

    def _release_all(self, wall: float) -> list[Output]:
        """Triage the queued messages of every partition whose time has come, until none
        has (one partition's progress may let another's through)."""
        out: list[Output] = []
        progress = True
        while progress:
            progress = False
            for p, part in self.parts.items():
                if part.queue:
                    before = len(part.queue)
                    out += self._release(p, wall)
                    progress = progress or len(part.queue) < before
        return out

    def _release(self, partition: int, wall: float) -> list[Output]:
        """Triage the partition's queued messages up to the time every other partition has
        passed (``low_mark``), in order; first the clock steps through the times they
        reached on the way, so what expires meanwhile expires when ``triage run`` would
        expire it."""
        part = self.parts[partition]
        queue = part.queue
        if not queue:
            return []
        # Only this worker's partitions: waiting for another worker's would cost a round
        # trip through alerts.keyed per message when their times interleave (a two-worker
        # backlog crawled at 234 alerts/s). Across workers, messages are triaged as they
        # come (docs/streaming.md: what may differ)...
        low: float | None = None
        if self.raw_partitions > 1:
            low, reading = self.low_mark(partition, wall, local=True)
            if (not reading and low is not None and queue[0].t <= low
                    and self.caught_up is not None and self.caught_up(partition)):
                # ...except once this worker has read all it has: then a message ahead in
                # time (the last of a backlog) waits for the other workers' partitions
                # still reading before it, as an idle partition follows them
                # (``tick_idle``). Its clock so steps through their times, and what
                # expires there expires when ``triage run`` expires it, not at this
                # message's time. That costs no round trip per message: the worker has
                # nothing else to do. (Released at once, a last alert an hour ahead
                # resolved the other worker's alerts an hour late, now and then: the
                # two-worker stall of the broker tests.)
                everywhere, _ = self.low_mark(partition, wall)
                low = None if everywhere is None else min(low, everywhere)
        out: list[Output] = []
        while queue and (self.raw_partitions <= 1 or (low is not None and queue[0].t <= low)):
            pending = queue.popleft()
            out += self._step(part, partition, pending.t)
            if pending.done is not None:
                out += self._emit(part, partition, pending.offset, *pending.done, wall=wall)
            else:
                out += self._apply(part, partition, pending, wall)
            self._released.add(partition)
        return out

    def _step(self, part: IntakePartition, partition: int, until: float) -> list[Output]:
        """Move the partition's clock through the times noted before ``until`` (excluded),
        as lines of other partitions at those times would; what expired, routed."""
        pipeline = part.pipeline
        out: list[Output] = []
        for step in self._steps(pipeline.watermark, until):
            if step >= until:
                break
            outcomes = pipeline.advance(step)
            if outcomes:
                if self.observe:
                    self.observed.swept += len(outcomes)
                out += self._route(outcomes, pipeline.watermark, partition, None)
        return out

    def _apply(self, part: IntakePartition, partition: int, pending: Pending,
               wall: float) -> list[Output]:
        """Triage a message read earlier; what to send."""
        pipeline = part.pipeline
        started = perf_counter() if self.observe else 0.0
        swept_before = pipeline.counts["swept"]
        if pending.alert is not None:
            if (self.partition_of is not None and self.raw_partitions > 1
                    and self.partition_of(pending.alert.fingerprint.encode()) != partition):
                self.misrouted += 1
            sends: list[Output] = []
            outcomes, src = pipeline.triage([pending.alert], pending.t), pending.src
            swept = pipeline.counts["swept"] - swept_before
        else:
            assert pending.read is not None
            outcomes, sends, src, swept = self._triage_read(pipeline, partition, pending,
                                                            wall)
        if self.observe:
            seen = self.observed
            seen.seconds.append(perf_counter() - started)
            seen.swept += swept
            seen.outcomes.extend(outcomes[swept:] if swept else outcomes)
        return self._emit(part, partition, pending.offset, outcomes, sends, src, wall=wall)

    def _emit(self, part: IntakePartition, partition: int, offset: int,
              outcomes: list[Outcome], sends: list[Output], src: list[Any] | None, *,
              wall: float) -> list[Output]:
        pipeline = part.pipeline
        out = self._route(outcomes, pipeline.watermark, partition, offset, src)
        if sends:
            out += sends
        if part.changes:
            for change in part.changes:
                out.append(Output("changes", change.id.encode(),
                                  _dumps(render_change(change))))
            part.changes.clear()
        if self.raw_partitions > 1:
            self.note_time(pipeline.watermark)
        self._clock(part, out, partition, idle=False, wall=wall)
        return out

    def _triage_read(self, pipeline: Pipeline, partition: int, pending: Pending,
                     wall: float = 0.0
                     ) -> tuple[list[Outcome], list[Output], list[Any] | None, int]:
        """Triage a payload's own alerts; hand the others over to their owners on this
        worker, forward those of other workers' partitions (unkeyed input: see the module
        docstring). Returns this partition's outcomes, what to send besides (the owners'
        records among it), the source, and how many of the outcomes expired."""
        read = pending.read
        assert read is not None and read.items is not None
        now = pipeline.clock(read.items, read.now)
        swept_before = pipeline.counts["swept"]
        partition_of = self.partition_of
        if self.raw_partitions <= 1:
            outcomes = pipeline.triage(read.items, now)
            return outcomes, [], None, pipeline.counts["swept"] - swept_before
        if partition_of is None:
            raise ValueError("IntakeStage: raw_partitions > 1 needs partition_of")
        sends: list[Output] = []
        own: list[Alert | Failed] = []
        handed: dict[int, list[Alert]] = {}
        for item in read.items:
            if isinstance(item, Alert):
                key = item.fingerprint.encode()
                owner = partition_of(key)
                if owner != partition:
                    if self.hand_over and owner in self.parts:
                        handed.setdefault(owner, []).append(item)
                        continue
                    # The payload's time, for its alerts here and on their owners:
                    # deterministic (the clock is restored with the state), so a replay
                    # forwards the same records again.
                    sends.append(Output("raw", key, forward_record(
                        item, now, [partition, pending.offset])))
                    continue
            own.append(item)  # bad alerts stay here: dead-lettered where they were received
        if sends:
            pipeline.counts["forwarded"] += len(sends)
        outcomes = pipeline.triage(own, now)
        swept = pipeline.counts["swept"] - swept_before
        for owner, alerts in handed.items():
            pipeline.counts["handed_over"] += len(alerts)
            sends += self._hand_over(owner, alerts, now, partition, pending.offset, wall)
        return outcomes, sends, None, swept

    def _hand_over(self, owner: int, alerts: list[Alert], now: float, sender: int,
                   offset: int, wall: float) -> list[Output]:
        """Triage alerts of the message at ``offset`` of ``sender`` on their owner, another
        partition of this worker, at the message's time: what ``triage run`` does with the
        line, where a forward through alerts.raw would reach the owner only after what it
        read meanwhile. While a backlog is read the owner's clock has not passed ``now``
        (it waits for the sender's time: ``_release``), so it first steps through the times
        on the way, as for its own messages; an owner whose clock the wall moved on
        triages them at its own clock, as a forward. Its records go out as its own (its
        clock, its upstream mark in stage 2, as if the alerts had been keyed to it), naming
        the sender's message as ``src``, and it counts as having had input: if it had told
        stage 2 it was idle, it says it is not (and says idle again when it is), or stage 2
        would wait for it without hearing from it. Nothing if the owner's state has them
        already (a replay after a crash: ``IntakePartition.handed``).

        The owner's state changed on behalf of the sender's message, so the sender's meta
        record, which says the message need not be read again, is written only once the
        owner's state is (``take_handed``)."""
        part = self.parts[owner]
        if offset <= part.handed.get(sender, -1):
            return []
        pipeline = part.pipeline
        out = self._step(part, owner, now)
        swept_before = pipeline.counts["swept"]
        outcomes = pipeline.triage(list(alerts), now)
        part.handed[sender] = offset
        self._released.add(owner)
        self._handed.add(sender)
        if self.observe:
            swept = pipeline.counts["swept"] - swept_before
            self.observed.swept += swept
            self.observed.outcomes.extend(outcomes[swept:])
        out += self._route(outcomes, pipeline.watermark, owner, None, [sender, offset])
        part.last_input = part.last_advance = wall
        part.drained = False
        self._clock(part, out, owner, idle=False, wall=wall)
        return out

    def take_handed(self) -> set[int]:
        """Partitions that handed alerts over to another partition since the last call: a
        store writes their meta records only after every other state record it writes with
        them (``StageRunner._persist``), so a crash never leaves a sender's offset past an
        alert its owner's state lacks."""
        handed, self._handed = self._handed, set()
        return handed

    def _internal(self, pipeline: Pipeline, partition: int, offset: int, raw: bytes
                  ) -> Pending | tuple[list[Outcome], list[Output], list[Any] | None]:
        """A forwarded or split alert (to triage here at its time, whatever partition this
        is: never forwarded again) or a silence copy (added here, never copied again)."""
        try:
            internal = decode_internal(raw)
            if isinstance(internal, InternalSilence):
                pipeline.add_silence(internal.silence, copy=True)
                return [], [], None
        except InputError as error:
            # counted here: it was counted nowhere else
            return pipeline.triage([Failed(type(error).__name__, error.field, error.message,
                                           _text(raw), INTERNAL_SOURCE)]), [], None
        except Exception as exc:  # the boundary, as in Pipeline.process: never a crash
            return pipeline.triage([Failed(type(exc).__name__, "", f"internal error: {exc!r}",
                                           _text(raw), INTERNAL_SOURCE)]), [], None
        t = internal.t
        return Pending(offset, pipeline.watermark if t < pipeline.watermark else t,
                       alert=internal.alert, src=internal.src)

    def _clock(self, part: IntakePartition, out: list[Output], partition: int, *,
               idle: bool, wall: float, force: bool = False) -> None:
        """Tell every stage-2 partition this partition's clock (and the time of the next
        message it has waiting, for the other stage-1 partitions: ``low_mark``), when
        either moved by ``CLOCK_RESOLUTION``, when it became idle or busy, or when
        ``force``d."""
        now = part.pipeline.watermark
        ahead = part.next_time()
        if idle and part.idle_sent and not force:
            return  # stage 2 waits for it no more: its clock moving by the wall is no news
        if (force or idle != part.idle_sent or now - part.clock_sent >= CLOCK_RESOLUTION
                or abs(ahead - part.next_sent) >= CLOCK_RESOLUTION):
            part.clock_sent, part.idle_sent, part.beat_sent = now, idle, wall
            part.next_sent = ahead
            record = clock_record(now, [partition, self.raw_partitions, idle, part.drained],
                                  ahead if ahead > now else None)
            out.extend(Output("keyed", None, record, p) for p in range(self.keyed_partitions))

    def tick_idle(self, partition: int, wall: float, idle_after: float = IDLE_AFTER,
                  caught_up: bool = True) -> list[Output] | None:
        """If the partition has read all its input (``caught_up`` with its topic, not merely
        waiting while the consumer reads other partitions, and without input for
        ``IDLE_GRACE``), move its clock on to the time the other stage-1 partitions have all
        passed (``low_mark``), through the times they reached on the way; after
        ``idle_after`` without input, also by the wall time that passed. Return what
        expired (timeouts, released holds). Either way, tell stage 2 whether it is idle
        (read to the end, and its clock up with the others': nothing earlier can come from
        it), and beat while it is not (``HEARTBEAT``). None if nothing happened."""
        part = self.parts[partition]
        pipeline = part.pipeline
        start = pipeline.watermark
        out: list[Output] = self._release(partition, wall)
        quiet = wall - part.last_input
        part.drained = drained = (caught_up and quiet >= min(idle_after, IDLE_GRACE)
                                  and not part.queue)
        low, others_reading = self.low_mark(partition, wall) if drained else (None, True)
        if low is not None and low > pipeline.watermark:
            # Alerts are keyed by fingerprint, so each partition reads its share of one
            # stream in time order; what expires depends on the time the whole stream has
            # reached, as in ``triage run``, line by line: so through every time it reached.
            for step in self._steps(pipeline.watermark, low):
                outcomes = pipeline.advance(step)
                if outcomes:
                    if self.observe:
                        self.observed.swept += len(outcomes)
                    out += self._route(outcomes, pipeline.watermark, partition, None,
                                       drained=True)
        if drained and quiet >= idle_after:
            elapsed = max(0.0, wall - part.last_advance)
            part.last_advance = wall
            outcomes = pipeline.tick(pipeline.watermark + elapsed)
            if self.observe:
                self.observed.swept += len(outcomes)
            out += self._route(outcomes, pipeline.watermark, partition, None, drained=True)
        # Idle toward stage 2 (which then stops waiting for it) only when nothing earlier
        # can come from it: no other partition still reading, whose time this one would
        # follow, expiring its own alerts on the way.
        idle = drained and (self.raw_partitions <= 1 or (
            low is not None and not others_reading and pipeline.watermark >= low))
        self._prune_times()
        beat = wall - part.beat_sent >= HEARTBEAT and not (idle and part.idle_sent)
        moved = pipeline.watermark > start
        # a partition stage 2 waits for tells it where its clock is now
        self._clock(part, out, partition, idle=idle, wall=wall,
                    force=bool(out) or beat or (moved and not idle))
        return out if out or moved else None

    def describe_clocks(self, wall: float) -> str:
        """Each partition's clock, for the log: watermark, messages waiting (and the first
        one's time), drained, idle sent, and the low mark it follows; "" when every
        partition is idle with nothing waiting."""
        if all(part.idle_sent and not part.queue for part in self.parts.values()):
            return ""
        out = []
        for p, part in sorted(self.parts.items()):
            low, reading = self.low_mark(p, wall)
            first = f"@{part.queue[0].t:.0f}" if part.queue else ""
            out.append(f"p{p} wm={part.pipeline.watermark:.0f} q={len(part.queue)}{first} "
                       f"drained={part.drained} idle_sent={part.idle_sent} "
                       f"low={'none' if low is None else f'{low:.0f}'} reading={reading} "
                       f"offset={part.offset}")
        return "; ".join(out)

    def hear(self, incidents: IncidentStage) -> None:
        """Join this worker's stage 2: it hears every stage-1 partition's clock, this
        worker's or not, so an idle partition here follows theirs (``low_mark``), and it
        tells this stage each time it hears one move (``note_time``)."""
        self.peers = incidents.upstream_marks
        self.idle_timeout = incidents.idle_timeout
        incidents.on_mark = self.note_time

    def waiting(self) -> int:
        """Messages waiting for the other partitions' time, over this worker's partitions."""
        return sum(len(part.queue) for part in self.parts.values())

    def take_released(self) -> set[int]:
        """Partitions whose queued messages were triaged since the last call, beside those
        given input: their state changed too."""
        released, self._released = self._released, set()
        return released

    def note_time(self, t: float) -> None:
        """A stage-1 partition's clock reached ``t`` (one of this worker's, or one its
        stage 2 heard of)."""
        times = self._times
        if not times or t > times[-1]:
            times.append(t)
            if len(times) > MAX_TIMES:
                del times[:len(times) - MAX_TIMES]
            return
        i = bisect.bisect_left(times, t)
        if times[i] != t:  # (t <= times[-1], so i is in range)
            times.insert(i, t)

    def _steps(self, after: float, until: float) -> list[float]:
        """The times noted in (``after``, ``until``], then ``until``."""
        times = self._times
        steps = times[bisect.bisect_right(times, after):bisect.bisect_right(times, until)]
        if not steps or steps[-1] != until:
            steps.append(until)
        return steps

    def _prune_times(self) -> None:
        """Forget the times every partition of this worker has passed."""
        if self._times and self.parts:
            passed = min(part.pipeline.watermark for part in self.parts.values())
            cut = bisect.bisect_right(self._times, passed)
            if cut:
                del self._times[:cut]

    def low_mark(self, partition: int, wall: float, *,
                 local: bool = False) -> tuple[float | None, bool]:
        """The time every other stage-1 partition has passed: the least clock of those
        still reading their input, else the greatest of them all (None while one never
        heard of might still be reading); and whether any still is. This worker's own
        partitions count as they are now, the others as its stage 2 last heard of them
        (``peers``); one unheard for ``idle_timeout`` reads no more. ``local``: this
        worker's partitions only."""
        marks: dict[int, Mark] = (dict(self.peers()) if self.peers is not None and not local
                                  else {})
        for p, part in self.parts.items():
            marks[p] = (part.next_time(), part.drained, wall)
        live: list[float] = []
        for u in (self.parts if local else range(self.raw_partitions)):
            if u == partition:
                continue
            mark = marks.get(u)
            if mark is None:
                return None, True  # not heard of yet: it may be reading something earlier
            if not mark[1] and wall - mark[2] < self.idle_timeout:
                live.append(mark[0])
        if live:
            return min(live), True
        return max((m[0] for m in marks.values()), default=None), False

    def _route(self, outcomes: list[Outcome], now: float, partition: int,
               offset: int | None, src: list[Any] | None = None,
               idle: bool = False, drained: bool = False) -> list[Output]:
        out: list[Output] = []
        up = [partition, self.raw_partitions, idle, drained]
        for o in outcomes:
            if isinstance(o, Triaged):
                out.append(Output("keyed", self.domain_of(o.alert.labels).encode(),
                                  keyed_record(o, now, src or [partition, offset], up)))
            elif isinstance(o, Failed):
                out.append(Output("deadletter", None,
                                  _dumps(dead_letter(o, now, "raw", partition, offset))))
        return out

    def take_state(self, partition: int) -> list[StateWrite]:
        """The partition's state changed since the last call, meta record last."""
        part = self.parts[partition]
        return stored_writes(partition, snapshot.take(part.pipeline), {
            "offset": self.safe_offset(partition), "clock_sent": part.clock_sent,
            "idle_sent": part.idle_sent, "drained": part.drained,
            "handed": {str(u): o for u, o in part.handed.items()}})

    def counts(self) -> Counter[str]:
        """Stage-1 counts summed over this worker's partitions."""
        total: Counter[str] = Counter()
        for part in self.parts.values():
            total.update(part.pipeline.counts)
        return total


class IncidentStage:
    """Stage 2 over the partitions of ``alerts.keyed`` this worker owns, each in event time
    over the stage-1 partitions it hears from (``triage.streams.eventtime``)."""

    def __init__(self, template: IncidentEngine, *,
                 idle_timeout: float = IDLE_TIMEOUT) -> None:
        self.template = template
        self.idle_timeout = idle_timeout  # an upstream silent this long holds the clock no more
        self.changes = template.changes  # shared: every partition sees every change
        self.parts: dict[int, IncidentPartition] = {}
        self.replayed = 0
        self.resent = 0  # records a restarted stage 1 sent again, skipped
        self.observe = False  # collect Observations (metrics)
        self.observed = Observations()
        # told every new stage-1 clock heard (``IntakeStage.note_time``: wired by the worker)
        self.on_mark: Callable[[float], None] | None = None

    def take_observations(self) -> Observations:
        """What was observed since the last call (empty unless ``observe``)."""
        taken, self.observed = self.observed, Observations()
        return taken

    def new_engine(self) -> IncidentEngine:
        """An engine like the template, with incidents of its own (and the worker's one
        change index)."""
        return self.template.spawn(self.changes)

    def restore(self, partition: int, items: Iterable[tuple[bytes, bytes]],
                wall: float = 0.0) -> IncidentPartition:
        """Build the partition's engine from its table entries."""
        engine = self.new_engine()
        part = IncidentPartition(engine=engine, last_input=wall, last_advance=wall,
                                 upstream=UpstreamClock(started=wall,
                                                        idle_timeout=self.idle_timeout))
        tables = stored_tables(items)
        meta = tables["meta"]
        if "timers" in meta:  # saved before the shared snapshot format: the old names
            meta["engine_timers"], meta["engine_counts"] = meta["timers"], meta["counts"]
        tables.pop("changes", None)  # the changes topic is their store
        snapshot.restore(tables, None, engine)
        if meta:
            part.offset = meta["offset"]
            part.clock = meta["clock"]
            part.upstream.restore_marks(meta.get("upstream") or {}, wall)
            part.applied = {int(u): int(o) for u, o in (meta.get("applied") or {}).items()}
        self.parts[partition] = part
        return part

    def drop(self, partition: int) -> None:
        """Forget a partition (revoked: another worker owns it now)."""
        self.parts.pop(partition, None)

    def safe_offset(self, partition: int) -> int:
        """The offset up to which every record of ``partition`` has been applied (or
        skipped): what the worker may acknowledge. A held record is not, and neither is
        anything after it."""
        part = self.parts[partition]
        low = part.upstream.lowest_held_offset()
        return part.offset if low is None else min(part.offset, low - 1)

    def take_released(self) -> set[int]:
        """Stage 2 changes no partition but those given input or ticked."""
        return set()

    def take_handed(self) -> set[int]:
        """Stage 2 changes no partition's state but the one it reads (``IntakeStage``)."""
        return set()

    def upstream_marks(self) -> dict[int, Mark]:
        """What this worker's partitions last heard of each stage-1 partition: its clock,
        whether it was idle, and when (wall time) that was heard."""
        out: dict[int, Mark] = {}
        for part in self.parts.values():
            clock = part.upstream
            for u, t in clock.marks.items():
                t = max(t, clock.ahead.get(u, t))
                heard = clock.heard.get(u, 0.0)
                known = out.get(u)
                if known is None or heard > known[2] or (heard == known[2] and t > known[0]):
                    out[u] = (t, clock.drained.get(u, False), heard)
        return out

    def describe_clocks(self, wall: float) -> str:
        """Each partition's clock and what each upstream last said (t, i: idle, d: drained,
        seconds since heard), for the log; "" when no upstream holds a clock and nothing is
        held."""
        if all(not part.upstream.held and not part.upstream.live(wall)
               for part in self.parts.values()):
            return ""
        out = []
        for p, part in sorted(self.parts.items()):
            up = part.upstream
            marks = " ".join(f"{u}:{t:.0f}{'i' if up.idle.get(u) else ''}"
                             f"{'d' if up.drained.get(u) else ''}"
                             f"/{wall - up.heard.get(u, up.started):.0f}s"
                             for u, t in sorted(up.marks.items()))
            out.append(f"p{p} clock={part.clock:.0f} held={len(up.held)} live={up.live(wall)} "
                       f"[{marks}]")
        return "; ".join(out)

    def held(self) -> int:
        """Records held for the clock, over this worker's partitions."""
        return sum(len(part.upstream.held) for part in self.parts.values())

    def process(self, partition: int, offset: int, value: bytes | None,
                wall: float = 0.0) -> list[Output]:
        """Correlate one ``alerts.keyed`` record; returns the incident events to send."""
        return self.process_many(partition, [(offset, value)], wall)

    def process_many(self, partition: int, messages: Sequence[tuple[int, bytes | None]],
                     wall: float = 0.0) -> list[Output]:
        """Correlate consecutive records of one partition, in event-time order over its
        upstream partitions (``triage.streams.eventtime``): a record stamped after the clock
        the upstreams allow waits for it. Records that came from the same input message
        (``src``) are observed together, one decision for all of them, as ``triage run``
        observes the alerts of one line."""
        part = self.parts[partition]
        part.last_input = part.last_advance = wall
        run = _Observer(self, part, partition)
        for offset, value in messages:
            if offset <= part.offset:
                self.replayed += 1
                continue
            part.offset = offset
            try:
                triaged, at, src, up, ahead = decode_keyed(value)
            except InputError as exc:
                run.flush()
                failure = Failed(type(exc).__name__, exc.field, exc.message,
                                 _text(value), "alerts.keyed")
                run.out.append(Output("deadletter", None, _dumps(
                    dead_letter(failure, part.clock, "keyed", partition, offset))))
                continue
            if up is not None and offset <= part.applied.get(up[0], -1):
                self.replayed += 1  # applied before a restart, after a record then held
                continue
            if triaged is not None and value is not None and not part.recent.add(value):
                self.resent += 1  # applied already: sent again by a restarted stage 1
                continue
            if up is None:  # from a stage 1 that names no upstream: applied as it comes
                if triaged is not None and at < part.clock:
                    part.engine.counts["late_records"] += 1
                self._advance(part, run, max(part.clock, at))
                if triaged is not None:
                    run.add(triaged, src, part.clock, offset, None)
                continue
            upstream = part.upstream
            if upstream.note(up[0], up[1], at, up[2], wall=wall, drained=up[3],
                             ahead=ahead) and self.on_mark is not None:
                self.on_mark(at)
            if triaged is not None:
                if at < part.clock:  # its upstream was idle or silent: late
                    part.engine.counts["late_records"] += 1
                    run.add(triaged, src, part.clock, offset, up[0])
                else:
                    upstream.hold(at, up[0], offset, (triaged, src))
            self._advance(part, run, upstream.safe_time(part.clock, wall=wall))
        run.flush()
        return run.out

    def _advance(self, part: IncidentPartition, run: _Observer, clock: float) -> None:
        """Release the held records up to ``clock`` in event-time order, then move the
        partition's clock (and the engine's timers) to it, through the times its upstreams
        reported on the way."""
        waiting = part.upstream.held
        if clock <= part.clock and (not waiting or waiting[0].t > clock):
            return
        for step in part.upstream.steps(part.clock, clock):
            for held in part.upstream.due(step):
                triaged, src = held.item
                run.add(triaged, src, held.t, held.offset, held.upstream)
            if step > part.clock:
                run.flush()
                part.clock = step
                run.out += self._correlate(part, run.partition, part.offset, (), step)

    def _observe(self, part: IncidentPartition, group: list[Triaged], at: float, offset: int,
                 partition: int) -> list[Output]:
        if not group:
            return []
        started = perf_counter()
        out = self._correlate(part, partition, offset, group, at)
        if self.observe:
            self.observed.seconds.append(perf_counter() - started)
        return out

    def _correlate(self, part: IncidentPartition, partition: int, offset: int,
                   group: Iterable[Triaged], at: float) -> list[Output]:
        """The engine's step (``triage.core.triage.correlate``, as ``Triage`` takes it):
        its events to send, or a dead letter for a bug (the worker never stops on one)."""
        events, failure = correlate(part.engine, group, at, source="alerts.keyed")
        if failure is not None:
            return [Output("deadletter", None, _dumps(
                dead_letter(failure, part.clock, "keyed", partition, offset)))]
        if self.observe:
            self.observed.events.extend(events)
        return _events(events)

    def tick_idle(self, partition: int, wall: float, idle_after: float = IDLE_AFTER,
                  caught_up: bool = True) -> list[Output] | None:
        """Release what the upstreams allow now (one may have gone silent), and, if the
        partition has been idle (``caught_up`` with its topic) with no upstream holding it,
        move its clock by the wall time that passed: pages due, quiet periods over,
        war-room rules. None if nothing happened."""
        part = self.parts[partition]
        run = _Observer(self, part, partition)
        upstream = part.upstream
        before = part.clock
        self._advance(part, run, upstream.safe_time(part.clock, wall=wall))
        if (caught_up and wall - part.last_input >= idle_after
                and not upstream.live(wall)):
            clock = part.clock + max(0.0, wall - part.last_advance)
            part.last_advance = wall
            self._advance(part, run, clock)
        run.flush()
        if not run.out and part.clock == before:
            return None
        return run.out

    def take_state(self, partition: int) -> list[StateWrite]:
        """The partition's state changed since the last call, meta record last."""
        part = self.parts[partition]
        delta = snapshot.take(None, part.engine)
        delta.put["changes"].clear()  # the changes topic is their store
        # the offset a restart reads on from: the records held now are read again (their
        # offsets were not acknowledged), what was applied after them skipped (``applied``)
        return stored_writes(partition, delta, {
            "offset": self.safe_offset(partition), "clock": part.clock,
            "upstream": part.upstream.marks_record(),
            "applied": {str(u): o for u, o in part.applied.items()}})

    def add_change(self, value: bytes | None) -> bool:
        """Index a change record from the ``changes`` topic; False if bad or known."""
        try:
            record = decode_change(value)
        except InputError:
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


class _Observer:
    """Stage 2's records on their way into the engine: those of one input message at one
    time are observed together; what the engine says is collected in ``out``, and each
    record applied is noted as its upstream's last (``IncidentPartition.applied``)."""

    __slots__ = ("at", "group", "offset", "out", "part", "partition", "src", "stage")

    def __init__(self, stage: IncidentStage, part: IncidentPartition, partition: int) -> None:
        self.stage, self.part, self.partition = stage, part, partition
        self.out: list[Output] = []
        self.group: list[Triaged] = []
        self.src: Any = None
        self.at = 0.0
        self.offset = -1

    def add(self, triaged: Triaged, src: Any, at: float, offset: int,
            upstream: int | None) -> None:
        if self.group and (src is None or src != self.src or at != self.at):
            self.flush()
        self.group.append(triaged)
        self.src, self.at, self.offset = src, at, offset
        if upstream is not None:
            self.part.applied[upstream] = offset

    def flush(self) -> None:
        if self.group:
            self.out += self.stage._observe(self.part, self.group, self.at, self.offset,
                                            self.partition)
            self.group = []


# what is known of a stage-1 partition's clock: (its time, drained, wall time it was heard)
Mark = tuple[float, bool, float]


def _events(events: list[dict[str, Any]]) -> list[Output]:
    return [Output("incidents", e["incident"]["id"].encode(), _dumps(e)) for e in events]


def _text(value: bytes | None) -> str:
    return (value or b"").decode("utf-8", "backslashreplace")
