"""Both stages over several partitions in process, no broker: ``alerts.raw`` and
``alerts.keyed`` as lists per partition, placed as Kafka's default partitioner places keyed
messages, and the partitions read in an order the caller (or a random generator) chooses,
as consumers on a busy broker read them. What the embedded runtime gives for the same lines
is ``embedded``."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from aiokafka.partitioner import DefaultPartitioner
from kafka.partitioner.default import murmur2

from triage.app.bootstrap import build_engine, build_pipeline
from triage.app.settings import load_settings
from triage.streams.keys import partition_key

try:
    from triage.streams.keys import split_payload
except ImportError:  # the code before issue 12 (benchmarks/bench_partitions.py --src)
    split_payload = None  # type: ignore[assignment]
from triage.streams.stages import (
    IncidentStage,
    IntakeStage,
    Output,
    domain_mapper,
    key_partitioner,
)


def services_yaml(groups: int = 5) -> dict[str, Any]:
    """``svc00``..: trees of 6 services (0 calls 1 and 2; 1 calls 3 and 4; 2 calls 5), so
    correlation across services and root causes matter."""
    calls = {0: (1, 2), 1: (3, 4), 2: (5,)}
    services: dict[str, Any] = {}
    for g in range(groups):
        for i in range(6):
            deps = [f"svc{g * 6 + j:02d}" for j in calls.get(i, ())]
            services[f"svc{g * 6 + i:02d}"] = {"depends_on": deps} if deps else {}
    return {"services": services}


def kafka_partition(key: bytes, partitions: int) -> int:
    return int(DefaultPartitioner()(key, list(range(partitions)), list(range(partitions))))


def embedded(config: Path, lines: list[bytes]) -> list[dict[str, Any]]:
    """What ``triage run`` emits for ``lines``, one line at a time at event time (without
    the end-of-input flush: a stream has no end; the storms end with a sentinel)."""
    settings = load_settings(config)
    pipeline, engine = build_pipeline(settings), build_engine(settings)
    events: list[dict[str, Any]] = []
    for line in lines:
        results = pipeline.process(line)
        events += engine.observe(results, pipeline.watermark)
    return [orjson.loads(orjson.dumps(e)) for e in events]


class Streams:
    """The two stages on ``raw`` raw partitions and ``keyed`` keyed partitions.

    ``legacy``: keyed records lose their upstream marker, as a stage 1 before issue 12
    sent them (stage 2's clock then follows the fastest upstream): the before figure.
    ``hand_over``: False forwards every alert of another partition through ``raw``, as
    between workers (``IntakeStage``; None: the stage's default). ``workers``: the
    partitions of both topics spread over that many workers (partition p is worker
    p % workers's), each with its own two stages, as separate processes would be."""

    def __init__(self, config: Path, raw: int, keyed: int, *, legacy: bool = False,
                 idle_timeout: float = 30.0, hand_over: bool | None = None,
                 workers: int = 1) -> None:
        settings = load_settings(config)
        self.raw_n, self.keyed_n, self.legacy, self.workers = raw, keyed, legacy, workers
        options: dict[str, Any] = {} if hand_over is None else {"hand_over": hand_over}
        # one worker's two stages each; partition p of either topic is worker p % workers's
        self.intakes: list[IntakeStage] = []
        self.incident_stages: list[IncidentStage] = []
        for _ in range(workers):
            engine = build_engine(settings)
            intake = IntakeStage(build_pipeline(settings), domain_of=domain_mapper(engine),
                                 keyed_partitions=keyed, raw_partitions=raw,
                                 partition_of=key_partitioner(murmur2, raw), **options)
            try:
                incidents = IncidentStage(engine, idle_timeout=idle_timeout)
            except TypeError:  # the code before issue 12 (bench_partitions.py --src)
                incidents = IncidentStage(engine)
            if hasattr(intake, "hear"):  # not before issue 12
                intake.hear(incidents)
            # where the worker's consumer stands: read to the end of the partition or not
            intake.caught_up = lambda p: self.raw_next[p] == len(self.raw[p])
            self.intakes.append(intake)
            self.incident_stages.append(incidents)
        self.intake, self.incidents = self.intakes[0], self.incident_stages[0]
        self.wall = 0.0
        for p in range(raw):
            self.intakes[p % workers].restore(p, [], self.wall)
        for q in range(keyed):
            self.incident_stages[q % workers].restore(q, [], self.wall)
        self.raw: list[list[bytes]] = [[] for _ in range(raw)]
        self.keyed: list[list[bytes]] = [[] for _ in range(keyed)]
        self.raw_next = [0] * raw
        self.keyed_next = [0] * keyed
        self.events: list[dict[str, Any]] = []
        self.dead: list[dict[str, Any]] = []
        # each stage's table, as the worker writes it after every batch and tick
        self.tables: dict[str, dict[bytes, bytes]] = {"raw": {}, "keyed": {}}
        self.peak = 0  # the most messages waiting at once (``waiting``)

    def produce(self, lines: list[bytes], rng: random.Random, *, keyed: bool = False) -> None:
        """Unkeyed, as kcat or a load balancer spreads them: a random partition each; or
        ``keyed`` by the fingerprint of the line's alert, as ``triage serve`` publishes them
        (``triage.streams.keys``)."""
        reader = self.intake.new_pipeline() if keyed else None
        for line in lines:
            if reader is None:
                self.raw[rng.randrange(self.raw_n)].append(line)
                continue
            if split_payload is None:  # before issue 12: keyed by the first alert
                key = partition_key(orjson.loads(line), reader.fingerprinter)
                self.raw[kafka_partition(key, self.raw_n) if key else 0].append(line)
                continue
            for key, value in split_payload(line, reader):
                part = (kafka_partition(key, self.raw_n) if key is not None
                        else rng.randrange(self.raw_n))
                self.raw[part].append(value)

    def place(self, out: list[Output]) -> None:
        for o in out:
            if o.topic == "raw":
                p = o.partition if o.partition is not None else kafka_partition(
                    o.key or b"", self.raw_n)
                self.raw[p].append(o.value)
            elif o.topic == "keyed":
                value = o.value
                if self.legacy:
                    rec = orjson.loads(value)
                    rec.pop("up", None)
                    value = orjson.dumps(rec)
                q = o.partition if o.partition is not None else kafka_partition(
                    o.key or b"", self.keyed_n)
                self.keyed[q].append(value)
            elif o.topic == "incidents":
                self.events.append(orjson.loads(o.value))
            elif o.topic == "deadletter":
                self.dead.append(orjson.loads(o.value))

    def pending(self) -> list[tuple[str, int]]:
        return ([("raw", p) for p in range(self.raw_n) if self.raw_next[p] < len(self.raw[p])]
                + [("keyed", q) for q in range(self.keyed_n)
                   if self.keyed_next[q] < len(self.keyed[q])])

    def step(self, topic: str, partition: int, count: int) -> None:
        """Read up to ``count`` messages of one partition, as one consumer batch."""
        log, nxt = ((self.raw, self.raw_next) if topic == "raw"
                    else (self.keyed, self.keyed_next))
        start = nxt[partition]
        batch = [(i, log[partition][i]) for i in range(start, min(start + count,
                                                               len(log[partition])))]
        nxt[partition] = start + len(batch)
        stage = self.stage(topic, partition)
        self.place(stage.process_many(partition, batch, self.wall))
        self.persist(topic, partition)
        for other in getattr(stage, "take_released", set)():  # let through by its time
            self.persist(topic, other)
        self.peak = max(self.peak, self.waiting())

    def waiting(self) -> int:
        """Messages held by either stage for the others' time, now."""
        queued = sum(len(getattr(part, "queue", ())) for intake in self.intakes
                     for part in intake.parts.values())
        held = sum(h() for h in (getattr(i, "held", None) for i in self.incident_stages)
                   if h is not None)
        return queued + held

    def stage(self, topic: str, partition: int = 0) -> IntakeStage | IncidentStage:
        """The stage of the worker that owns ``partition`` of ``topic``."""
        stages = self.intakes if topic == "raw" else self.incident_stages
        return stages[partition % self.workers]

    def counts(self, topic: str) -> Counter[str]:
        """A stage's counts, summed over the workers."""
        total: Counter[str] = Counter()
        for stage in (self.intakes if topic == "raw" else self.incident_stages):
            total.update(stage.counts())
        return total

    def persist(self, topic: str, partition: int) -> None:
        table = self.tables[topic]
        for key, value in self.stage(topic, partition).take_state(partition):
            if value is None:
                table.pop(key, None)
            else:
                table[key] = value

    def restart(self, topic: str, partition: int) -> int:
        """A crash of the partition's worker: rebuilt from its table, and read again from
        the offset after the one its state names (what the worker acknowledged); returns
        how many records are read again."""
        stage = self.stage(topic, partition)
        prefix = b"%d|" % partition
        items = [(k, v) for k, v in self.tables[topic].items() if k.startswith(prefix)]
        stage.drop(partition)
        part = stage.restore(partition, items, self.wall)
        nxt = self.raw_next if topic == "raw" else self.keyed_next
        again = nxt[partition] - (part.offset + 1)
        nxt[partition] = part.offset + 1
        return again

    def tick(self, idle_after: float = 600.0) -> bool:
        """The worker's 1 s timer on every partition; True if it sent anything."""
        sent = False
        for p in range(self.raw_n):
            out = _tick(self.stage("raw", p), p, self.wall, idle_after,
                        self.raw_next[p] == len(self.raw[p]))
            if out:
                sent = True
                self.place(out)
            self.persist("raw", p)
        for q in range(self.keyed_n):
            out = _tick(self.stage("keyed", q), q, self.wall, idle_after,
                        self.keyed_next[q] == len(self.keyed[q]))
            if out:
                sent = True
                self.place(out)
            self.persist("keyed", q)
        return sent

    def run(self, rng: random.Random, *, skew: float = 3.0, max_batch: int = 200,
            wall_step: float = 0.02, choose: Callable[[list[tuple[str, int]]],
                                                      tuple[str, int]] | None = None) -> None:
        """Read every partition to its end in a random order: partitions get random
        weights (up to ``skew`` times another's), batches random sizes, and the wall clock
        moves ``wall_step`` a batch with the 1 s timer firing as it passes; then the timer
        alone until nothing more is sent (every stage idle)."""
        weights = {("raw", p): rng.uniform(1.0, skew) for p in range(self.raw_n)}
        weights |= {("keyed", q): rng.uniform(1.0, skew) for q in range(self.keyed_n)}
        next_tick = 1.0
        while True:
            pending = self.pending()
            if not pending:
                self.wall += 1.0
                if not self.tick() and not self.pending():
                    self.wall += 1.0
                    if not self.tick() and not self.pending():
                        return
                continue
            if choose is not None:
                topic, partition = choose(pending)
            else:
                topic, partition = rng.choices(pending, [weights[x] for x in pending])[0]
            self.step(topic, partition, rng.randint(1, max_batch))
            self.wall += wall_step
            if self.wall >= next_tick:
                next_tick = self.wall + 1.0
                self.tick()


def _tick(stage: Any, partition: int, wall: float, idle_after: float, caught_up: bool) -> Any:
    try:
        return stage.tick_idle(partition, wall, idle_after, caught_up)
    except TypeError:  # the code before issue 12: no caught_up
        return stage.tick_idle(partition, wall, idle_after)


def outcome(events: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """What the issue compares: each created incident, with its root cause and priority
    (at creation and at the end), its final services and fingerprints."""
    out: dict[str, tuple[Any, ...]] = {}
    created: dict[str, dict[str, Any]] = {}
    last: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: (e["incident"]["id"], e["incident"]["sequence"])):
        inc = e["incident"]
        if e["type"] == "incident.created":
            created[inc["id"]] = inc
        last[inc["id"]] = inc
    for inc_id, first in created.items():
        inc = last[inc_id]
        out[inc_id] = ((first.get("root_cause") or {}).get("service"), first["priority"],
                       (inc.get("root_cause") or {}).get("service"), inc["priority"],
                       tuple(sorted(inc["services"])), tuple(sorted(inc["fingerprints"])))
    return out
