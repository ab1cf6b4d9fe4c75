"""Wiring only (CONVENTIONS 10): faust's ``agent.test_context()``, memory store, outbound
sends and the changelog faked. The real broker is exercised in ``tests/integration``."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any

import orjson
import pytest

from triage.app.settings import Settings
from triage.core.incidents import CorrelationPolicy, IncidentEngine
from triage.core.pipeline import Pipeline
from triage.streams.agents import StageRunner, deliver
from triage.streams.stages import IntakeStage, Output, domain_mapper
from triage.streams.worker import build_streams


class FakeSender:
    def __init__(self, log: list[Any], fail_first: int = 0, lose_state: int = 0) -> None:
        self.log = log
        self.fail_first = fail_first
        self.lose_state = lose_state  # state records whose ack fails (after being queued)

    async def __call__(self, topic: str, key: bytes | None, value: bytes | None,
                       partition: int | None = None) -> Awaitable[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if self.fail_first > 0:
            self.fail_first -= 1
            fut.set_exception(ConnectionError("broker away"))
        else:
            # state records (the tables' changelogs) logged apart from outputs
            kind = "state" if topic.endswith("-state") else "sent"
            if kind == "state" and self.lose_state > 0:
                self.lose_state -= 1
                fut.set_exception(ConnectionError("leader moved"))
                return fut
            self.log.append((kind, topic, key, value, partition))
            fut.set_result(None)
        return fut


def alert(name: str, service: str, at: float) -> bytes:
    return orjson.dumps({"alertname": name, "service": service, "at": at})


def test_outputs_are_acknowledged_before_state_is_written() -> None:
    log: list[Any] = []
    stage = IntakeStage(Pipeline(), domain_of=domain_mapper(IncidentEngine()))
    data: dict[bytes, bytes] = {}
    runner = StageRunner(name="intake", stage=stage, data=data, changelog="intake-state",
                         send=FakeSender(log))
    asyncio.run(runner.handle([(0, 0, alert("A", "db", 1.0)), (1, 0, b"junk"),
                               (0, 1, alert("B", "db", 2.0))]))
    kinds = [entry[0] for entry in log]
    assert kinds.index("state") > max(i for i, k in enumerate(kinds) if k == "sent")
    # per partition, the meta record (offset, clock) is the last state write
    assert [e[2] for e in log if e[0] == "state" and e[4] == 0][-1] == b"0|m"
    # the table holds what the changelog was sent
    assert data == {e[2]: e[3] for e in log if e[0] == "state"}
    assert runner.stats.messages == 3


def test_lost_state_records_are_written_again_before_newer_state() -> None:
    log: list[Any] = []
    stage = IntakeStage(Pipeline(), domain_of=domain_mapper(IncidentEngine()))
    # every state record of the first batch fails after it was queued
    runner = StageRunner(name="intake", stage=stage, data={}, changelog="intake-state",
                         send=FakeSender(log, lose_state=2))

    async def two_batches() -> None:
        await runner.handle([(0, 0, alert("A", "db", 1.0))])
        assert [e for e in log if e[0] == "state"] == []  # not confirmed yet: pipelined
        await runner.handle([(0, 1, alert("B", "db", 2.0))])

    asyncio.run(two_batches())
    state = [(e[2], orjson.loads(e[3]) if e[2].endswith(b"|m") else None)
             for e in log if e[0] == "state"]
    metas = [rec["offset"] for key, rec in state if key == b"0|m"]
    # batch 1's records (alert A, meta at offset 0) again, then batch 2's: newest last
    assert metas == [0, 1]
    keys = [key for key, _ in state]
    assert keys.index(b"0|m") < keys.index(b"0|m", keys.index(b"0|m") + 1)
    assert any(k.startswith(b"0|a|") for k in keys[:keys.index(b"0|m")])


class AckLater:
    """Acknowledges each send on a later turn of the loop, as a broker does; notes with
    each state record how many state records sent before it were unacknowledged then."""

    def __init__(self) -> None:
        self.log: list[tuple[bytes | None, int]] = []
        self.unacked: list[asyncio.Future[Any]] = []

    async def __call__(self, topic: str, key: bytes | None, value: bytes | None,
                       partition: int | None = None) -> Awaitable[Any]:
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[Any] = loop.create_future()
        loop.call_soon(fut.set_result, None)
        if topic.endswith("-state"):
            self.log.append((key, sum(not f.done() for f in self.unacked)))
            self.unacked.append(fut)
        return fut


def test_a_partition_that_handed_alerts_over_writes_its_offset_after_their_owners_state(
        ) -> None:
    """Stage 1 triaged alerts of a partition's message on their owners (other partitions
    of this worker): the sender's meta record, which says the message need not be read
    again, goes to the changelog only once the owners' state is acknowledged. Otherwise a
    crash could keep the offset and lose the alerts."""
    from kafka.partitioner.default import murmur2

    from triage.streams.stages import key_partitioner

    partition_of = key_partitioner(murmur2, 4)
    stage = IntakeStage(Pipeline(), domain_of=domain_mapper(IncidentEngine()),
                        raw_partitions=4, partition_of=partition_of)
    send = AckLater()
    clock = [0.0]
    runner = StageRunner(name="intake", stage=stage, data={}, changelog="intake-state",
                         send=send, wall=lambda: clock[0], idle_after=600.0)
    fingerprint = Pipeline().fingerprinter.fingerprint
    names = {partition_of(fingerprint("generic", {"alertname": f"A{i}", "service": "db"})
                          .encode()): f"A{i}" for i in range(40)}
    payload = orjson.dumps([{"alertname": names[p], "service": "db", "at": 5.0}
                            for p in range(4)])

    async def run() -> None:
        await runner.assign(range(4))
        await runner.handle([(0, 0, payload)])
        for wall in (2.0, 3.0):  # the other partitions go idle: the payload's time comes
            clock[0] = wall
            send.log.clear()
            await runner.tick()
            if any(key.startswith(b"1|a|") for key, _ in send.log):
                return
        raise AssertionError("the payload was never triaged")

    asyncio.run(run())
    keys = [key for key, _ in send.log]
    assert keys[-1] == b"0|m"  # the sender's meta, last
    assert {b"1|m", b"2|m", b"3|m"} <= set(keys[:-1])
    assert send.log[-1][1] == 0  # ...sent once everything before it was acknowledged
    assert max(pending for _, pending in send.log[:-1]) > 0  # (the rest is pipelined)


def test_failed_sends_are_resent_in_order_until_acknowledged() -> None:
    log: list[Any] = []
    asyncio.run(deliver(FakeSender(log, fail_first=3), [Output("keyed", b"k", b"1"),
                                                         Output("keyed", b"k", b"2")],
                        retry_delay=0.001))
    # "2" got through while "1" failed: both go again, so the last copies are in order
    assert [e[3] for e in log] == [b"2", b"1", b"2"]


@pytest.mark.parametrize("partitions", [1])
def test_agents_route_through_faust_test_context(partitions: int) -> None:
    log: list[Any] = []
    engine = IncidentEngine(policy=CorrelationPolicy(page_delay=0.0, lone_delay=0.0,
                                                     lone_critical_delay=0.0))
    # one partition each: routing between partitions is tested in test_routing.py
    streams = build_streams(Settings(), pipeline=Pipeline(), engine=engine,
                            send=FakeSender(log), change_feed=False,
                            partitions={"raw": partitions, "keyed": partitions})

    async def scenario() -> None:
        async with streams.intake_agent.test_context() as agent:
            await agent.put(alert("DiskFull", "db", 100.0))
            await agent.put(b"{oops")
            await asyncio.sleep(0.2)  # take_events flushes on its 20 ms timeout
        keyed = [e[3] for e in log if e[0] == "sent" and e[1] == "keyed"]
        async with streams.incident_agent.test_context() as agent:
            for value in keyed:
                await agent.put(value)
            await asyncio.sleep(0.2)

    asyncio.run(scenario())
    sent = [(e[1], e[2]) for e in log if e[0] == "sent"]
    assert ("keyed", b"db") in sent and ("deadletter", None) in sent
    created = [orjson.loads(e[3]) for e in log if e[0] == "sent" and e[1] == "incidents"]
    assert [c["type"] for c in created] == ["incident.created"]
    assert created[0]["incident"]["services"] == ["db"]
    assert any(e[0] == "state" for e in log)


class ListFetch:
    """``StageRunner.fetch`` over a list of a partition's messages (the "topic")."""

    def __init__(self, topic: dict[int, list[bytes]], owned: bool = True) -> None:
        self.topic = topic
        self.owned = owned
        self.calls: list[tuple[int, int, int]] = []

    async def __call__(self, partition: int, start: int, end: int
                       ) -> list[tuple[int, bytes | None]] | None:
        self.calls.append((partition, start, end))
        if not self.owned:
            return None
        return [(o, v) for o, v in enumerate(self.topic[partition]) if start <= o < end]


def topic_of(*prefixes: str, n: int = 6) -> dict[int, list[bytes]]:
    """Partition p of a fake ``alerts.raw`` holds ``n`` alerts named ``prefixes[p]<i>``."""
    return {p: [alert(f"{name}{i}", f"{name.lower()}{i}", 10.0 + i) for i in range(n)]
            for p, name in enumerate(prefixes)}


def fetching_runner(topic: dict[int, list[bytes]], log: list[Any], *,
                    data: dict[bytes, bytes] | None = None, **kwargs: Any
                    ) -> tuple[StageRunner, IntakeStage, ListFetch]:
    """A stage-1 runner whose ``fetch`` reads ``topic``."""
    fetch = ListFetch(topic)
    stage = IntakeStage(Pipeline(), domain_of=domain_mapper(IncidentEngine()))
    runner = StageRunner(name="intake", stage=stage, data={} if data is None else data,
                         changelog="intake-state", send=FakeSender(log), fetch=fetch,
                         **kwargs)
    return runner, stage, fetch


def keyed_names(log: list[Any]) -> list[str]:
    return [orjson.loads(e[3])["labels"]["alertname"] for e in log
            if e[0] == "sent" and e[1] == "keyed" and b'"kind":"alert"' in e[3]]


def test_messages_the_consumer_skipped_are_read_directly_and_processed_in_order() -> None:
    log: list[Any] = []
    topic = topic_of("A", n=8)
    counted: list[int] = []
    runner, stage, fetch = fetching_runner(topic, log, on_refetch=counted.append)

    async def batches() -> None:
        await runner.handle([(0, 0, topic[0][0]), (0, 1, topic[0][1])])
        # faust delivered 2, then 5 (3 and 4 skipped), then 6
        await runner.handle([(0, 2, topic[0][2]), (0, 5, topic[0][5]), (0, 6, topic[0][6])])

    asyncio.run(batches())
    assert fetch.calls == [(0, 3, 5)]
    assert keyed_names(log) == [f"A{i}" for i in range(7)]
    assert runner.stats.refetched == 2 and counted == [2]  # the metric is told
    assert stage.parts[0].offset == 6


def test_a_restored_partition_resumes_where_its_state_ends_not_where_the_group_does() -> None:
    """The committed offset ahead of the state (a kill -9 between a commit and the state
    write, or offsets reset by hand): the stage reads from its own position."""
    topic = topic_of("A", n=10)
    data: dict[bytes, bytes] = {}
    runner, _, _ = fetching_runner(topic, [], data=data)
    asyncio.run(runner.handle([(0, o, topic[0][o]) for o in range(3)]))
    # a new worker, restored from the table, handed offset 7 first
    log: list[Any] = []
    runner, _, fetch = fetching_runner(topic, log, data=data)
    asyncio.run(runner.handle([(0, o, topic[0][o]) for o in range(7, 10)]))
    assert fetch.calls == [(0, 3, 7)]
    assert keyed_names(log) == [f"A{i}" for i in range(3, 10)]


def test_replays_and_a_partition_without_state_read_nothing() -> None:
    topic = topic_of("A", "B")
    log: list[Any] = []
    runner, _, fetch = fetching_runner(topic, log)

    async def batches() -> None:
        # no state yet: the partition starts wherever the group does (here at 3)
        await runner.handle([(0, 3, topic[0][3]), (1, 0, topic[1][0]), (0, 4, topic[0][4])])
        # a replay from before the state's position (the committed offset is behind)
        await runner.handle([(0, o, topic[0][o]) for o in range(2, 6)])

    asyncio.run(batches())
    assert fetch.calls == []
    assert keyed_names(log) == ["A3", "B0", "A4", "A5"]


def test_a_partition_revoked_while_its_hole_is_read_is_left_to_its_new_owner() -> None:
    topic = topic_of("A", "B")
    log: list[Any] = []
    runner, stage, fetch = fetching_runner(topic, log)

    async def batches() -> None:
        await runner.handle([(0, 0, topic[0][0]), (1, 0, topic[1][0])])
        fetch.owned = False  # partition 0 moves to another worker while its hole is read
        await runner.handle([(0, 3, topic[0][3]), (1, 1, topic[1][1]), (0, 4, topic[0][4])])

    asyncio.run(batches())
    assert fetch.calls == [(0, 1, 3)]
    assert keyed_names(log) == ["A0", "B0", "B1"]
    assert stage.parts[0].offset == 0  # its state still says where the new owner resumes


def test_messages_skipped_as_revoked_are_read_back_if_the_partition_stays_ours() -> None:
    """faust acks what ``handle`` skips; when the partition turns out to be (again) this
    worker's, the next tick reads those messages rather than waiting for newer input."""
    topic = topic_of("A", "B")
    log: list[Any] = []
    held = {0, 1}
    runner, stage, fetch = fetching_runner(topic, log, assigned=lambda: set(held))

    async def scenario() -> None:
        await runner.handle([(0, 0, topic[0][0]), (1, 0, topic[1][0])])
        held.discard(0)  # mid-rebalance: partition 0 looks taken away
        await runner.handle([(0, 1, topic[0][1]), (0, 2, topic[0][2]), (1, 1, topic[1][1])])
        await runner.tick()  # still not ours: left for its owner
        assert fetch.calls == [] and keyed_names(log) == ["A0", "B0", "B1"]
        held.add(0)  # the rebalance gave it back
        await runner.tick()

    asyncio.run(scenario())
    assert fetch.calls == [(0, 1, 3)]
    assert keyed_names(log) == ["A0", "B0", "B1", "A1", "A2"]
    assert stage.parts[0].offset == 2 and runner.skipped == {}


def test_after_a_rebalance_the_table_keeps_only_the_partitions_still_held() -> None:
    """faust's memory store forgets only what it recovered; what the runner wrote for a
    partition that left would stay, and come back if the partition did."""
    log: list[Any] = []
    data: dict[bytes, bytes] = {}
    runner, stage, _ = fetching_runner(topic_of("A", "B", "C"), log, data=data)
    asyncio.run(runner.handle([(p, 0, alert(f"X{p}", f"svc{p}", 10.0)) for p in (0, 1, 2)]))
    before = {p: sorted(k for k in data if k.startswith(b"%d|" % p)) for p in (0, 1, 2)}
    assert all(before.values())  # every partition wrote state
    data[b"not-a-partition-key"] = b"kept as is"
    asyncio.run(runner.revoke([0, 1, 2]))  # eager: everything revoked first
    asyncio.run(runner.assign([0, 2]))  # then 0 and 2 given back
    assert sorted(k for k in data if k.startswith(b"0|")) == before[0]
    assert sorted(k for k in data if k.startswith(b"2|")) == before[2]
    assert not [k for k in data if k.startswith(b"1|")]
    assert data[b"not-a-partition-key"] == b"kept as is"
    assert set(stage.parts) == {0, 2}  # and the stages were rebuilt from what was kept


def test_a_partition_is_not_restored_from_a_table_still_being_recovered() -> None:
    """faust can report a table recovery complete while it starts it again (the changelog
    unread): a partition restored then would start empty and lose its state. Until a real
    completion its messages are skipped, and read back once it is restored."""
    topic = topic_of("A", "B")
    data: dict[bytes, bytes] = {}
    first, _, _ = fetching_runner(topic, [], data=data)
    asyncio.run(first.handle([(1, 0, topic[1][0]), (1, 1, topic[1][1])]))  # B's state
    assert any(k.startswith(b"1|") for k in data)
    recovered = [False]
    full = dict(data)
    data.clear()  # the new owner's table: its changelog not read yet
    log: list[Any] = []
    runner, stage, fetch = fetching_runner(topic, log, data=data,
                                           restorable=lambda: recovered[0])

    async def scenario() -> None:
        await runner.assign([1])  # the premature "complete": nothing restored
        assert 1 not in stage.parts
        await runner.handle([(1, 2, topic[1][2]), (1, 3, topic[1][3])])
        assert 1 not in stage.parts and runner.skipped == {1: 3} and keyed_names(log) == []
        data.update(full)  # the recovery that really completes
        recovered[0] = True
        await runner.assign([1])
        await runner.tick()

    asyncio.run(scenario())
    assert stage.parts[1].offset == 3  # from B's state, not from nothing
    assert fetch.calls == [(1, 2, 4)]
    assert keyed_names(log) == ["B2", "B3"]
