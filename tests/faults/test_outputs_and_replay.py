"""Outputs are never emptied by accident, and a crashed run replayed from stdin ends where a
clean run ends."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from tests.faults.conftest import FAST_PAGES, TRIAGE, Losses
from tests.faults.test_disk_full import alert, run, storm_file
from tests.http.tools import free_port, http
from triage.state.statefile import StateFile

pytestmark = pytest.mark.slow


def test_a_second_run_refuses_to_empty_the_outputs_of_the_first(tmp_path: Path) -> None:
    config = tmp_path / "triage.yaml"
    config.write_text(FAST_PAGES)
    storm = storm_file(tmp_path / "storm.jsonl")
    out = tmp_path / "out" / "inc.jsonl"
    args = ["-c", str(config), "-i", str(storm), "-o", str(out)]
    assert run(*args).returncode == 0
    before = out.read_bytes()
    assert before
    again = run(*args)
    assert again.returncode == 2
    assert "refusing to overwrite outputs" in again.stderr.decode()
    assert str(out) in again.stderr.decode().replace("\n", "")
    assert out.read_bytes() == before
    assert run(*args, "--force").returncode == 0  # asked for: starts over
    assert out.read_bytes() == before


def test_a_moved_run_folder_is_not_emptied(tmp_path: Path) -> None:
    """Re-running a finished `run --state` after moving its folder used to reopen the
    outputs empty: the checkpoint names the old paths."""
    config = tmp_path / "triage.yaml"
    config.write_text(FAST_PAGES)
    storm = storm_file(tmp_path / "storm.jsonl")
    first = tmp_path / "first"

    def args(d: Path) -> list[str]:
        return ["-c", str(config), "-i", str(storm), "-o", str(d / "inc.jsonl"),
                "--state", str(d / "state.db")]

    assert run(*args(first)).returncode == 0
    events = (first / "inc.jsonl").read_bytes()
    moved = tmp_path / "moved"
    shutil.move(first, moved)
    again = run(*args(moved))
    assert again.returncode == 2
    assert "no checkpoint of this state accounts for" in again.stderr.decode()
    assert (moved / "inc.jsonl").read_bytes() == events


def test_serve_restarted_without_state_appends(tmp_path: Path) -> None:
    config = tmp_path / "triage.yaml"
    config.write_text(FAST_PAGES)
    port, log = free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}/api/v2/alerts"
    inc = tmp_path / "inc.jsonl"
    sizes = []
    for name in ("svc-a", "svc-b"):
        proc = subprocess.Popen([*TRIAGE, "serve", "--config", str(config), "--port",
                                 str(port), "--output", str(inc), "--dead-letter",
                                 str(tmp_path / "dead.jsonl")],
                                stdout=log.open("ab"), stderr=subprocess.STDOUT)
        try:
            from tests.http.tools import ready, wait_until
            wait_until(lambda: ready(f"http://127.0.0.1:{port}/-/ready"), timeout=30,
                       what="serve", proc=proc)
            assert http("POST", url, alert(name))[0] == 200
            assert http("POST", url, b"{not json")[0] == 400
        finally:
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0
        sizes.append((inc.read_bytes().count(b"incident.created"),
                      (tmp_path / "dead.jsonl").read_bytes().count(b"\n")))
    assert sizes == [(1, 1), (2, 2)]


def test_stdin_replayed_from_the_start_after_kill_9_gives_the_clean_output(
        tmp_path: Path, losses: Losses) -> None:
    """A 10-hour simulated storm (alerts resolve and are forgotten after the retention, so
    re-triaging the prefix would re-fire them), killed three times at random points, each
    time sent again from its first line; the last run reads it to the end."""
    sim = tmp_path / "sim"
    subprocess.run([*TRIAGE, "simulate", "--services", "300", "--minutes", "600", "--seed",
                    "3", "--incidents-per-hour", "30", "--out", str(sim)], check=True,
                   capture_output=True, timeout=300)
    config, storm = sim / "triage.yaml", sim / "alerts.jsonl"
    clean = tmp_path / "clean.jsonl"
    assert run("-c", str(config), "-i", str(storm), "-o", str(clean)).returncode == 0
    out, state = tmp_path / "inc.jsonl", tmp_path / "state.db"
    cmd = [*TRIAGE, "run", "-q", "-c", str(config), "-i", "-", "-o", str(out),
           "--state", str(state), "--checkpoint-every", "300"]
    rng = random.Random(17)
    data = storm.read_bytes()
    for _ in range(3):
        proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        assert proc.stdin is not None
        cut = rng.randrange(len(data) // 4, len(data) * 3 // 4)
        proc.stdin.write(data[:cut])
        proc.stdin.flush()
        deadline = time.monotonic() + 30  # until it has checkpointed past the cut's half
        while time.monotonic() < deadline and _lines_done(state) < data[:cut // 2].count(b"\n"):
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    done = subprocess.run(cmd, input=data, capture_output=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr.decode()
    want, got = clean.read_bytes(), out.read_bytes()
    assert losses.record("run --state from stdin: kill -9 x3, replayed from line 1 (pages)",
                         want.count(b"incident.created"), got.count(b"incident.created")) == 0
    assert got == want


def _lines_done(state: Path) -> int:
    try:
        checkpoint = StateFile.last_checkpoint(state)
    except sqlite3.Error:
        return 0
    return checkpoint.lines_done if checkpoint else 0
