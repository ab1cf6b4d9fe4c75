"""The recovery watchdog's last resort, on a real broker with a real worker process: when it
gives up, the worker stops at once with exit code 1 for its supervisor to start again; it
does not hang. A stalled recovery cannot be provoked on purpose, so the watchdog's check is
replaced by one that gives up at its first call; the rest is the shipped worker (the
watchdog started on the first assignment, faust's crash path, ``triage worker``'s exit)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.kafka, pytest.mark.slow]

GIVE_UP_AT_ONCE = """
import triage.streams.wiring as wiring
import triage.streams.watchdog as watchdog

def gives_up_at_once(app, **_):
    async def check():
        await app.crash(watchdog.RecoveryStalled("table recovery made no progress (test)"))
    return check

wiring.recovery_watchdog = gives_up_at_once
from triage.cli import main
main()
"""


def test_a_worker_whose_recovery_watchdog_gives_up_exits_with_code_1(kafka_case,
                                                                     tmp_path: Path) -> None:
    case = kafka_case(partitions=2)
    log = tmp_path / "worker.log"
    with log.open("wb") as out:
        proc = subprocess.run([sys.executable, "-c", GIVE_UP_AT_ONCE, "worker", "--config",
                               str(case.config), "--metrics-port", "0", "--log-level",
                               "info"], stdout=out, stderr=subprocess.STDOUT, timeout=120,
                              cwd=tmp_path)  # a worker that hung would time out
    text = log.read_text(errors="replace")
    assert proc.returncode == 1, text[-3000:]
    assert "recovery watchdog on" in text  # started with the first assignment
    assert "RecoveryStalled('table recovery made no progress (test)')" in text
