"""``triage serve`` on the command line: option errors, and Kafka mode with the real aiokafka
client and no broker (503 with Retry-After, never a crash)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import orjson
import pytest
from typer.testing import CliRunner

from tests.http.tools import free_port, http, wait_until
from triage.cli import app


@pytest.mark.parametrize("args", [
    ["--mode", "kafka", "--state", "x.state"],
    ["--mode", "kafka", "--output", "events.jsonl"],
    ["--mode", "sideways"],
])
def test_option_errors_exit_2_naming_the_problem(args: list[str], tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["serve", *args])
    assert result.exit_code == 2
    assert "--mode" in result.output or "embedded mode" in result.output


def test_bad_config_names_the_key(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("http: {port: 99999}\n")
    result = CliRunner().invoke(app, ["serve", "--config", str(cfg)])
    assert result.exit_code == 2
    assert "http.port" in result.output


@pytest.mark.slow
def test_kafka_mode_without_a_broker_answers_503_and_stays_up(tmp_path: Path) -> None:
    port, nothing_there = free_port(), free_port()
    env = {**os.environ, "TRIAGE_KAFKA__BOOTSTRAP": f"127.0.0.1:{nothing_there}"}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "triage.cli", "serve", "--mode", "kafka",
                             "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http("GET", f"{base}/-/healthy")[0] == 200 or None, timeout=20,
                   what="triage serve to listen", proc=proc)
        assert http("GET", f"{base}/-/ready", timeout=15)[0] == 503
        for _ in range(2):
            status, body = http("POST", f"{base}/webhook",
                                orjson.dumps({"alertname": "X", "service": "db"}), timeout=15)
            assert status == 503, body
            assert orjson.loads(body)["error"] == "KafkaUnavailable"
        assert proc.poll() is None
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=15)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
