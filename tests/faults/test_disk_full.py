"""A full disk loses nothing: `serve` answers 503 with Retry-After and marks nothing it did
not write; `run` stops with a clear error and resumes once there is room."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import orjson
import pytest

from tests.faults.conftest import FAST_PAGES, TRIAGE, Disk, Losses
from tests.http.tools import free_port, http, ready, wait_until
from triage.simulate.storms import repeat_storm

pytestmark = pytest.mark.slow


def alert(name: str, status: str = "firing") -> bytes:
    """One Alertmanager API v2 alert for service ``name`` (its own incident)."""
    body = {"labels": {"alertname": "ServiceDown", "service": name, "severity": "critical"},
            "startsAt": "2026-12-05T10:00:00Z"}
    if status == "resolved":
        body["endsAt"] = "2026-12-05T10:00:01Z"
    return orjson.dumps([body])


def created_and_resolved(path: Path) -> tuple[set[str], set[str]]:
    """Services with an incident.created, and with an incident.resolved, in ``path``."""
    created, resolved = set(), set()
    for line in path.read_bytes().splitlines():
        event = orjson.loads(line)
        services = set(event["incident"]["services"])
        if event["type"] == "incident.created":
            created |= services
        elif event["type"] == "incident.resolved":
            resolved |= services
    return created, resolved


def start_serve(disk: Path, port: int, config: Path, log: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(
        [*TRIAGE, "serve", "--config", str(config), "--port", str(port),
         "--state", str(disk / "state.db"), "--output", str(disk / "inc.jsonl"),
         "--dead-letter", str(disk / "dead.jsonl")],
        stdout=log.open("ab"), stderr=subprocess.STDOUT)
    wait_until(lambda: ready(f"http://127.0.0.1:{port}/-/ready"), timeout=30,
               what="triage serve", proc=proc)
    return proc


def test_serve_on_a_full_disk_answers_503_and_loses_no_page(
        small_disk: Disk, tmp_path: Path, losses: Losses) -> None:
    """The red-team sequence: POST A, fill the disk, POST B (503), free it, retry B (200),
    kill -9, restart, resolve A and B: both incidents are created and resolved."""
    config = tmp_path / "triage.yaml"
    config.write_text(FAST_PAGES)
    port, log = free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}/api/v2/alerts"
    proc = start_serve(small_disk.path, port, config, log)
    try:
        assert http("POST", url, alert("svc-a"))[0] == 200
        small_disk.fill(proc.pid)
        status, body = 0, b""
        headers: dict[str, str] = {}
        for _ in range(3):  # the sender retries; each answer is a 503 while the disk is full
            request = urllib.request.Request(url, data=alert("svc-b"), method="POST",
                                             headers={"Content-Type": "application/json"})
            try:
                urllib.request.urlopen(request, timeout=10).close()
                status = 200
            except urllib.error.HTTPError as exc:
                status, body, headers = exc.code, exc.read(), dict(exc.headers)
            assert status == 503, body
        assert orjson.loads(body)["error"] == "StorageUnavailable"
        assert int(headers["Retry-After"]) >= 1
        assert proc.poll() is None
        small_disk.free()
        assert http("POST", url, alert("svc-b"))[0] == 200
        created, _ = created_and_resolved(small_disk.path / "inc.jsonl")
        assert {"svc-a", "svc-b"} <= created  # written before the 200
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    proc = start_serve(small_disk.path, port, config, log)
    try:
        for name in ("svc-a", "svc-b"):
            assert http("POST", url, alert(name, "resolved"))[0] == 200
        path = small_disk.path / "inc.jsonl"
        wait_until(lambda: created_and_resolved(path)[1] >= {"svc-a", "svc-b"} or None,
                   timeout=30, what="both incidents resolved", proc=proc)
        created, resolved = created_and_resolved(path)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=20)
    assert losses.record("serve: disk full mid-stream, then kill -9 (pages resolved)", 2,
                         len(resolved & {"svc-a", "svc-b"})) == 0
    log_text = log.read_text()
    assert "cannot write the outputs or the state" in log_text
    assert "Traceback" not in log_text


def storm_file(path: Path) -> Path:
    with path.open("wb") as fh:
        for line in repeat_storm(20_000, repeat_fraction=0.6, per_payload=1, seed=5):
            fh.write(line + b"\n")
    return path


def run(*args: str, **kwargs: object) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([*TRIAGE, "run", "-q", *args], capture_output=True, timeout=300,
                          check=False, **kwargs)  # type: ignore[call-overload]


def test_run_on_a_full_disk_stops_clearly_and_resumes_exactly(
        small_disk: Disk, tmp_path: Path, losses: Losses) -> None:
    config = tmp_path / "triage.yaml"
    config.write_text(FAST_PAGES)
    storm = storm_file(tmp_path / "storm.jsonl")
    clean = tmp_path / "clean"
    args = ["-c", str(config), "-i", str(storm)]
    assert run(*args, "-o", str(clean / "inc.jsonl"), "--outcomes",
               str(clean / "outcomes.jsonl")).returncode == 0
    assert (clean / "outcomes.jsonl").stat().st_size > 3 << 20  # more than the disk holds

    d = small_disk.path
    on_disk = [*args, "-o", str(d / "inc.jsonl"), "--outcomes", str(d / "outcomes.jsonl"),
               "--state", str(d / "state.db"), "--checkpoint-every", "500"]
    failed = run(*on_disk, **small_disk.child_limit(2 << 20))
    err = " ".join(failed.stderr.decode().split())  # rich wraps long lines
    assert failed.returncode == 75, err  # EX_TEMPFAIL: try again later
    assert "could not write the outputs or the state" in err
    assert "run the same command again to resume" in err
    assert "Traceback" not in err

    small_disk.grow()
    resumed = run(*on_disk)
    assert resumed.returncode == 0, resumed.stderr.decode()
    want = (clean / "inc.jsonl").read_bytes()
    got = (d / "inc.jsonl").read_bytes()
    assert (d / "outcomes.jsonl").read_bytes() == (clean / "outcomes.jsonl").read_bytes()
    assert got == want
    assert losses.record("run --state: disk full mid-run, resumed (incident events)",
                         want.count(b"\n"), got.count(b"\n")) == 0


def test_a_write_that_fails_halfway_leaves_no_half_line(tmp_path: Path) -> None:
    """The sink's promise, with the kernel refusing the bytes after a limit."""
    script = (
        "import resource, sys\n"
        "from triage.state.sinks import JsonLinesSink\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (100, resource.RLIM_INFINITY))\n"
        f"s = JsonLinesSink({str(tmp_path / 'o.jsonl')!r}, resume=None, std=sys.stdout.buffer)\n"
        "s.write({'a': 'x' * 40}); s.flush(sync=True)\n"
        "s.write({'b': 'y' * 80})\n"
        "try:\n    s.flush(sync=True)\nexcept OSError as e:\n    print('failed', e.errno)\n"
        "print(s.size, s.pending)\n"
        "resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, resource.RLIM_INFINITY))\n"
        "s.flush(sync=True); print(s.size, s.pending)\n")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, check=True,
                         timeout=60).stdout.decode().split("\n")
    assert out[0].startswith("failed")
    first = len(orjson.dumps({"a": "x" * 40})) + 1
    assert out[1] == f"{first} 1"  # cut back to the first line; the second is still staged
    lines = (tmp_path / "o.jsonl").read_bytes().splitlines()
    assert [orjson.loads(x) for x in lines] == [{"a": "x" * 40}, {"b": "y" * 80}]
    assert out[2] == f"{(tmp_path / 'o.jsonl').stat().st_size} 0"
