"""The recovery watchdog: when it restarts faust's table recovery, what it logs, when it
gives up. faust's recovery is faked (the stall it guards against could not be provoked on
purpose); one test checks that faust's real ``Recovery`` offers what the watchdog reads."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any, NamedTuple

import pytest

from triage.app.settings import Settings
from triage.metrics import TriageMetrics
from triage.streams.app import build_app
from triage.streams.watchdog import (
    Action,
    RecoveryStalled,
    StallWatch,
    keep_watching,
    progress_of,
    recovery_watchdog,
    restart,
)


class TP(NamedTuple):
    topic: str
    partition: int


STUCK = TP("triage-intake-state-changelog", 2)


class FakeRecovery:
    """The parts of faust's ``Recovery`` the watchdog reads."""

    def __init__(self) -> None:
        self.in_recovery = True
        self.active_tps = {STUCK, TP(STUCK.topic, 3)}
        self.active_offsets: Counter[TP] = Counter({STUCK: -1, TP(STUCK.topic, 3): 40})
        self.active_highwaters: Counter[TP] = Counter({STUCK: 57, TP(STUCK.topic, 3): 40})
        self.signal_recovery_start = asyncio.Event()

    def active_remaining(self) -> Counter[TP]:
        return Counter({tp: hw - self.active_offsets[tp]
                        for tp, hw in self.active_highwaters.items()})


class FakeConsumer:
    """faust's consumer as the watchdog sees it; ``answers``: whether the broker does."""

    def __init__(self) -> None:
        self._paused_partitions: set[TP] = set()
        self._read_offset: dict[TP, int] = {}
        self.flow_active = True
        self.answers = True
        self.asked: list[list[TP]] = []

    async def highwaters(self, *tps: TP) -> dict[TP, int]:
        self.asked.append(list(tps))
        if not self.answers:
            raise ConnectionError("Unable to bootstrap")  # what aiokafka raises, roughly
        return dict.fromkeys(tps, 57)


class FakeApp:
    def __init__(self) -> None:
        self.tables = type("Tables", (), {})()
        self.tables.recovery = FakeRecovery()
        self.consumer = FakeConsumer()
        self.crashed: list[BaseException] = []

    async def crash(self, reason: BaseException) -> None:
        self.crashed.append(reason)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def run_checks(check: Any, clock: Clock, seconds: int, recovery: FakeRecovery | None = None,
               restarts: list[float] | None = None) -> None:
    """Call the watchdog once a second for ``seconds``; a restart clears the signal as
    faust's recovery loop does when it begins again."""

    async def go() -> None:
        for _ in range(seconds):
            clock.now += 1
            await check()
            if recovery is not None and recovery.signal_recovery_start.is_set():
                recovery.signal_recovery_start.clear()
                if restarts is not None:
                    restarts.append(clock.now)

    asyncio.run(go())


def test_a_stalled_recovery_is_restarted_and_the_partition_left_is_named(
        caplog: pytest.LogCaptureFixture) -> None:
    app, clock, counted, restarts = FakeApp(), Clock(), [], []
    check = recovery_watchdog(app, stall_after=15, max_restarts=3, clock=clock,
                              on_restart=lambda: counted.append(1))
    with caplog.at_level(logging.WARNING, logger="triage.streams"):
        run_checks(check, clock, 20, app.tables.recovery, restarts)
    assert restarts == [16]  # first look at 1 s, no progress since: 15 s later
    assert counted == [1]
    warning = caplog.records[-1].getMessage()
    assert "no progress in 15s; restarting it (1 of 3)" in warning
    # the partition still to read, with faust's view of it; not the one already read
    assert "triage-intake-state-changelog[2]: read to -1, high watermark 57 (58 to go)" in warning
    assert "[3]" not in warning
    assert app.crashed == []


def test_recovery_that_moves_is_left_alone_however_slow() -> None:
    app, clock, restarts = FakeApp(), Clock(), []
    recovery = app.tables.recovery
    check = recovery_watchdog(app, stall_after=15, clock=clock)

    async def go() -> None:
        for second in range(120):
            clock.now += 1
            if second % 10 == 0:
                recovery.active_offsets[STUCK] += 1  # one record every 10 s
            await check()
            if recovery.signal_recovery_start.is_set():
                restarts.append(clock.now)

    asyncio.run(go())
    assert restarts == []


def test_after_the_last_restart_in_vain_the_worker_stops_with_the_reason(
        caplog: pytest.LogCaptureFixture) -> None:
    app, clock, restarts = FakeApp(), Clock(), []
    check = recovery_watchdog(app, stall_after=10, max_restarts=2, clock=clock)
    with caplog.at_level(logging.CRITICAL, logger="triage.streams"):
        run_checks(check, clock, 35, app.tables.recovery, restarts)
    assert restarts == [11, 21]
    assert len(app.crashed) == 1 and isinstance(app.crashed[0], RecoveryStalled)
    assert "no progress through 2 restarts" in str(app.crashed[0])
    assert "triage-intake-state-changelog[2]" in str(app.crashed[0])
    assert caplog.records[-1].levelno == logging.CRITICAL


def test_progress_after_a_restart_gives_the_next_stall_all_its_restarts() -> None:
    watch = StallWatch(stall_after=10, max_restarts=1)
    assert watch.observe(0, True, "a") is Action.WAIT
    assert watch.observe(10, True, "a") is Action.RESTART
    assert watch.observe(12, True, "b") is Action.WAIT  # the restart helped
    assert watch.observe(22, True, "b") is Action.RESTART  # a new stall: restarted again
    assert watch.observe(32, True, "b") is Action.GIVE_UP
    # a recovery that ends forgets it all; the next one starts afresh
    assert watch.observe(33, False, None) is Action.WAIT
    assert watch.observe(34, True, "c") is Action.WAIT
    assert watch.observe(44, True, "c") is Action.RESTART


def test_no_recovery_running_means_nothing_to_do() -> None:
    app, clock, restarts = FakeApp(), Clock(), []
    app.tables.recovery.in_recovery = False
    run_checks(recovery_watchdog(app, stall_after=5, clock=clock), clock, 60,
               app.tables.recovery, restarts)
    assert restarts == [] and app.crashed == []


def test_faust_recovery_offers_what_the_watchdog_reads() -> None:
    """Guards the faust version in use: the attributes read, and the restart signal being
    the one the recovery loop waits on."""
    app = build_app(Settings())
    recovery = app.tables.recovery
    assert recovery.in_recovery is False
    assert progress_of(recovery) == ((), ())
    assert recovery.active_remaining() == Counter()
    assert recovery.active_tps == set()
    assert asyncio.iscoroutinefunction(app.consumer.highwaters)  # the broker probe
    restart(app)
    assert recovery.signal_recovery_start.is_set()
    # and with nothing recovering the watchdog is quiet on the real object
    clock = Clock()
    run_checks(recovery_watchdog(app, stall_after=1, clock=clock), clock, 5)


def test_the_worker_counts_restarts_in_a_metric() -> None:
    from prometheus_client import CollectorRegistry, generate_latest

    registry = CollectorRegistry()
    metrics = TriageMetrics.create(registry)
    app, clock = FakeApp(), Clock()
    check = recovery_watchdog(app, stall_after=5, clock=clock,
                              on_restart=metrics.recovery_restarts.inc)
    run_checks(check, clock, 14, app.tables.recovery)
    assert b"triage_recovery_restarts_total 2.0" in generate_latest(registry)


def test_the_watchdog_keeps_checking_through_errors_until_told_to_stop(
        caplog: pytest.LogCaptureFixture) -> None:
    calls: list[int] = []

    async def check() -> None:
        calls.append(1)
        if len(calls) == 2:
            raise RuntimeError("faust changed under us")

    async def go() -> None:
        with caplog.at_level(logging.ERROR, logger="triage.streams"):
            await keep_watching(check, interval=0.001, stop=lambda: len(calls) >= 5)

    asyncio.run(go())
    assert len(calls) == 5
    assert "recovery watchdog check failed" in caplog.text


def test_a_worker_starts_its_watchdog_with_its_first_assignment_once(
        caplog: pytest.LogCaptureFixture) -> None:
    """faust starts timers only after the first table recovery; the watchdog must already
    run during that one, so it starts when partitions are first assigned."""
    from triage.core.incidents import IncidentEngine
    from triage.core.pipeline import Pipeline
    from triage.streams.worker import build_streams

    streams = build_streams(Settings(), pipeline=Pipeline(), engine=IncidentEngine(),
                            partitions={"raw": 2, "keyed": 2}, recovery_stall_after=7)
    app = streams.app

    async def go() -> list[asyncio.Task[Any]]:
        before = asyncio.all_tasks()
        with caplog.at_level(logging.INFO, logger="triage.streams"):
            await app.on_partitions_assigned.send(set())
            await app.on_partitions_assigned.send(set())  # a second rebalance
        started = [t for t in asyncio.all_tasks() - before if not t.done()]
        await app.on_before_shutdown.send()  # the worker stopping cancels it
        await asyncio.sleep(0)
        return started

    started = asyncio.run(go())
    assert len(started) == 1 and started[0].done()
    assert caplog.text.count("recovery watchdog on: a table recovery with no progress "
                             "for 7s is restarted") == 1


def test_a_recovery_waiting_on_a_broker_that_is_away_is_not_restarted(
        caplog: pytest.LogCaptureFixture) -> None:
    """A broker outage during a recovery must not make the worker give up: it waits, and
    the watchdog counts again once the broker answers."""
    app, clock, restarts = FakeApp(), Clock(), []
    app.consumer.answers = False
    check = recovery_watchdog(app, stall_after=10, max_restarts=1, clock=clock)
    with caplog.at_level(logging.INFO, logger="triage.streams"):
        run_checks(check, clock, 100, app.tables.recovery, restarts)
    assert restarts == [] and app.crashed == []
    assert app.consumer.asked[0] == [STUCK]  # only the partition still to read is asked
    assert "the broker does not answer: waiting for it, not restarting" in caplog.text
    app.consumer.answers = True  # back: a stall from now on is faust's
    run_checks(check, clock, 8, app.tables.recovery, restarts)
    assert restarts == [101]  # 10 s after the last time it was put down to the broker (91)

