"""A real Kafka broker for the integration tests.

``TRIAGE_KAFKA_BOOTSTRAP`` set (``make test`` sets it after ``deploy/kafka/kafka-local
start``, users point it at their own cluster): that broker is used. Otherwise the session
starts one with ``deploy/kafka/kafka-local`` on free ports and stops it at the end. Without
Java the tests skip, except under ``CI=true``, where they must run: they fail instead.

Each test gets its own topic names and consumer group (``KafkaCase``), so tests never see
each other's messages, on a shared broker or in parallel.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from triage.app.settings import KafkaSettings
from triage.streams.topics import consume_records, create_topics, produce_lines

REPO = Path(__file__).resolve().parents[2]
KAFKA_LOCAL = REPO / "deploy" / "kafka" / "kafka-local"
TRIAGE = str(Path(sys.executable).with_name("triage"))

pytestmark = pytest.mark.kafka


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def java_missing_reason() -> str | None:
    if shutil.which("java") is None:
        return "java is not installed (Kafka needs Java 17)"
    if shutil.which("mvn") is None and not any(
            Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"), "triage").glob(
                "kafka-*/.complete")):
        return "mvn is not installed and no Kafka jars are cached"
    return None


@dataclass
class LocalBroker:
    """A broker started with ``kafka-local`` (port, data dir), for tests that restart it."""

    port: int
    controller_port: int
    data: Path

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _run(self, command: str, timeout: float = 180) -> None:
        args = [str(KAFKA_LOCAL), command, "--port", str(self.port), "--controller-port",
                str(self.controller_port), "--data-dir", str(self.data)]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"kafka-local {command} failed:\n{done.stderr}")

    def start(self) -> None:
        self._run("start")

    def stop(self) -> None:
        self._run("stop")

    @classmethod
    def launch(cls, data: Path) -> LocalBroker:
        broker = cls(free_port(), free_port(), data)
        broker.start()
        return broker


def _require_java() -> None:
    reason = java_missing_reason()
    if reason is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the Kafka integration tests cannot run: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a serving broker for the whole session."""
    given = os.environ.get("TRIAGE_KAFKA_BOOTSTRAP")
    if given:
        yield given
        return
    _require_java()
    broker = LocalBroker.launch(tmp_path_factory.mktemp("kafka"))
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def own_broker(tmp_path: Path) -> Iterator[LocalBroker]:
    """A broker of this test's own, which it may stop and start (never the shared one)."""
    _require_java()
    broker = LocalBroker.launch(tmp_path / "kafka")
    try:
        yield broker
    finally:
        broker.stop()


# A small, fast configuration: 5 s page delay, 1 min timeouts, so storms of a few thousand
# alerts spanning a few hours of event time open, page and resolve many incidents.
CONFIG: dict[str, Any] = {
    "dedup": {"resolve_timeout": "60s", "retention": "10m"},
    "correlation": {"page_delay": "5s", "quiet_period": "60s", "window": "5m",
                    "update_interval": "10s"},
}


@dataclass
class Worker:
    """A ``triage worker`` subprocess."""

    proc: subprocess.Popen[bytes]
    log: Path

    def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, n: int = 60) -> str:
        lines = self.log.read_text(errors="replace").splitlines() if self.log.exists() else []
        return "\n".join(lines[-n:])


# Workers log at info under CI: a rare stall of the two-worker equivalence case (about 1 run
# in 45, never reproduced by hand) then fails with what each worker was doing in its tail.
WORKER_LOG = os.environ.get("TRIAGE_TEST_WORKER_LOG",
                            "info" if os.environ.get("CI") == "true" else "warning")


@dataclass
class KafkaCase:
    """One test's topics, config and workers on a broker."""

    bootstrap: str
    tmp: Path
    partitions: int = 1
    extra: dict[str, Any] = field(default_factory=dict)
    workers: list[Worker] = field(default_factory=list)

    def __post_init__(self) -> None:
        tag = uuid.uuid4().hex[:8]
        self.app_id = f"triage-test-{tag}"
        self.topics = {n: f"t{tag}.{n}" for n in ("raw", "keyed", "changes", "feedback",
                                                    "incidents", "deadletter", "lifecycle")}
        self.kafka = KafkaSettings(bootstrap=self.bootstrap, app_id=self.app_id,
                                   partitions=self.partitions, topics=self.topics)
        config = {**CONFIG, **self.extra, "kafka": {
            "bootstrap": self.bootstrap, "app_id": self.app_id,
            "partitions": self.partitions, "topics": self.topics}}
        self.config = self.tmp / f"config-{tag}.yaml"
        self.config.write_text(yaml.safe_dump(config))
        create_topics(self.kafka)

    def produce(self, lines: list[bytes], key_field: str | None = None, *,
                keyed: bool = False) -> None:
        """``lines`` to ``alerts.raw`` as they are (unkeyed, as kcat sends them), keyed by
        ``key_field``, or ``keyed`` by their alert's fingerprint as ``triage produce``
        keys them."""
        key_of = None
        if keyed:
            from triage.app.bootstrap import build_fingerprinter
            from triage.app.settings import load_settings
            from triage.streams.keys import partition_key

            fingerprinter = build_fingerprinter(load_settings(self.config))

            def key_of(value: bytes) -> bytes | None:
                try:
                    return partition_key(orjson.loads(value), fingerprinter)
                except orjson.JSONDecodeError:
                    return None

        produce_lines(self.kafka, self.topics["raw"], lines, key_field=key_field,
                      key_of=key_of)

    def start_worker(self, *extra: str) -> Worker:
        """A worker; its /metrics exporter is off unless ``extra`` sets ``--metrics-port``
        (tests run in parallel: the default port would clash)."""
        log = self.tmp / f"worker-{len(self.workers)}.log"
        metrics = () if "--metrics-port" in extra else ("--metrics-port", "0")
        proc = subprocess.Popen(
            [TRIAGE, "worker", "--config", str(self.config), "--session-timeout", "6",
             "--log-level", WORKER_LOG, *metrics, *extra],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
            cwd=self.tmp)  # faust writes its data dir in the working directory
        worker = Worker(proc, log)
        self.workers.append(worker)
        return worker

    def read(self, logical: str, timeout: float = 3.0) -> list[dict[str, Any]]:
        return [orjson.loads(r.value) for r in consume_records(
            self.kafka, self.topics[logical], timeout=timeout) if r.value]

    def wait_for(self, logical: str, done: Callable[[list[dict[str, Any]]], bool],
                 timeout: float, worker: Worker | None = None,
                 missing: Callable[[list[dict[str, Any]]], str] | None = None
                 ) -> list[dict[str, Any]]:
        """Read ``logical`` until ``done(records)`` or fail after ``timeout`` seconds
        (naming what is ``missing`` from the records, when told how)."""
        deadline = time.monotonic() + timeout
        records: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            records = self.read(logical, timeout=0.5)
            if done(records):
                return records
            if worker is not None and not worker.alive():
                pytest.fail(f"worker exited ({worker.proc.returncode}):\n{worker.tail()}")
            time.sleep(0.5)
        logs = "\n".join(w.tail() for w in self.workers)
        what = missing(records) if missing is not None else repr(done)
        pytest.fail(f"{logical}: condition not met in {timeout:.0f}s "
                    f"({len(records)} records; {what})\n{logs}")

    def close(self) -> None:
        for w in self.workers:
            w.stop()


@pytest.fixture
def kafka_case(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Callable[..., KafkaCase]]:
    """A factory: ``kafka_case(partitions=1, extra={...})`` → a ``KafkaCase``."""
    cases: list[KafkaCase] = []

    def make(bootstrap: str | None = None, **kwargs: Any) -> KafkaCase:
        case = KafkaCase(bootstrap or kafka_bootstrap, tmp_path, **kwargs)
        cases.append(case)
        return case

    yield make
    for case in cases:
        case.close()
