"""A cluster of one's own with SASL: the ``kafka.security_protocol`` / ``kafka.sasl_*``
settings reach every client triage has (``topics create`` and ``produce`` / ``consume``
through kafka-python, the worker through faust and aiokafka, its change feed, its topic
check), end to end through a SASL_PLAINTEXT listener with the PLAIN mechanism
(``kafka-local start --sasl-plain USER:PASSWORD``). A wrong password is a clear error that
says so, not a hang and not a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from tests.integration.conftest import (
    CONFIG,
    KAFKA_LOCAL,
    TRIAGE,
    _require_java,
    free_port,
)
from tests.integration.storms import T0

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

USER, PASSWORD = "triage", "s3cret; with spaces=and 'quotes'"


@dataclass
class SaslBroker:
    """``kafka-local`` with a SASL_PLAINTEXT (PLAIN) listener beside the PLAINTEXT one."""

    port: int
    controller_port: int
    sasl_port: int
    data: Path

    @property
    def sasl_bootstrap(self) -> str:
        return f"127.0.0.1:{self.sasl_port}"

    def _run(self, command: str, *extra: str, timeout: float = 180) -> None:
        args = [str(KAFKA_LOCAL), command, "--port", str(self.port), "--controller-port",
                str(self.controller_port), "--data-dir", str(self.data), *extra]
        done = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
        if done.returncode != 0:
            raise RuntimeError(f"kafka-local {command} failed:\n{done.stderr}")

    def start(self) -> None:
        self._run("start", "--sasl-port", str(self.sasl_port),
                  "--sasl-plain", f"{USER}:{PASSWORD}", "--sasl-plain", "other:pw")

    def stop(self) -> None:
        self._run("stop")


@pytest.fixture(scope="module")
def sasl_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SaslBroker]:
    _require_java()
    broker = SaslBroker(free_port(), free_port(), free_port(),
                        tmp_path_factory.mktemp("kafka-sasl"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def sasl_config(broker: SaslBroker, tmp: Path, password: str, tag: str) -> Path:
    """A config of the kind a user with their own cluster writes."""
    config = {**CONFIG, "kafka": {
        "bootstrap": broker.sasl_bootstrap, "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": "PLAIN", "sasl_username": USER, "sasl_password": password,
        "app_id": f"triage-sasl-{tag}", "partitions": 1,
        "topics": {n: f"s{tag}.{n}" for n in ("raw", "keyed", "changes", "feedback",
                                               "incidents", "deadletter")}}}
    path = tmp / f"config-{tag}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def triage(*args: str, timeout: float = 90, **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([TRIAGE, *args], capture_output=True, text=True, timeout=timeout,
                          **kwargs)


def test_topics_produce_worker_consume_through_sasl(sasl_broker: SaslBroker,
                                                    tmp_path: Path) -> None:
    config = sasl_config(sasl_broker, tmp_path, PASSWORD, uuid.uuid4().hex[:8])
    created = triage("topics", "create", "--config", str(config))
    assert created.returncode == 0, created.stderr
    assert created.stdout.count("created") >= 6, created.stdout

    alerts = tmp_path / "alerts.jsonl"
    alerts.write_bytes(b"\n".join([
        orjson.dumps({"alertname": "CheckoutErrors", "service": "checkout",
                      "severity": "critical", "at": T0}),
        # ten minutes later (event time): the page delay is over, the page goes out
        orjson.dumps({"received_at": T0 + 600, "payload": {
            "version": "4", "status": "firing", "receiver": "triage", "groupKey": "{}",
            "alerts": []}}),
    ]) + b"\n")
    produced = triage("produce", "--config", str(config), "--topic", "raw",
                      "--input", str(alerts))
    assert produced.returncode == 0, produced.stderr
    assert "2 messages sent" in produced.stderr

    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [TRIAGE, "worker", "--config", str(config), "--session-timeout", "6",
         "--metrics-port", "0", "--log-level", "warning"],
        stdout=log.open("wb"), stderr=subprocess.STDOUT, start_new_session=True,
        cwd=tmp_path)
    try:
        deadline = time.monotonic() + 60
        events: list[dict[str, Any]] = []
        while not any(e["type"] == "incident.created" for e in events):
            if time.monotonic() > deadline or worker.poll() is not None:
                pytest.fail(f"no incident through SASL (worker exit {worker.poll()}):\n"
                            + log.read_text(errors="replace")[-4000:])
            consumed = triage("consume", "--config", str(config), "--topic", "incidents",
                              "--timeout", "2")
            assert consumed.returncode == 0, consumed.stderr
            events = [orjson.loads(x) for x in consumed.stdout.splitlines() if x.strip()]
        page = next(e for e in events if e["type"] == "incident.created")
        assert page["incident"]["services"] == ["checkout"]
        assert page["incident"]["alert_count"] == 1
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(20)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(10)
            raise
    assert code == 0, log.read_text(errors="replace")[-4000:]
    assert "Traceback" not in log.read_text(errors="replace")


@pytest.fixture(scope="module")
def wrong_password(sasl_broker: SaslBroker, tmp_path_factory: pytest.TempPathFactory
                   ) -> dict[str, tuple[int, str, float]]:
    """``topics create``, ``produce`` and ``worker`` with a wrong password, run at once
    (each may take a client's whole bootstrap timeout): exit code, output, seconds."""
    tmp = tmp_path_factory.mktemp("sasl-wrong")
    config = str(sasl_config(sasl_broker, tmp, "not-" + PASSWORD, uuid.uuid4().hex[:8]))
    alerts = tmp / "alerts.jsonl"
    alerts.write_bytes(orjson.dumps({"alertname": "A", "service": "s", "at": T0}) + b"\n")
    commands = {
        "topics create": ["topics", "create", "--config", config],
        "produce": ["produce", "--config", config, "--input", str(alerts)],
        "worker": ["worker", "--config", config, "--metrics-port", "0"],
    }
    started = time.monotonic()
    procs = {name: subprocess.Popen([TRIAGE, *args], stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, start_new_session=True,
                                    cwd=tmp, env={**_env(), "COLUMNS": "200"})
             for name, args in commands.items()}
    results: dict[str, tuple[int, str, float]] = {}
    for name, proc in procs.items():
        try:
            out, _ = proc.communicate(timeout=max(1.0, 90 - (time.monotonic() - started)))
            results[name] = (proc.returncode, out.decode(errors="replace"),
                             time.monotonic() - started)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
            results[name] = (-1, "HUNG for 90 s:\n" + out.decode(errors="replace"), 90.0)
    return results


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}


@pytest.mark.parametrize("command", ["topics create", "produce"])
def test_wrong_password_fails_without_a_hang_or_traceback(wrong_password, command: str
                                                          ) -> None:
    code, out, seconds = wrong_password[command]
    assert code not in (0, -1), out
    assert "Traceback" not in out and "╭" not in out, out  # rich prints tracebacks boxed
    assert out.strip().startswith("error:"), out
    assert seconds < 60, out


# kafka-python 3.0.12 retries a failed SASL authentication during bootstrap until its timeout
# and then raises only KafkaTimeoutError("Unable to bootstrap from [...]"); triage recovers
# the reason the client logged (triage.streams.topics.explained) and names the settings.
@pytest.mark.parametrize("command", ["topics create", "produce"])
def test_wrong_password_error_names_authentication(wrong_password, command: str) -> None:
    code, out, _ = wrong_password[command]
    assert code != 0
    assert "authentication" in out.lower(), out
    assert "kafka.sasl_password" in out, out  # the setting to check


def test_wrong_password_worker_exits_with_a_clear_error(wrong_password) -> None:
    code, out, _ = wrong_password["worker"]
    assert code not in (0, -1), out
    assert "Traceback" not in out and "╭" not in out, out
    assert "authentication" in out.lower(), out
