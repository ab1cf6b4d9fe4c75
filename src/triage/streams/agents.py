"""The faust agents: decode, call the stage, deliver, persist. Nothing else.

* ``intake`` on ``alerts.raw``: stage 1 (``IntakeStage``); state changes to
  ``alerts.keyed`` keyed by correlation domain, failures to ``alerts.deadletter`` with the
  raw payload and the reason, change records found on the input to ``changes``; alerts
  another partition owns (by fingerprint) and copies of silences back to ``alerts.raw``.
* ``incidents`` on ``alerts.keyed``: stage 2 (``IncidentStage``); incident events to
  ``incidents`` keyed by incident id.
* The ``changes`` topic is read by every worker in full, without a consumer group (a change
  can be suspect for an incident in any partition), into the index all engines share.
* A 1 s timer moves the clock of idle partitions (see ``triage.streams.stages``).
* With ``metrics``: outcomes, incident events and stage latency are counted after each
  batch is delivered; state sizes and the consumer lag per topic (high watermark minus
  the next offset the stage will process, summed over the partitions this worker owns)
  are set by the timer, at most once a second.

Each agent takes batches (``stream.take_events``), runs the stage over them, awaits the
broker's acks for every output, and only then writes the state deltas into its table and
their changelog topic. Those changelog writes are pipelined: their acks are awaited at the
start of the next write (failed ones are sent again, in order, before anything newer), and
faust flushes the producer before it commits input offsets. Agent concurrency is 1: with
more, faust can commit past a message still in flight (faust-streaming issue 606).

**The stage's state, not the consumer group, says where a partition's input resumes.** Input
offsets of ``alerts.raw`` and ``alerts.keyed`` are contiguous (plain topics, plain producers),
so a message whose offset is past the next one the stage expects means the consumer skipped
messages. faust does that around table recovery and rebalances (records fetched for an older
generation or while a partition is paused are dropped, and its commit then steps over the
hole as if the topic were compacted; faust-streaming issues 216, 221, 596): one captured run
had stage 1 receive offset 1201 right after 1199. A committed offset can also be ahead of the
state (offsets reset by hand). The runner reads the missing offsets itself (``fetch``, a
plain consumer outside the group) and processes them first, in order; what the topic no
longer holds (retention, transaction markers) is simply not there. Counted in
``RunnerStats.refetched`` and logged.

The tables are ``StateTable``s: each knows the offset of the last changelog record of each
partition the broker acknowledged, so that after a rebalance faust's recovery does not read
back the partitions this worker kept (their state is in memory), only those it was given.

Outputs and changelog records go straight to the app's aiokafka producer: faust's
``Topic.send`` path (channel, future message, producer buffer) cost more per record than
both stages together (see BENCHMARKS.md, issue 5).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition

from triage.app.settings import Settings
from triage.metrics import TriageMetrics
from triage.streams.app import aiokafka_config
from triage.streams.stages import (
    IDLE_AFTER,
    IncidentStage,
    IntakeStage,
    Output,
    StateWrite,
    state_prefix,
)

log = logging.getLogger("triage.streams")

# send(logical topic, key, value, partition) -> a future resolved when the broker acked it
# (value None: a tombstone, for changelog deletes)
Sender = Callable[[str, bytes | None, bytes | None, int | None], Awaitable[Awaitable[Any]]]
Message = tuple[int, int, bytes | None]  # partition, offset, value
# fetch(partition, start, end) -> the input partition's messages with start <= offset < end,
# read directly (offset, value), or None when the partition is no longer this worker's
Fetch = Callable[[int, int, int], Awaitable[list[tuple[int, bytes | None]] | None]]


class StateOutput(NamedTuple):
    """A state record for a table's changelog (value None: the key was deleted)."""

    topic: str
    key: bytes
    value: bytes | None
    partition: int

TICK_INTERVAL = 1.0
CLOCK_LOG = 30.0  # seconds between two log lines of a stage's clocks (while one waits)
# Batches: up to BATCH_MAX messages, or what came within BATCH_WITHIN seconds. Larger
# batches cost latency and gained nothing measurable (faust feeds the agent one message at
# a time; see BENCHMARKS.md, issue 5).
BATCH_MAX, BATCH_WITHIN = 500, 0.02
# the logical names ``send`` knows the tables' changelog topics by
INTAKE_STATE, INCIDENT_STATE = "intake-state", "incident-state"


class Stage(Protocol):
    """What the runner needs of ``IntakeStage`` / ``IncidentStage``."""

    @property
    def parts(self) -> dict[int, Any]: ...
    def restore(self, partition: int, items: Iterable[tuple[bytes, bytes]],
                wall: float = 0.0) -> Any: ...
    def drop(self, partition: int) -> None: ...
    def process_many(self, partition: int, messages: Sequence[tuple[int, bytes | None]],
                     wall: float = 0.0) -> list[Output]: ...
    def tick_idle(self, partition: int, wall: float, idle_after: float = ...,
                  caught_up: bool = ...) -> list[Output] | None: ...
    def take_state(self, partition: int) -> list[StateWrite]: ...
    def safe_offset(self, partition: int) -> int: ...
    def take_released(self) -> set[int]: ...
    def take_handed(self) -> set[int]: ...
    def describe_clocks(self, wall: float) -> str: ...


async def deliver(send: Sender, outputs: Sequence[Output | StateOutput], *,
                  retry_delay: float = 0.5, max_delay: float = 10.0) -> None:
    """Send every output and wait for every ack. When a send fails (broker down, leader
    moving), everything from the first failure on is sent again after a back-off, for as
    long as it takes: an output is never dropped, state is written only after this returns,
    and the last copy of each output comes in the original order (earlier copies are exact
    duplicates with the same event id)."""
    pending: list[Output | StateOutput] = list(outputs)
    delay = retry_delay
    while pending:
        futures: list[Awaitable[Any] | BaseException] = []
        for topic, key, value, partition in pending:
            try:
                futures.append(await send(topic, key, value, partition))
            except Exception as exc:  # e.g. no metadata for the topic while the broker is away
                futures.append(exc)
        first_failure: int | None = None
        error: BaseException | None = None
        for i, fut in enumerate(futures):
            problem: BaseException | None = fut if isinstance(fut, BaseException) else None
            if problem is None:
                try:
                    await fut  # type: ignore[misc]
                except Exception as caught:
                    problem = caught
            if problem is not None and first_failure is None:
                first_failure, error = i, problem
        if first_failure is None:
            return
        log.warning("%d of %d sends to resend (%r); retrying in %.1fs",
                    len(pending) - first_failure, len(pending), error, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
        pending = pending[first_failure:]


def _retrieved(fut: asyncio.Future[Any]) -> None:
    """Fetch a moot future's exception, so asyncio does not report it as never retrieved."""
    if not fut.cancelled():
        fut.exception()


@dataclass
class RunnerStats:
    """Counters for metrics and tests."""

    messages: int = 0
    batches: int = 0
    outputs: int = 0
    ticks: int = 0
    skipped_unassigned: int = 0
    refetched: int = 0  # messages the consumer skipped, read directly (see the module doc)


class StageRunner:
    """Runs one stage over batches of one input topic with its table; the only place where
    the order deliver → persist is decided."""

    def __init__(self, *, name: str, stage: Stage, data: MutableMapping[Any, Any],
                 changelog: str, send: Sender,
                 assigned: Callable[[], set[int]] | None = None,
                 wall: Callable[[], float] = time.monotonic,
                 idle_after: float = IDLE_AFTER,
                 after: Callable[[], None] | None = None,
                 fetch: Fetch | None = None,
                 on_refetch: Callable[[int], None] | None = None,
                 restorable: Callable[[], bool] | None = None,
                 caught_up: Callable[[int], bool] | None = None) -> None:
        self.name = name
        # whether a partition's consumer has read up to its end: only then may its clock
        # move by wall time, or stage 1 tell stage 2 it is idle (None: always)
        self.caught_up = caught_up
        # whether the table holds what a partition's state is restored from (False between a
        # rebalance and the end of the table recovery it starts; see ``wire``)
        self.restorable = restorable
        self.fetch = fetch  # reads what the consumer skipped (None: holes are not filled)
        self.on_refetch = on_refetch  # told how many messages were read that way (metrics)
        self.after = after  # called after each delivered batch or tick (metrics)
        self.idle_after = idle_after
        self._clocks_logged = 0.0
        self.stage = stage
        self.data = data  # the table's contents: what a restored partition is built from
        self.changelog = changelog  # the logical topic ``send`` writes state records to
        self.send = send
        self.assigned = assigned
        self.wall = wall
        self.lock = asyncio.Lock()
        self.stats = RunnerStats()
        self._unconfirmed: list[tuple[StateOutput, Awaitable[Any]]] = []
        # partition -> the last offset skipped because the partition did not look like this
        # worker's (``handle``); filled in by ``tick`` if it is (still or again) ours
        self.skipped: dict[int, int] = {}

    def _ensure(self, partition: int) -> None:
        if partition not in self.stage.parts:
            prefix = state_prefix(partition)
            items = [(k, v) for k, v in list(self.data.items())
                     if isinstance(k, bytes) and k.startswith(prefix) and v]
            self.stage.restore(partition, items, self.wall())
            log.info("%s: partition %d restored (%d state records)", self.name, partition,
                     len(items))

    async def _confirm_state(self) -> None:
        """Wait for the acks of the state records sent so far; from the first that failed
        on, send them again (in order, so a key's newest value is the last one written)."""
        pending, self._unconfirmed = self._unconfirmed, []
        for i, (_, fut) in enumerate(pending):
            try:
                await fut
            except Exception:
                for _, later in pending[i + 1:]:  # all sent again: their outcome is moot
                    if isinstance(later, asyncio.Future):
                        later.add_done_callback(_retrieved)
                await deliver(self.send, [record for record, _ in pending[i:]])
                return

    async def _persist(self, partitions: Iterable[int]) -> None:
        """Write the state the stage changed: into the table at once, to the changelog
        without waiting (confirmed by the next call, flushed before offsets commit)."""
        await self._confirm_state()
        records: list[StateOutput] = []
        # the meta records of partitions that changed others' state (stage 1 handing an
        # alert over to its owner): written once all the rest is acknowledged, so a crash
        # in between reads the sender's message again, never leaves it read and the
        # owner's state without it
        last: list[StateOutput] = []
        handed = self.stage.take_handed()
        data = self.data
        for partition in partitions:
            writes = self.stage.take_state(partition)
            for i, (key, value) in enumerate(writes):
                if value is None:
                    data.pop(key, None)
                else:
                    data[key] = value
                record = StateOutput(self.changelog, key, value, partition)
                (last if partition in handed and i == len(writes) - 1 else records).append(
                    record)
        await self._send_state(records)
        if last:
            await self._confirm_state()
            await self._send_state(last)

    async def _send_state(self, records: list[StateOutput]) -> None:
        for i, record in enumerate(records):
            try:
                fut = await self.send(*record)
            except Exception:  # e.g. no metadata while the broker is away
                await self._confirm_state()
                await deliver(self.send, records[i:])
                return
            self._unconfirmed.append((record, fut))

    async def _refetch(self, partition: int, start: int, end: int
                       ) -> list[tuple[int, bytes | None]] | None:
        """The messages of ``partition`` from ``start`` up to ``end`` (excluded), which the
        consumer skipped (see the module docstring), read directly."""
        assert self.fetch is not None
        missing = await self.fetch(partition, start, end)
        if missing:
            log.warning("%s: the consumer skipped offsets %d..%d of partition %d; read %d "
                        "messages directly", self.name, start, end - 1, partition,
                        len(missing))
            self.stats.refetched += len(missing)
            if self.on_refetch is not None:
                self.on_refetch(len(missing))
        elif missing is not None:  # transaction markers, or retention was faster
            log.info("%s: offsets %d..%d of partition %d hold no messages", self.name, start,
                     end - 1, partition)
        return missing

    async def handle(self, batch: Sequence[Message]) -> list[Output]:
        """Process a batch (any partitions, in order), deliver, then persist."""
        async with self.lock:
            owned = self.assigned() if self.assigned is not None else None
            wall = self.wall()
            outputs: list[Output] = []
            touched: dict[int, None] = {}
            run: list[tuple[int, bytes | None]] = []
            run_partition = -1
            # per partition: the next offset the stage expects (-1: any; no position yet)
            expect: dict[int, int] = {}
            lost: set[int] = set()  # revoked while its skipped messages were being read
            for partition, offset, value in [*batch, (-1, -1, None)]:
                if partition != run_partition and run:
                    # consecutive messages of one partition go to the stage together
                    outputs.extend(self.stage.process_many(run_partition, run, wall))
                    run = []
                run_partition = partition
                if partition < 0:
                    break
                unrestored = (partition not in self.stage.parts and self.restorable is not None
                              and not self.restorable())
                if (owned is not None and partition not in owned) or partition in lost or (
                        unrestored):
                    # (Or its table is still being recovered: restored from it now, the
                    # partition would start from a part of its state.)
                    # Revoked while buffered: the new owner processes it from its offset.
                    # faust acks it all the same, so if the partition stays ours after
                    # all, ``tick`` reads it back (nothing else would until newer input).
                    self.stats.skipped_unassigned += 1
                    self.skipped[partition] = max(offset, self.skipped.get(partition, -1))
                    continue
                self._ensure(partition)
                nxt = expect.get(partition)
                if nxt is None:
                    done = self.stage.parts[partition].offset
                    nxt = done + 1 if done >= 0 else -1
                if 0 <= nxt < offset and self.fetch is not None:
                    missing = await self._refetch(partition, nxt, offset)
                    if missing is None:  # revoked meanwhile: the new owner fills the hole
                        lost.add(partition)
                        self.stats.skipped_unassigned += 1
                        self.skipped[partition] = max(offset, self.skipped.get(partition, -1))
                        continue
                    run.extend(missing)
                expect[partition] = max(nxt, offset + 1)
                touched[partition] = None
                run.append((offset, value))
            # (and the partitions whose waiting messages this input let through)
            touched.update(dict.fromkeys(self.stage.take_released()))
            await deliver(self.send, outputs)
            await self._persist(touched)
            self.stats.messages += len(batch)
            self.stats.batches += 1
            self.stats.outputs += len(outputs)
            if self.after is not None:
                self.after()
            return outputs

    async def fill_skipped(self) -> None:
        """Process the messages ``handle`` skipped on partitions this worker owns now: read
        directly, from where the partition's state ends to the last one skipped."""
        if self.fetch is None or not self.skipped:
            return
        owned = self.assigned() if self.assigned is not None else None
        for partition, last in list(self.skipped.items()):
            part = self.stage.parts.get(partition)
            if part is None or (owned is not None and partition not in owned):
                continue  # not ours now: its owner reads from its state; kept if it returns
            del self.skipped[partition]
            if not 0 <= part.offset < last:
                continue  # processed meanwhile (or no position to read from)
            missing = await self._refetch(partition, part.offset + 1, last + 1)
            if missing:
                await self.handle([(partition, offset, value) for offset, value in missing])

    async def tick(self) -> list[Output]:
        """Move the clocks of idle partitions; deliver what that decided, then persist."""
        await self.fill_skipped()
        async with self.lock:
            wall = self.wall()
            if log.isEnabledFor(logging.INFO) and wall - self._clocks_logged >= CLOCK_LOG:
                # what holds the clocks, while something does: a stall says what it waits for
                self._clocks_logged = wall
                if clocks := self.stage.describe_clocks(wall):
                    log.info("%s clocks: %s", self.name, clocks)
            outputs: list[Output] = []
            moved: list[int] = []
            # Only partitions the consumer still holds: one taken away without a revoke
            # reaching this worker yet (it stalled past the session timeout) is its new
            # owner's to decide.
            owned = self.assigned() if self.assigned is not None else None
            for partition in list(self.stage.parts):
                if owned is not None and partition not in owned:
                    continue
                up_to_date = self.caught_up is None or self.caught_up(partition)
                out = self.stage.tick_idle(partition, wall, self.idle_after, up_to_date)
                if out is None:
                    continue
                moved.append(partition)
                outputs.extend(out)
            released = [p for p in self.stage.take_released() if p not in moved]
            moved.extend(released)
            if not outputs and not released:
                # A clock move with nothing due changes no state worth a write every second;
                # the next input or decision writes the clock with it.
                if self.after is not None:
                    self.after()  # a sweep that sent nothing is still counted
                return outputs
            await deliver(self.send, outputs)
            await self._persist(moved)
            self.stats.ticks += 1
            self.stats.outputs += len(outputs)
            if self.after is not None:
                self.after()
            return outputs

    async def assign(self, partitions: Iterable[int]) -> None:
        """Restore the partitions assigned to this worker (after table recovery), so their
        clocks move and their pages fire even before new input arrives; and drop the
        table's keys of every other partition.

        faust's in-memory store forgets only the keys it recovered itself. The keys this
        worker wrote for a partition it has lost would stay in memory for good, and if the
        partition came back after the changelog's tombstones were compacted away (a day by
        default), a key its new owner deleted meanwhile would come back to life."""
        held = set(partitions)
        if self.restorable is not None and not self.restorable():
            log.info("%s: table recovery is starting again; partitions are restored when "
                     "it is complete", self.name)
            return
        async with self.lock:
            for partition in held:
                self._ensure(partition)
            stale = [key for key in list(self.data.keys()) if isinstance(key, bytes)
                     and (owner := partition_of_key(key)) is not None and owner not in held]
            for key in stale:
                self.data.pop(key, None)
            if stale:
                log.info("%s: dropped %d state records of partitions no longer here",
                         self.name, len(stale))

    async def revoke(self, partitions: Iterable[int]) -> None:
        """Forget revoked partitions (waiting for a batch in flight to finish first, and
        for its state to be written)."""
        async with self.lock:
            await self._confirm_state()
            for partition in partitions:
                self.stage.drop(partition)


class Acks:
    """Acknowledges the messages a runner consumed once its stage has applied them.

    Stage 2 holds records that arrived ahead of its clock (``triage.streams.eventtime``)
    in memory only; their offsets, and every later one of their partition, are acknowledged
    when the stage's ``safe_offset`` passes them, so the committed offset never passes a
    held record and a restart reads it again. Messages of a partition the stage does not
    hold (revoked, or skipped until restored: ``StageRunner.skipped``) are acknowledged at
    once, as faust's streams would. A revoked partition's pending messages are dropped
    unacknowledged: its new owner reads them from the committed offset."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        self.pending: dict[int, list[Any]] = {}

    def ack(self, consumer: Any, messages: Iterable[Any]) -> None:
        """Acknowledge ``messages`` (faust messages, just processed) as far as is safe."""
        parts = self.stage.parts
        safe: dict[int, int | None] = {}  # per partition, once a call (None: not held)
        for message in messages:
            partition = message.partition
            if partition not in safe:
                safe[partition] = (self.stage.safe_offset(partition) if partition in parts
                                   else None)
            limit = safe[partition]
            if partition in self.pending or (limit is not None and message.offset > limit):
                self.pending.setdefault(partition, []).append(message)
            else:
                message.ack(consumer)
        if self.pending:
            self.release(consumer)

    def release(self, consumer: Any) -> None:
        """Acknowledge the pending messages the stage has applied since."""
        parts = self.stage.parts
        for partition, messages in list(self.pending.items()):
            if partition not in parts:
                del self.pending[partition]  # revoked: not ours to acknowledge
                continue
            safe = self.stage.safe_offset(partition)
            keep = []
            for message in messages:
                if message.offset <= safe:
                    message.ack(consumer)
                else:
                    keep.append(message)
            if keep:
                self.pending[partition] = keep
            else:
                del self.pending[partition]

    def drop(self, partitions: Iterable[int]) -> None:
        """Forget the pending messages of revoked partitions."""
        for partition in partitions:
            self.pending.pop(partition, None)

    def __len__(self) -> int:
        return sum(len(m) for m in self.pending.values())


def partition_of_key(key: bytes) -> int | None:
    """The partition a table key belongs to (see ``state_prefix``), None if it has none.

    >>> partition_of_key(b"12|d|abc"), partition_of_key(b"junk")
    (12, None)
    """
    head, sep, _ = key.partition(b"|")
    return int(head) if sep and head.isdigit() else None


class StateTable(faust.Table[bytes, bytes]):
    """A table whose changelog this worker writes itself (``StageRunner``, through
    ``note_ack`` on every acknowledged send). It knows the offset of the last record of
    each changelog partition the broker acknowledged, and tells faust's recovery
    (``persisted_offset``) so that, after a rebalance, a partition the worker kept is not
    read back from its changelog: everything in it is in the table already.

    faust's in-memory store has no persisted offset, so faust re-reads every kept partition
    from where it last read, which for a worker that has written since is its own writes,
    on every rebalance, holding all streams meanwhile. That wait is where faust's recovery
    was seen to stall (``triage.streams.watchdog``). Only partitions held before and after
    the rebalance keep an offset; a partition newly assigned is restored from the start as
    before. If someone else wrote to a kept partition meanwhile (this worker was thrown out
    of the group and let back in without noticing), its high watermark is past the offset
    given here and faust reads the rest.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.written: dict[int, int] = {}

    def note_ack(self, fut: asyncio.Future[Any]) -> None:
        """Done-callback of a changelog send: remember the offset the broker gave it."""
        if fut.cancelled() or fut.exception() is not None:
            return  # sent again by the runner, noted then
        meta = fut.result()
        partition, offset = getattr(meta, "partition", None), getattr(meta, "offset", None)
        if (isinstance(partition, int) and isinstance(offset, int)
                and offset > self.written.get(partition, -1)):
            self.written[partition] = offset

    async def on_rebalance(self, assigned: set[Any], revoked: set[Any],
                           newly_assigned: set[Any], generation_id: int = 0) -> None:
        name = self.changelog_topic.get_topic_name()
        kept = ({tp.partition for tp in assigned if tp.topic == name}
                - {tp.partition for tp in newly_assigned if tp.topic == name})
        for partition in set(self.written) - kept:
            del self.written[partition]
        if self.written:
            log.info("%s: partitions %s kept; their changelog is not read again (written "
                     "up to offsets %s)", self.name, sorted(self.written),
                     dict(sorted(self.written.items())))
        await super().on_rebalance(assigned, revoked, newly_assigned, generation_id)

    def persisted_offset(self, tp: Any) -> int | None:
        if tp.topic != self.changelog_topic.get_topic_name():
            return None
        return self.written.get(tp.partition)


def state_table(app: faust.App, name: str, **kwargs: Any) -> StateTable:
    """A ``StateTable`` registered on ``app`` as ``app.Table`` registers its tables."""
    table = StateTable(app, name=name, beacon=app.tables.beacon, **kwargs)
    app.tables.add(table)
    return table


class DirectReader:
    """``StageRunner.fetch`` on a real broker: reads an offset range of one partition of
    ``topic`` with a plain consumer outside the consumer group (assign, seek), started on
    first use and kept. Until it has read the range it retries (the broker may be away),
    unless ``owns(partition)`` turns false: then it returns None."""

    def __init__(self, settings: Settings, topic: str, owns: Callable[[int], bool], *,
                 retry: float = 1.0, timeout: float = 30.0) -> None:
        self.kafka = settings.kafka
        self.topic = topic
        self.owns = owns
        self.retry = retry
        self.timeout = timeout
        self._consumer: AIOKafkaConsumer | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, partition: int, start: int, end: int
                       ) -> list[tuple[int, bytes | None]] | None:
        async with self._lock:
            delay = self.retry
            while self.owns(partition):
                try:
                    return await asyncio.wait_for(self._read(partition, start, end),
                                                  self.timeout)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # broker away, leader moving: try again
                    log.warning("reading %s[%d] offsets %d..%d failed (%r); retrying in "
                                "%.0fs", self.topic, partition, start, end - 1, exc, delay)
                    await self.close()
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 10.0)
            return None

    async def _read(self, partition: int, start: int, end: int
                    ) -> list[tuple[int, bytes | None]] | None:
        consumer = self._consumer
        if consumer is None:
            consumer = AIOKafkaConsumer(**aiokafka_config(self.kafka), group_id=None,
                                        enable_auto_commit=False,
                                        auto_offset_reset="earliest",
                                        client_id=f"{self.kafka.app_id}-refetch")
            await consumer.start()
            self._consumer = consumer
        tp = TopicPartition(self.topic, partition)
        consumer.assign([tp])
        consumer.seek(tp, start)
        out: list[tuple[int, bytes | None]] = []
        # offsets the topic no longer holds (retention) or never held a message at
        # (transaction markers) are stepped over by the position itself
        while await consumer.position(tp) < end:
            if not self.owns(partition):
                return None
            fetched = await consumer.getmany(tp, timeout_ms=500)
            for record in fetched.get(tp, ()):
                if record.offset >= end:
                    return out
                if record.offset >= start:
                    out.append((record.offset, record.value))
        return out

    async def close(self) -> None:
        consumer, self._consumer = self._consumer, None
        if consumer is not None:
            try:
                await consumer.stop()
            except Exception as exc:  # closing a broken client: nothing more to do
                log.debug("closing the refetch consumer: %r", exc)


@dataclass
class Streams:
    """Everything ``wire`` added to the app."""

    app: faust.App
    intake: StageRunner
    incidents: StageRunner
    intake_agent: Any
    incident_agent: Any
    topics: dict[str, str]


def set_state_sizes(metrics: TriageMetrics, intake: IntakeStage,
                    incidents: IncidentStage) -> None:
    """The state-size gauges for the partitions this worker owns (silences: the most any
    of its partitions knows, since every partition holds the configured ones)."""
    pipelines = [part.pipeline for part in list(intake.parts.values())]
    engines = [part.engine for part in list(incidents.parts.values())]
    metrics.set_state_sizes(
        active_alerts=sum(1 for p in pipelines for st in p.dedup.states.values()
                          if st.status == "firing"),
        open_incidents=sum(1 for e in engines for i in e.incidents.values()
                           if i.status == "open"),
        silences=max((len(p.silences) for p in pipelines),
                     default=len(intake.template.silences)))
    metrics.waiting.labels("intake").set(intake.waiting())
    metrics.waiting.labels("incidents").set(incidents.held())


def consumer_lag(app: faust.App, stages: dict[str, Stage]) -> dict[str, int]:
    """Messages behind per topic (real name), summed over the partitions of it this worker
    owns: the high watermark the consumer last fetched minus the next offset the stage will
    process (its position; a partition not yet restored counts from 0). Partitions whose
    watermark is not known yet count 0."""
    lag = dict.fromkeys(stages, 0)
    for tp in app.consumer.assignment():
        stage = stages.get(tp.topic)
        if stage is None:
            continue
        try:
            high = app.consumer.highwater(tp)
        except Exception:  # not fetched yet, or assignment moving
            continue
        if high is None:
            continue
        part = stage.parts.get(tp.partition)
        position = part.offset + 1 if part is not None else 0
        lag[tp.topic] += max(0, int(high) - position)
    return lag


async def run_change_feed(settings: Settings, incidents: IncidentStage, *,
                          stop: Callable[[], bool], poll_ms: int = 500) -> None:
    """Read every partition of ``changes`` from the beginning, without a consumer group, into
    the shared change index, and keep following it. Change ids make re-reading harmless, so
    after any error the feed simply starts over."""
    while not stop():
        try:
            await _follow_changes(settings, incidents, stop=stop, poll_ms=poll_ms)
        except asyncio.CancelledError:
            raise
        except Exception:  # the feed must not take the worker down
            log.exception("change feed failed; restarting it in 5s")
            await asyncio.sleep(5)


async def _follow_changes(settings: Settings, incidents: IncidentStage, *,
                          stop: Callable[[], bool], poll_ms: int) -> None:
    name = settings.kafka.topics["changes"]
    consumer = AIOKafkaConsumer(**aiokafka_config(settings.kafka), group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest",
                                client_id=f"{settings.kafka.app_id}-changes")
    await consumer.start()
    try:
        assigned: set[int] = set()
        while not stop():
            found = consumer.partitions_for_topic(name) or set()
            if found - assigned:  # first look, or partitions added to the topic
                assigned = set(found)
                tps = [TopicPartition(name, p) for p in sorted(assigned)]
                consumer.assign(tps)
                await consumer.seek_to_beginning(*tps)
            if not assigned:
                await consumer.force_metadata_update()
                await asyncio.sleep(poll_ms / 1000)
                continue
            batch = await consumer.getmany(timeout_ms=poll_ms)
            for records in batch.values():
                for record in records:
                    incidents.add_change(record.value)
    finally:
        await consumer.stop()
