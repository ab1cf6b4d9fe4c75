"""``StateTable``: what it tells faust's recovery about the partitions a worker keeps across
a rebalance (a real faust table and store, no broker; the rebalance itself is exercised in
``tests/integration/test_rebalance.py``)."""

from __future__ import annotations

import asyncio
from typing import Any, NamedTuple

from triage.app.settings import Settings
from triage.streams.agents import StateTable, state_table
from triage.streams.app import build_app


class TP(NamedTuple):
    topic: str
    partition: int


class Meta(NamedTuple):  # the parts of aiokafka's RecordMetadata read
    partition: int
    offset: int


def table() -> StateTable:
    return state_table(build_app(Settings()), "intake-state", partitions=4,
                       key_type=bytes, value_type=bytes)


def acks(t: StateTable, *results: Meta | Exception) -> None:
    """Resolve one send future per result, with ``note_ack`` as its done-callback."""

    async def go() -> None:
        loop = asyncio.get_running_loop()
        for result in results:
            fut: asyncio.Future[Any] = loop.create_future()
            fut.add_done_callback(t.note_ack)
            if isinstance(result, Exception):
                fut.set_exception(result)
            else:
                fut.set_result(result)
        await asyncio.sleep(0)  # callbacks run

    asyncio.run(go())


def rebalance(t: StateTable, assigned: set[int], newly: set[int]) -> None:
    name = t.changelog_topic.get_topic_name()
    asyncio.run(t.on_rebalance({TP(name, p) for p in assigned} | {TP("alerts.raw", 0)},
                               set(), {TP(name, p) for p in newly}))


def test_kept_partitions_tell_recovery_their_last_acknowledged_offset() -> None:
    t = table()
    name = t.changelog_topic.get_topic_name()
    assert name.endswith("intake-state-changelog")
    acks(t, Meta(2, 0), Meta(2, 1), Meta(3, 7), Meta(2, 5), Meta(0, 9))
    rebalance(t, assigned={2, 3}, newly=set())  # 0 went to another worker
    assert t.persisted_offset(TP(name, 2)) == 5
    assert t.persisted_offset(TP(name, 3)) == 7
    assert t.persisted_offset(TP(name, 0)) is None  # revoked: forgotten
    assert t.persisted_offset(TP("another-changelog", 2)) is None


def test_a_partition_newly_assigned_is_read_from_the_start() -> None:
    t = table()
    name = t.changelog_topic.get_topic_name()
    acks(t, Meta(1, 4))
    rebalance(t, assigned={1}, newly={1})  # lost and given back: others may have written
    assert t.persisted_offset(TP(name, 1)) is None


def test_failed_sends_count_nothing_and_offsets_only_grow() -> None:
    t = table()
    name = t.changelog_topic.get_topic_name()
    acks(t, Meta(2, 8), ConnectionError("leader moved"), Meta(2, 3))
    rebalance(t, assigned={2}, newly=set())
    assert t.persisted_offset(TP(name, 2)) == 8


def test_a_worker_that_has_written_nothing_leaves_faust_its_own_offsets() -> None:
    t = table()
    name = t.changelog_topic.get_topic_name()
    rebalance(t, assigned={0, 1}, newly=set())
    assert t.persisted_offset(TP(name, 0)) is None
