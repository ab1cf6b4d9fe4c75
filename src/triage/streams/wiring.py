"""The two stages wired into a faust app: topics, tables, agents, the idle timer, the change
feed, metrics and the rebalance signals (``wire``). What each part does is in
``triage.streams.agents`` (the runner, acks, the state table) and ``triage.streams.stages``
(the stages); this module only connects them, one concern per method of ``Wiring``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from faust.types import TP
from kafka.partitioner.default import murmur2

from triage.app.settings import Settings
from triage.metrics import TriageMetrics
from triage.streams.agents import (
    BATCH_MAX,
    BATCH_WITHIN,
    INCIDENT_STATE,
    INTAKE_STATE,
    TICK_INTERVAL,
    Acks,
    DirectReader,
    Sender,
    Stage,
    StageRunner,
    Streams,
    consumer_lag,
    run_change_feed,
    set_state_sizes,
    state_table,
)
from triage.streams.batches import BatchBuffer, batching_consumer, take_batches
from triage.streams.stages import IDLE_AFTER, IncidentStage, IntakeStage, key_partitioner
from triage.streams.watchdog import STALL_AFTER, keep_watching, recovery_watchdog

log = logging.getLogger("triage.streams")


def wire(
    app: faust.App,
    settings: Settings,
    *,
    intake: IntakeStage,
    incidents: IncidentStage,
    partitions: dict[str, int] | None = None,
    batch_max: int = BATCH_MAX,
    batch_within: float = BATCH_WITHIN,
    change_feed: bool = True,
    send: Sender | None = None,
    idle_after: float = IDLE_AFTER,
    metrics: TriageMetrics | None = None,
    recovery_stall_after: float = STALL_AFTER,
) -> Streams:
    """Add topics, tables, agents, the idle timer and the change feed to ``app``.

    ``partitions`` holds the real partition counts of the ``raw`` and ``keyed`` topics (the
    tables must match them); ``send`` replaces the Kafka producer (wiring tests: no
    consumer, every partition is this worker's, faust's own streams feed the agents);
    ``idle_after`` is the wall time without input after which a partition's clock moves;
    ``metrics``, when given, is fed by the agents and the timer; ``recovery_stall_after``
    is how long faust's table recovery may make no progress before the worker restarts it
    (0: never; see ``triage.streams.watchdog``).
    """
    w = Wiring(app, settings, intake=intake, incidents=incidents, partitions=partitions or {},
               send=send, metrics=metrics)
    w.topics_and_tables()
    w.observe()
    w.runners(idle_after)
    w.agents(batch_max, batch_within)
    w.timer(change_feed)
    if send is None:
        w.signals(recovery_stall_after)
    return Streams(app, w.intake_runner, w.incident_runner, w.intake_agent, w.incident_agent,
                   w.names)


class Wiring:
    """The parts ``wire`` builds, and the callbacks that join them."""

    def __init__(self, app: faust.App, settings: Settings, *, intake: IntakeStage,
                 incidents: IncidentStage, partitions: dict[str, int], send: Sender | None,
                 metrics: TriageMetrics | None) -> None:
        self.app, self.settings = app, settings
        self.intake, self.incidents = intake, incidents
        self.parts = partitions
        self.test_send = send  # wiring tests: no broker
        self.metrics = metrics
        self.names = dict(settings.kafka.topics)
        self.readers: list[DirectReader] = []
        self.watchdog: list[asyncio.Future[None]] = []
        self.feed_task: list[asyncio.Future[None]] = []
        self.buffers: dict[str, BatchBuffer] = {}
        # False from a rebalance until its table recovery really completes (``on_complete``)
        self.recovered = send is not None
        self.after_intake: Callable[[], None] | None = None
        self.after_incidents: Callable[[], None] | None = None
        self.gauges: Callable[[], Awaitable[None]] | None = None
        self._late_seen = 0

    # -- topics, tables, the sender ------------------------------------------------------

    def topic(self, logical: str) -> faust.TopicT:
        return self.app.topic(self.names[logical], key_type=bytes, value_type=bytes,
                              key_serializer="raw", value_serializer="raw",
                              partitions=self.parts.get(logical))

    def topics_and_tables(self) -> None:
        app, intake, incidents, parts = self.app, self.intake, self.incidents, self.parts
        self.raw, self.keyed = self.topic("raw"), self.topic("keyed")
        # stage 1 sends its clock to every stage-2 partition
        intake.keyed_partitions = parts.get("keyed") or app.conf.topic_partitions
        # stage 1 triages on each partition only the alerts whose fingerprint maps to it
        # (the producer's default partitioner on the fingerprint key), forwards the others
        raw_count = parts.get("raw") or app.conf.topic_partitions
        intake.raw_partitions = raw_count
        intake.partition_of = key_partitioner(murmur2, raw_count)
        intake.hear(incidents)  # stage 1 follows the clocks stage 2 hears
        out_topics = {name: self.topic(name)
                      for name in ("keyed", "incidents", "deadletter", "changes")}
        # bytes in, bytes out: the app's default serializers are raw
        opts: dict[str, Any] = {"key_type": bytes, "value_type": bytes}
        self.intake_table = state_table(app, INTAKE_STATE, partitions=parts.get("raw"),
                                        help="stage-1 state per alerts.raw partition", **opts)
        self.incident_table = state_table(app, INCIDENT_STATE, partitions=parts.get("keyed"),
                                          help="stage-2 state per alerts.keyed partition",
                                          **opts)
        self.state_tables = {INTAKE_STATE: self.intake_table,
                             INCIDENT_STATE: self.incident_table}
        self.real = {logical: t.get_topic_name() for logical, t in out_topics.items()}
        self.real["raw"] = self.raw.get_topic_name()  # forwarded alerts, silence copies
        self.real[INTAKE_STATE] = self.intake_table.changelog_topic.get_topic_name()
        self.real[INCIDENT_STATE] = self.incident_table.changelog_topic.get_topic_name()

    async def kafka_send(self, logical: str, key: bytes | None, value: bytes | None,
                         partition: int | None) -> Awaitable[Any]:
        # The app's producer itself: sent now (not when the input offset is committed,
        # faust's default inside an agent), so the ack can be awaited before state is
        # written; and without faust's per-record channel machinery.
        fut = await self.app.producer.send(self.real[logical], key, value, partition, None,
                                           None)
        table = self.state_tables.get(logical)
        if table is not None and isinstance(fut, asyncio.Future):
            fut.add_done_callback(table.note_ack)  # kept partitions need no re-reading
        return fut

    def owned(self, topic_name: str) -> Callable[[], set[int]] | None:
        if self.test_send is not None:
            return None  # wiring tests: no consumer, every partition is ours

        def partitions_owned() -> set[int]:
            return {tp.partition for tp in self.app.consumer.assignment()
                    if tp.topic == topic_name}

        return partitions_owned

    # -- metrics -------------------------------------------------------------------------

    def observe(self) -> None:
        """Feed ``metrics`` from the stages' observations, after each batch and tick."""
        metrics = self.metrics
        if metrics is None:
            return
        intake, incidents = self.intake, self.incidents
        intake.observe = incidents.observe = True
        scorer = intake.template.noise_scorer  # one, shared by every partition's pipeline
        if scorer is not None and hasattr(scorer, "on_failure"):
            scorer.on_failure = metrics.noise_model_failed  # a model that cannot be used
        version = getattr(scorer, "version", None)
        metrics.set_model_version(version if isinstance(version, str) else None)

        def after_intake() -> None:
            seen = intake.take_observations()
            metrics.observe(seen.outcomes)
            if seen.swept:
                metrics.swept.inc(seen.swept)
            for secs in seen.seconds:
                metrics.observe_seconds("intake", secs)

        def after_incidents() -> None:
            late = incidents.counts()["late_records"]
            if late > self._late_seen:
                metrics.late_records.inc(late - self._late_seen)
            self._late_seen = late
            seen = incidents.take_observations()
            metrics.observe_events(seen.events)
            for secs in seen.seconds:
                metrics.observe_seconds("incidents", secs)

        topics: dict[str, Stage] = {self.names["raw"]: intake, self.names["keyed"]: incidents}

        async def gauges() -> None:
            set_state_sizes(metrics, intake, incidents)
            if self.test_send is None:
                for name, lag in consumer_lag(self.app, topics).items():
                    metrics.set_consumer_lag(name, lag)

        self.after_intake, self.after_incidents, self.gauges = after_intake, after_incidents, gauges

    # -- the runners ---------------------------------------------------------------------

    def reader(self, logical: str) -> DirectReader | None:
        held = self.owned(self.names[logical])
        if held is None:
            return None  # wiring tests: no broker to read from
        self.readers.append(DirectReader(self.settings, self.names[logical],
                                         lambda partition: partition in held()))
        return self.readers[-1]

    def refetch_counter(self, stage: str) -> Callable[[int], None] | None:
        return None if self.metrics is None else self.metrics.refetched.labels(stage).inc

    def restorable(self) -> bool:
        return self.recovered

    def caught_up(self, topic_name: str, stage: Stage) -> Callable[[int], bool] | None:
        """Whether a partition's consumer has read up to its end (None: wiring tests)."""
        if self.test_send is not None:
            return None
        app, idle_timeout = self.app, self.incidents.idle_timeout

        def read_to_the_end(partition: int) -> bool:
            part = stage.parts.get(partition)
            if part is None:
                return False
            high = None
            # (not through ``assignment()``: faust builds a set of every partition for each
            # call, which cost a 6-partition worker 45 us per message when stage 1 asked)
            with contextlib.suppress(Exception):  # not assigned, or not fetched yet
                high = app.consumer.highwater(TP(topic_name, partition))
            if high is None:  # never fetched: taken as caught up once long without input
                return bool(time.monotonic() - part.last_input >= idle_timeout)
            return bool(part.offset + 1 >= int(high))

        return read_to_the_end

    def runner(self, name: str, logical: str, stage: Stage, table: Any, changelog: str,
               idle_after: float, after: Callable[[], None] | None) -> StageRunner:
        topic_name = self.names[logical]
        return StageRunner(
            name=name, stage=stage, data=table.data, changelog=changelog,
            send=self.test_send or self.kafka_send, assigned=self.owned(topic_name),
            idle_after=idle_after, after=after, fetch=self.reader(logical),
            on_refetch=self.refetch_counter(name),
            restorable=None if self.test_send is not None else self.restorable,
            caught_up=self.caught_up(topic_name, stage))

    def runners(self, idle_after: float) -> None:
        self.intake_runner = self.runner("intake", "raw", self.intake, self.intake_table,
                                         INTAKE_STATE, idle_after, self.after_intake)
        # the last message of a backlog waits for other workers' partitions still behind
        self.intake.caught_up = self.intake_runner.caught_up
        self.incident_runner = self.runner("incidents", "keyed", self.incidents,
                                           self.incident_table, INCIDENT_STATE, idle_after,
                                           self.after_incidents)
        self.acks = {"intake": Acks(self.intake), "incidents": Acks(self.incidents)}

    # -- the agents and the timer --------------------------------------------------------

    def agents(self, batch_max: int, batch_within: float) -> None:
        """One agent per stage. With a broker, the hot path (triage.streams.batches): the
        consumer hands each fetch of the two topics to a buffer, and the agents take
        batches from it instead of from their streams."""
        app = self.app
        if self.test_send is None:
            self.buffers = {self.raw.get_topic_name(): BatchBuffer(),
                            self.keyed.get_topic_name(): BatchBuffer()}
            app.transport.Consumer = batching_consumer(self.buffers)  # type: ignore[misc]

        def agent_of(runner: StageRunner, topic: faust.TopicT) -> Callable[[Any], Any]:
            async def agent(stream: Any) -> None:  # a faust.Stream
                buffer = self.buffers.get(topic.get_topic_name())
                if buffer is not None:
                    await self.run_batches(runner, buffer, batch_max)
                    return
                async for events in stream.take_events(batch_max, within=batch_within):
                    await runner.handle([(e.message.partition, e.message.offset, e.value)
                                         for e in events])
            return agent

        self.intake_agent = app.agent(self.raw, name="triage.intake", concurrency=1)(
            agent_of(self.intake_runner, self.raw))
        self.incident_agent = app.agent(self.keyed, name="triage.incidents", concurrency=1)(
            agent_of(self.incident_runner, self.keyed))

    async def run_batches(self, runner: StageRunner, buffer: BatchBuffer, limit: int) -> None:
        consumer = self.app.consumer
        async for live, taken in take_batches(self.app, buffer, limit):
            if live:
                await runner.handle([(m.partition, m.offset, m.value) for m in live])
            self.acks[runner.name].ack(consumer, taken)

    def timer(self, change_feed: bool) -> None:
        app, settings, incidents = self.app, self.settings, self.incidents

        async def tick() -> None:
            if change_feed and (not self.feed_task or self.feed_task[0].done()):
                # Supervised from the timer rather than an ``app.task`` (which faust
                # cancels after start-up): restarted here if it ever ends.
                self.feed_task[:] = [asyncio.ensure_future(
                    run_change_feed(settings, incidents, stop=lambda: app.should_stop))]
            await self.intake_runner.tick()
            await self.incident_runner.tick()
            if self.buffers:
                for held in self.acks.values():
                    held.release(app.consumer)
            if self.gauges is not None:
                try:
                    await self.gauges()
                except Exception:  # metrics must never stop the clock
                    log.exception("metrics update failed")

        app.timer(TICK_INTERVAL, name="triage.tick")(tick)

    # -- rebalances ----------------------------------------------------------------------

    def signals(self, stall_after: float) -> None:
        """The rebalance signals, and the recovery watchdog: a task of its own, started
        with the first assignment (faust starts timers only once the first table recovery
        is complete, and that recovery, a restarted or joining worker's, is watched too)."""
        app, metrics = self.app, self.metrics

        async def start_watchdog(sender: Any, assigned: Any = None, **_: Any) -> None:
            self.recovered = False  # as in on_revoked: a recovery of what was assigned
            if self.watchdog or stall_after <= 0:
                return
            check = recovery_watchdog(
                app, stall_after=stall_after, clock=time.monotonic,
                on_restart=None if metrics is None else metrics.recovery_restarts.inc)
            self.watchdog.append(asyncio.ensure_future(keep_watching(
                check, interval=TICK_INTERVAL, stop=lambda: app.should_stop)))
            log.info("recovery watchdog on: a table recovery with no progress for %.0fs is "
                     "restarted", stall_after)

        app.on_partitions_assigned.connect(start_watchdog)  # type: ignore[arg-type]
        app.on_partitions_revoked.connect(self.on_revoked)  # type: ignore[arg-type]
        app.on_rebalance_complete.connect(self.on_complete)  # type: ignore[arg-type]
        app.on_before_shutdown.connect(self.close_readers)  # type: ignore[arg-type]

    def _of(self, logical: str, tps: Any) -> list[int]:
        return [tp.partition for tp in tps if tp.topic == self.names[logical]]

    async def on_revoked(self, sender: Any, revoked: set[Any], **_: Any) -> None:
        self.recovered = False  # a rebalance: the table recovery it starts is to come
        await self.intake_runner.revoke(self._of("raw", revoked))
        await self.incident_runner.revoke(self._of("keyed", revoked))
        self.acks["intake"].drop(self._of("raw", revoked))
        self.acks["incidents"].drop(self._of("keyed", revoked))

    async def on_complete(self, sender: Any, **_: Any) -> None:
        # Sent when table recovery has finished, before the streams resume. Not always:
        # faust-streaming swallows the RebalanceAgain of a recovery restarted while it
        # waits for the actives (its ``except Exception`` around ``signal_recovery_end``),
        # says "Restore complete" with the changelogs unread, and runs the recovery again.
        # Restored then, a partition would start from an empty state (its incidents lost):
        # seen in CI after the watchdog restarted a stalled recovery. So the stages restore
        # (and process new partitions) only after a completion no restart is pending on.
        recovery: Any = getattr(self.app.tables, "recovery")  # noqa: B009 (not in faust's types)
        self.recovered = not recovery.signal_recovery_start.is_set()
        if not self.recovered:
            log.warning("faust reported the table recovery complete while it is starting "
                        "again; the stages wait for the next completion")
        assignment = self.app.consumer.assignment()
        await self.intake_runner.assign(self._of("raw", assignment))
        await self.incident_runner.assign(self._of("keyed", assignment))

    async def close_readers(self, sender: Any, **_: Any) -> None:
        for task in self.watchdog:
            task.cancel()
        for r in self.readers:
            await r.close()
