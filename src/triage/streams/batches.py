"""The hot path: ``alerts.raw`` and ``alerts.keyed`` reach the stages in the batches the
consumer fetched, not one message at a time through faust's conductor and streams.

Why (BENCHMARKS.md, issue 12): on a backlog a worker spent 279 µs of wall time per alert,
under a fifth of it in triage's stages. faust's consumer awaits, for every record,
``wait_first(callback(message), suspend_flow.wait())`` (two tasks and an ``asyncio.wait``),
the conductor's callback then decodes it into an event and puts it on a channel queue with
flow-control checks, and the stream takes it off again, one event per loop turn.

What changes: ``BatchingConsumer`` is faust's aiokafka consumer with one method replaced,
``_drain_messages``. For the batch topics it keeps everything faust does with a fetched
record (the read offset, gap tracking, periodic commits, dropping what arrives while the
flow is suspended) but, instead of the per-record callback, tracks each record as a stream
would (``consumer.unacked``) and hands the whole fetch to a ``BatchBuffer`` at once. The
agent of that topic takes batches off the buffer, runs the stage, and acks each record
(``Message.ack``), so faust commits exactly what it would have. Everything else stays
faust's: the consumer group and rebalances, the tables and their recovery, other topics.

Records fetched for an older consumer generation, or while faust's flow control is
inactive (a rebalance), are acked without being processed, as faust's streams skip them;
the stage runner reads any hole that leaves from the partition itself (``StageRunner``).

The replaced method is a copy of faust-streaming's ``Consumer._drain_messages`` (0.11 to
0.12, pinned in pyproject.toml) with the batch branch added; a faust upgrade must re-check
it (``tests/integration`` runs the worker on the real broker with it).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Iterable
from typing import Any, cast

from faust.transport.consumer import CONSUMER_FETCHING
from faust.transport.drivers.aiokafka import Consumer as AIOKafkaConsumer

# A buffer holds up to this many fetched records before the fetch loop waits for the
# stage: enough for several fetches (aiokafka returns up to max_poll_records, 500 by
# faust's default, per partition), bounded so a slow stage holds the fetcher back.
HIGH_WATER = 20_000


class BatchBuffer:
    """Fetched records of one topic, waiting for its agent."""

    def __init__(self, high_water: int = HIGH_WATER) -> None:
        self.high_water = high_water
        self._items: deque[Any] = deque()
        self._ready = asyncio.Event()
        self._room = asyncio.Event()
        self._room.set()

    def __len__(self) -> int:
        return len(self._items)

    def put(self, messages: Iterable[Any]) -> None:
        """Add fetched records (in fetch order)."""
        self._items.extend(messages)
        if self._items:
            self._ready.set()
        if len(self._items) >= self.high_water:
            self._room.clear()

    async def wait_room(self) -> None:
        """Until the agent has taken the buffer under its high-water mark."""
        while len(self._items) >= self.high_water:
            self._room.clear()
            await self._room.wait()

    async def get(self, limit: int) -> list[Any]:
        """Up to ``limit`` records, waiting for at least one."""
        while not self._items:
            self._ready.clear()
            await self._ready.wait()
        items = self._items
        n = min(limit, len(items))
        out = [items.popleft() for _ in range(n)]
        if len(items) < self.high_water:
            self._room.set()
        return out

    def clear(self) -> None:
        """Forget what is buffered (records of revoked partitions come again from their
        committed offsets, to whoever owns them)."""
        self._items.clear()
        self._room.set()


class BatchingConsumer(AIOKafkaConsumer):
    """faust's aiokafka consumer, handing fetched records of ``batch_buffers``' topics to
    their buffers in one step (module doc). Subclassed per app by ``batching_consumer``."""

    batch_buffers: dict[str, BatchBuffer] = {}

    async def _deliver(self, pending: list[Any]) -> None:
        """Track ``pending`` as faust's streams would, then buffer it by topic."""
        if self.suspend_flow.is_set():  # as wait_first(callback, suspend_flow.wait()): dropped
            return
        app = self.app
        await app.flow_control.acquire()
        add_unacked = self._unacked_messages.add
        acking = app.topics.acking_topics
        by_topic: dict[str, list[Any]] = {}
        for message in pending:
            if message.topic in acking and not message.tracked:
                message.tracked = True
                add_unacked(message)
            # one reader (the stage): its ack takes the reference count from 0 to the
            # final ack, so no incref (2% of a worker's time, measured)
            by_topic.setdefault(message.topic, []).append(message)
        buffers = self.batch_buffers
        for topic, messages in by_topic.items():
            buffer = buffers[topic]
            buffer.put(messages)
            await buffer.wait_room()

    async def _drain_messages(self, fetcher: Any) -> None:  # pragma: no cover (broker tests)
        # faust-streaming's Consumer._drain_messages, with the batch branch marked below.
        callback = self.callback
        getmany = self.getmany
        consumer_should_stop = self._stopped.is_set
        fetcher_should_stop = fetcher._stopped.is_set

        get_read_offset = self._read_offset.__getitem__
        set_read_offset = self._read_offset.__setitem__
        flag_consumer_fetching = CONSUMER_FETCHING
        set_flag = self.diag.set_flag
        unset_flag = self.diag.unset_flag
        commit_every = self._commit_every
        acks_enabled_for = self.app.topics.acks_enabled_for
        batched = self.batch_buffers

        yield_every = 100
        num_since_yield = 0
        sleep = asyncio.sleep

        try:
            while not (consumer_should_stop() or fetcher_should_stop()):
                set_flag(flag_consumer_fetching)
                ait = cast(AsyncIterator[Any], getmany(timeout=1.0))
                await self.sleep(0)
                if not self.should_stop:
                    pending: list[Any] = []  # batch topics' records of this fetch
                    async for tp, message in ait:
                        num_since_yield += 1
                        if num_since_yield > yield_every:
                            await sleep(0)
                            num_since_yield = 0

                        offset = message.offset
                        r_offset = get_read_offset(tp)
                        if r_offset is None or offset >= r_offset:
                            gap = offset - (r_offset or 0)
                            if gap > 1 and r_offset and acks_enabled_for(message.topic):
                                await self._add_gap(tp, r_offset + 1, offset)
                            if commit_every is not None and self._n_acked >= commit_every:
                                self._n_acked = 0
                                await self.commit()
                            if tp.topic in batched:  # the batch branch
                                pending.append(message)
                                set_read_offset(tp, offset)
                                continue
                            await self.wait_first(callback(message), self.suspend_flow.wait())
                            set_read_offset(tp, offset)
                    if pending:
                        await self._deliver(pending)
                    unset_flag(flag_consumer_fetching)

        except self.consumer_stopped_errors:
            if self.transport.app.should_stop:
                self.log.info("Broker stopped consumer, shutting down...")
                return
            raise
        except asyncio.CancelledError:
            if self.transport.app.should_stop:
                self.log.info("Consumer shutting down for user cancel.")
                return
            raise
        except Exception as exc:
            self.log.exception("Drain messages raised: %r", exc)
            raise
        finally:
            unset_flag(flag_consumer_fetching)


def batching_consumer(buffers: dict[str, BatchBuffer]) -> type[BatchingConsumer]:
    """A ``BatchingConsumer`` class for one app's buffers (set it as the app's transport's
    ``Consumer`` before the consumer is created)."""
    return type("TriageBatchingConsumer", (BatchingConsumer,), {"batch_buffers": buffers})


async def take_batches(app: Any, buffer: BatchBuffer, limit: int) -> AsyncIterator[
        tuple[list[Any], list[Any]]]:
    """(records to process, every record taken) from ``buffer``, forever: records of an older
    consumer generation, or taken while flow control is inactive (a rebalance), are left out
    of the first, as faust's streams skip them. Ack every record taken once processed."""
    while True:
        taken = await buffer.get(limit)
        if not app.flow_control.is_active():
            yield [], taken
            continue
        generation = app.consumer_generation_id
        yield [m for m in taken if m.generation_id == generation], taken
