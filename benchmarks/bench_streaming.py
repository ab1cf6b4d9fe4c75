"""Streaming benchmark: ``triage worker`` on a real Kafka broker against a plain consumer.

    python benchmarks/bench_streaming.py [--alerts 60000] [--rate 2000] [--seconds 15]
                                         [--repeats 3] [--json out.json]

Starts a local broker (``deploy/kafka/kafka-local``, free ports, a temporary data dir) and
stops it at the end. Each part uses topics and a consumer group of its own.

a. **Ceiling**: a plain aiokafka consumer reads the N alert messages of a pre-produced
   topic as fast as it can (no decoding): alerts/s from its first record to its last.
a2. **faust ceiling**: a faust agent built like the worker's (same app settings, same
   ``take_events`` batches) that does nothing with its batches (``faust_noop.py``): what
   faust itself can feed one agent. The worker runs two such agents (stage 2 reads what
   stage 1 wrote), so it cannot beat this.
b. **One worker**, pre-produced backlog of the same N messages (1 partition): alerts/s from
   the worker's first output (an ``alerts.keyed`` record, one batch after its first
   consume) to its last output (``alerts.keyed`` or ``incidents``), both taken from the
   records' timestamps (the worker's clock). The input is a storm: each alert repeats every
   30 s of event time through its episode, so most messages are dedup hits, as in
   production; it ends with alerts an hour later in event time, so every page is decided.
c. **Latency at a fixed offered load**: a paced producer sends ``--rate`` alerts/s for
   ``--seconds`` s (event time = wall time; 10% of the messages are new alerts, the rest
   repeat a pool of firing ones) to a warm worker. Measured to the ``alerts.keyed`` record
   (incident events do not map one-to-one to input messages): a consumer on
   ``alerts.keyed`` takes each record's receipt time minus the produce timestamp of the
   input message it names (``src``: partition, offset). Only new alerts produce such a
   record; repeats are deduplicated and produce nothing to time.
d. **Scale-out**: the backlog of (b) on 2 partitions, keyed by fingerprint, through one
   worker and then through two (started first, joined, then the backlog produced).
e. **Unkeyed**: the backlog of (b) on 6 partitions, produced unkeyed (as kcat sends a file:
   each partition hands the alerts it does not own over to their owners, or forwards them),
   through one worker.

Medians over ``--repeats`` for (a), (b), (d), (e); ratios within one run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from kafka import KafkaAdminClient
from kafka.errors import CoordinatorNotAvailableError

from machine import describe
from triage.app.settings import KafkaSettings
from triage.streams.topics import consume_records, create_topics, delete_topics

REPO = Path(__file__).resolve().parents[1]
KAFKA_LOCAL = REPO / "deploy" / "kafka" / "kafka-local"
TRIAGE = str(Path(sys.executable).with_name("triage"))
T0 = 1_790_000_000.0  # in the past: later than now + 5 min is clamped (intake.max_future_skew)
SENTINEL = "zz-sentinel"
CONFIG: dict[str, Any] = {
    "dedup": {"resolve_timeout": "60s", "retention": "10m"},
    "correlation": {"page_delay": "5s", "quiet_period": "60s", "window": "5m",
                    "update_interval": "10s"},
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- the broker ------------------------------------------------------------------------------


@dataclass
class Broker:
    port: int
    controller: int
    data: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def run(self, command: str) -> None:
        subprocess.run([str(KAFKA_LOCAL), command, "--port", str(self.port),
                        "--controller-port", str(self.controller), "--data-dir",
                        str(self.data)], check=True, capture_output=True, timeout=180)


def java_or_say_so() -> bool:
    if shutil.which("java") is None:
        print("java is not installed (Kafka needs Java 17)", file=sys.stderr)
        return False
    return True


@contextmanager
def local_broker(prefix: str) -> Iterator[tuple[Broker, Path]]:
    """A broker of the benchmark's own (free ports, a temporary data dir), stopped after."""
    with tempfile.TemporaryDirectory(prefix=prefix) as tmpdir:
        tmp = Path(tmpdir)
        broker = Broker(free_port(), free_port(), tmp / "kafka")
        broker.run("start")
        try:
            yield broker, tmp
        finally:
            broker.run("stop")


# -- workloads -------------------------------------------------------------------------------


def storm(n: int, services: int = 200) -> list[bytes]:
    """About ``n`` messages of one generic alert each: every 30 s of event time the services
    in an episode (8 of every 40 steps, phase by service) send two alerts; then 8 alerts an
    hour later (distinct fingerprints, so every partition gets input that ends the storm)."""
    lines: list[bytes] = []
    step = 0
    while len(lines) < n:
        t = T0 + 30 * step
        for s in range(services):
            if (step + 7 * s) % 40 < 8:
                for name, sev in (("HighLatency", "warning"), ("ErrorRate", "critical")):
                    lines.append(orjson.dumps({"alertname": name, "service": f"svc{s:03d}",
                                               "severity": sev, "at": t}))
        step += 1
    end = T0 + 30 * step + 3600
    lines.extend(orjson.dumps({"alertname": "Sentinel", "service": f"{SENTINEL}-{i}",
                               "at": end + i}) for i in range(8))
    return lines


def fingerprint_key(line: bytes) -> bytes:
    obj = orjson.loads(line)
    return f"{obj['alertname']}|{obj['service']}".encode()


# -- a test case: topics, config, workers ----------------------------------------------------


@dataclass
class Case:
    bootstrap: str
    tmp: Path
    partitions: int = 1
    workers: list[tuple[subprocess.Popen[bytes], int]] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.app_id = f"bench-{tag}"
        self.topics = {n: f"b{tag}.{n}" for n in ("raw", "keyed", "changes", "feedback",
                                                    "incidents", "deadletter")}
        self.kafka = KafkaSettings(bootstrap=self.bootstrap, app_id=self.app_id,
                                   partitions=self.partitions, topics=self.topics)
        self.config = self.tmp / f"{tag}.yaml"
        self.config.write_text(yaml.safe_dump({**CONFIG, "kafka": {
            "bootstrap": self.bootstrap, "app_id": self.app_id,
            "partitions": self.partitions, "topics": self.topics}}))
        create_topics(self.kafka)

    def start_worker(self) -> None:
        port = free_port()
        log = (self.tmp / f"{self.app_id}-{len(self.workers)}.log").open("wb")
        proc = subprocess.Popen([TRIAGE, "worker", "--config", str(self.config),
                                 "--log-level", "warning", "--metrics-port", str(port)],
                                stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp,
                                start_new_session=True)
        self.workers.append((proc, port))

    def received(self) -> float:
        """triage_alerts_received_total summed over the workers (0 while one is down)."""
        total = 0.0
        for proc, port in self.workers:
            if proc.poll() is not None:
                raise RuntimeError(f"worker exited with {proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics",
                                            timeout=2) as resp:
                    text = resp.read().decode()
            except OSError:
                continue
            total += sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                         if line.startswith("triage_alerts_received_total{"))
        return total

    def wait_received(self, n: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.received() < n:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.app_id}: workers did not take {n} alerts in "
                                   f"{timeout:.0f}s")
            time.sleep(0.2)

    def wait_members(self, n: int, timeout: float = 60) -> None:
        """Until the workers' consumer group is stable with ``n`` members."""
        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="bench")
        deadline = time.monotonic() + timeout
        try:
            while time.monotonic() < deadline:
                try:
                    group = admin.describe_groups([self.app_id]).get(self.app_id) or {}
                except CoordinatorNotAvailableError:  # a fresh broker: no offsets topic yet
                    time.sleep(0.3)
                    continue
                if group.get("group_state") == "Stable" and len(group.get("members", [])) == n:
                    return
                time.sleep(0.3)
        finally:
            admin.close()
        raise RuntimeError(f"{self.app_id}: group not stable with {n} members")

    def timestamps(self, logical: str, skip: str | None = None) -> list[int]:
        """Record timestamps of a topic (without records whose value contains ``skip``)."""
        return [r.timestamp_ms for r in consume_records(self.kafka, self.topics[logical],
                                                        timeout=1.0)
                if skip is None or skip.encode() not in (r.value or b"")]

    def close(self) -> None:
        for proc, _ in self.workers:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
        delete_topics(self.kafka, [*self.topics.values()])


async def produce(bootstrap: str, topic: str, lines: list[bytes], keyed: bool = False) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                max_batch_size=256 * 1024)
    await producer.start()
    try:
        futures = [await producer.send(topic, line, key=fingerprint_key(line) if keyed
                                       else None) for line in lines]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


# -- (a) the ceiling -------------------------------------------------------------------------


async def plain_consumer(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic)
                                                          or {0})]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        got, first = 0, time.perf_counter()
        while got < n:
            batch = await consumer.getmany(timeout_ms=1000, max_records=10_000)
            got += sum(len(v) for v in batch.values())
        return n / (time.perf_counter() - first)
    finally:
        await consumer.stop()


def faust_noop(bootstrap: str, topic: str, n: int) -> float:
    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("faust_noop.py")),
                           "--bootstrap", bootstrap, "--topic", topic, "--messages", str(n),
                           "--app-id", f"noop-{uuid.uuid4().hex[:8]}"],
                          capture_output=True, timeout=300, check=True)
    return float(orjson.loads(proc.stdout.splitlines()[-1])["rate"])


# -- (b), (d) throughput ---------------------------------------------------------------------


def worker_rate(case: Case, n: int) -> float:
    """alerts/s: first ``alerts.keyed`` output to the last output of any kind (but the
    sentinels' own incidents, which page on the wall clock after the page delay)."""
    case.wait_received(n, timeout=240)
    time.sleep(1.5)  # the last pages and their acks
    keyed, incidents = case.timestamps("keyed"), case.timestamps("incidents", SENTINEL)
    return n / ((max(keyed + incidents) - min(keyed)) / 1000)


def backlog_run(bootstrap: str, tmp: Path, lines: list[bytes], *, partitions: int,
                workers: int, pre_produced: bool, keyed: bool | None = None) -> float:
    """``keyed`` (default: with more than one partition) by fingerprint, else unkeyed, as
    kcat sends a file."""
    case = Case(bootstrap, tmp, partitions=partitions)
    keyed = partitions > 1 if keyed is None else keyed
    try:
        if pre_produced:
            asyncio.run(produce(bootstrap, case.topics["raw"], lines, keyed=keyed))
        for _ in range(workers):
            case.start_worker()
        if not pre_produced:
            case.wait_members(workers)
            asyncio.run(produce(bootstrap, case.topics["raw"], lines, keyed=keyed))
        return worker_rate(case, len(lines))
    finally:
        case.close()


# -- (c) latency -----------------------------------------------------------------------------


async def paced(case: Case, rate: int, seconds: float) -> dict[str, float]:
    raw, keyed = case.topics["raw"], case.topics["keyed"]
    producer = AIOKafkaProducer(bootstrap_servers=case.bootstrap, acks="all", linger_ms=1)
    consumer = AIOKafkaConsumer(bootstrap_servers=case.bootstrap, group_id=None,
                                enable_auto_commit=False, auto_offset_reset="latest")
    await producer.start()
    await consumer.start()
    sent_at: dict[tuple[int, int], float] = {}  # raw (partition, offset) -> produce time (ms)
    arrivals: list[tuple[tuple[int, int], float, int]] = []  # src, receipt ms, record ts
    stop = asyncio.Event()

    async def listen() -> None:
        consumer.assign([TopicPartition(keyed, 0)])
        await consumer.seek_to_end(TopicPartition(keyed, 0))
        while not stop.is_set():
            batch = await consumer.getmany(timeout_ms=100)
            now = time.time() * 1000
            for records in batch.values():
                for r in records:
                    rec = orjson.loads(r.value)
                    if rec.get("kind") == "alert" and rec.get("src"):
                        src = (int(rec["src"][0]), int(rec["src"][1]))
                        arrivals.append((src, now, r.timestamp))

    async def record(fut: asyncio.Future[Any]) -> None:
        meta = await fut
        sent_at[(meta.partition, meta.offset)] = meta.timestamp

    listener = asyncio.ensure_future(listen())
    await asyncio.sleep(1.0)
    pool = 2000
    tick = 0.01
    per_tick = max(1, int(rate * tick))

    def steady(i: int) -> dict[str, Any]:
        return {"alertname": "Steady", "service": f"svc{i % 200:03d}",
                "instance": f"p{i % pool}"}

    # warm-up: every alert of the pool fires once (each is new: a keyed record), untimed
    for i in range(0, pool, per_tick):
        for j in range(i, min(pool, i + per_tick)):
            await producer.send(raw, orjson.dumps({**steady(j), "at": time.time()}))
        await asyncio.sleep(tick)
    await producer.flush()
    await asyncio.sleep(3.0)
    total = int(rate * seconds)
    pending: list[asyncio.Future[Any]] = []
    started = time.perf_counter()
    i = new = 0
    while i < total:
        due = started + (i // per_tick) * tick
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        for _ in range(per_tick):
            if i % 10 == 0:  # a new alert: stage 1 passes it on, timed
                labels = {"alertname": "Fresh", "service": f"svc{new % 200:03d}",
                          "instance": f"i{new}"}
                new += 1
            else:  # a repeat of a firing alert: deduplicated, nothing to time
                labels = steady(i)
            fut = await producer.send(raw, orjson.dumps({**labels, "at": time.time()}))
            pending.append(asyncio.ensure_future(record(fut)))
            i += 1
    offered = total / (time.perf_counter() - started)
    await asyncio.gather(*pending)
    deadline = time.monotonic() + 30
    while (sum(1 for a in arrivals if a[0] in sent_at) < new
           and time.monotonic() < deadline):
        await asyncio.sleep(0.2)
    stop.set()
    await listener
    await consumer.stop()
    await producer.stop()
    # records of the warm-up are not in sent_at
    latencies = sorted(now - sent_at[src] for src, now, _ in arrivals if src in sent_at)
    by_ts = sorted(ts - sent_at[src] for src, _, ts in arrivals if src in sent_at)

    def q(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")

    return {"offered_per_s": offered, "messages": total, "timed": len(latencies),
            "expected": new, "p50_ms": q(latencies, 0.5), "p99_ms": q(latencies, 0.99),
            "max_ms": latencies[-1] if latencies else float("nan"),
            "p50_ms_output_timestamp": q(by_ts, 0.5), "p99_ms_output_timestamp": q(by_ts, 0.99)}


def latency_run(bootstrap: str, tmp: Path, rate: int, seconds: float) -> dict[str, float]:
    case = Case(bootstrap, tmp, partitions=1)
    try:
        case.start_worker()
        case.wait_members(1)
        warm = [orjson.dumps({"alertname": "Warm", "service": "svc000", "at": time.time()})]
        asyncio.run(produce(bootstrap, case.topics["raw"], warm))
        case.wait_received(1, timeout=60)
        return asyncio.run(paced(case, rate, seconds))
    finally:
        case.close()


# -- main ------------------------------------------------------------------------------------


def machine() -> str:
    return describe(memory=True)


def median(xs: list[float]) -> float:
    return statistics.median(xs)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, default=60_000)
    ap.add_argument("--rate", type=int, default=2000)
    ap.add_argument("--seconds", type=float, default=15.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    if not java_or_say_so():
        return 2
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {machine()}")
    began = time.monotonic()
    with local_broker("bench-streaming-") as (broker, tmp):
        results = run(broker.bootstrap, tmp, args)
    results["machine"] = machine()
    results["seconds_total"] = time.monotonic() - began
    report(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


def run(bootstrap: str, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    lines = storm(args.alerts)
    n = len(lines)
    print(f"storm: {n:,} messages, one alert each")
    # (a) and (b): one pre-produced topic read by the plain consumer, the same lines
    # pre-produced for each worker run
    ceiling_case = Case(bootstrap, tmp)
    try:
        asyncio.run(produce(bootstrap, ceiling_case.topics["raw"], lines))
        ceiling = [asyncio.run(plain_consumer(bootstrap, ceiling_case.topics["raw"], n))
                   for _ in range(args.repeats)]
        noop = [faust_noop(bootstrap, ceiling_case.topics["raw"], n)
                for _ in range(args.repeats)]
    finally:
        ceiling_case.close()
    print(f"(a) plain consumer: {median(ceiling):,.0f} alerts/s  {ceiling}")
    print(f"(a2) faust no-op agent: {median(noop):,.0f} alerts/s  {noop}")
    one = [backlog_run(bootstrap, tmp, lines, partitions=1, workers=1, pre_produced=True)
           for _ in range(args.repeats)]
    print(f"(b) one worker, backlog: {median(one):,.0f} alerts/s  {one}")
    latency = latency_run(bootstrap, tmp, args.rate, args.seconds)
    print(f"(c) latency at {latency['offered_per_s']:,.0f} alerts/s: {latency}")
    scale = {w: [backlog_run(bootstrap, tmp, lines, partitions=2, workers=w,
                             pre_produced=False) for _ in range(max(1, args.repeats - 1))]
             for w in (1, 2)}
    print(f"(d) 2 partitions: 1 worker {median(scale[1]):,.0f}, 2 workers "
          f"{median(scale[2]):,.0f} alerts/s  {scale}")
    unkeyed = [backlog_run(bootstrap, tmp, lines, partitions=6, workers=1, pre_produced=True,
                           keyed=False) for _ in range(max(1, args.repeats - 1))]
    print(f"(e) 6 partitions unkeyed, one worker: {median(unkeyed):,.0f} alerts/s  {unkeyed}")
    return {"messages": n, "ceiling": ceiling, "faust_noop": noop, "one_worker": one,
            "latency": latency, "two_partitions": {str(k): v for k, v in scale.items()},
            "unkeyed_six": unkeyed}


def report(r: dict[str, Any]) -> None:
    ceiling, one = median(r["ceiling"]), median(r["one_worker"])
    noop = median(r["faust_noop"])
    lat = r["latency"]
    s1, s2 = median(r["two_partitions"]["1"]), median(r["two_partitions"]["2"])
    rows: Iterator[str] = iter([
        f"| (a) plain aiokafka consumer (ceiling) | {ceiling:,.0f} alerts/s | |",
        f"| (a2) faust agent doing nothing (faust's ceiling) | {noop:,.0f} alerts/s | "
        f"{noop / ceiling:.1%} of (a) |",
        f"| (b) one worker, backlog | {one:,.0f} alerts/s | "
        f"{one / ceiling:.1%} of (a) "
        f"(issue's target >= 50%: {'met' if one / ceiling >= 0.5 else 'MISSED'}); "
        f"{one / noop:.0%} of (a2) (target >= 50%: "
        f"{'met' if one / noop >= 0.5 else 'MISSED'}) |",
        f"| (c) p50 / p99 produce -> alerts.keyed at {lat['offered_per_s']:,.0f} alerts/s "
        f"| {lat['p50_ms']:.0f} / {lat['p99_ms']:.0f} ms | {lat['timed']:,} of "
        f"{lat['expected']:,} timed (target p99 <= 250 ms: "
        f"{'met' if lat['p99_ms'] <= 250 else 'MISSED'}) |",
        f"| (d) 2 partitions: 1 worker -> 2 workers | {s1:,.0f} -> {s2:,.0f} alerts/s | "
        f"{s2 / s1:.2f}x (target > 1: {'met' if s2 > s1 else 'MISSED'}) |",
        f"| (e) 6 partitions, produced unkeyed (kcat), one worker | "
        f"{median(r['unkeyed_six']):,.0f} alerts/s | "
        f"{median(r['unkeyed_six']) / one:.2f}x of (b) |" if r.get("unkeyed_six") else "",
    ])
    print("\n| measure | result | note |\n|---|---:|---|")
    for row in rows:
        if row:
            print(row)
    print(f"\ntotal {r['seconds_total']:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
