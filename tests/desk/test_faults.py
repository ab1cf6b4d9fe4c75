"""The desk's store under faults: the ingest killed mid-stream and started again, and the
PostgreSQL server restarted mid-stream. Nothing is lost, nothing is applied twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.desk.conftest import LocalPostgres, _require_postgres, free_port, triage_events
from triage.desk.store import DeskStore

TRIAGE = str(Path(sys.executable).with_name("triage"))


@pytest.fixture(scope="module")
def many() -> list[dict[str, Any]]:
    """A few thousand incident events of a long storm."""
    return triage_events(steps=1500, services=60)


def applied_once(store: DeskStore, events: list[dict[str, Any]]) -> None:
    ids = {e["incident"]["id"] for e in events}
    logged = [e["source_id"] for iid in ids for e in store.log(iid) if e["source_id"]]
    assert len(logged) == len(set(logged)) == len(events)
    assert store.count()[0] == len(ids)


def test_an_ingest_killed_mid_stream_loses_and_doubles_nothing(
        desk_url: str, tmp_path: Path, many: list[dict[str, Any]]) -> None:
    path = tmp_path / "incidents.jsonl"
    path.write_bytes(b"".join(orjson.dumps(e) + b"\n" for e in many))
    watcher = DeskStore(desk_url)  # migrates; then counts what the ingests wrote
    kills = 0
    try:
        for round_ in range(3):
            proc = subprocess.Popen([TRIAGE, "desk", "ingest", "--db", desk_url, "-i",
                                     str(path), "--batch", "20"], stderr=subprocess.PIPE,
                                    start_new_session=True)
            had = watcher.count()[1]
            deadline = time.monotonic() + 60
            while proc.poll() is None and watcher.count()[1] <= had + 100 * round_ \
                    and time.monotonic() < deadline:
                time.sleep(0.02)  # until this round has written some batches
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                kills += 1
            proc.wait(30)
    finally:
        watcher.close()
    assert kills >= 1, "the ingest finished before it could be killed"
    done = subprocess.run([TRIAGE, "desk", "ingest", "--db", desk_url, "-i", str(path)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    with DeskStore(desk_url, upgrade=False) as store:
        applied_once(store, many)


def test_a_postgres_restart_mid_stream_loses_and_doubles_nothing(
        many: list[dict[str, Any]]) -> None:
    """The server stops (fast shutdown: connections cut) while batches are being written,
    and comes back 2 s later: each batch is retried whole, none is applied twice."""
    _require_postgres()
    server = LocalPostgres(Path(f"/tmp/triage-pg-restart-{uuid.uuid4().hex[:8]}"), free_port())
    server.start(fresh=True)
    try:
        url = server.database()
        store = DeskStore(url)
        errors: list[BaseException] = []
        progress = []

        def write() -> None:
            try:
                for i in range(0, len(many), 20):
                    store.ingest(many[i:i + 20], retries=12)
                    progress.append(i)
            except BaseException as exc:
                errors.append(exc)

        writer = threading.Thread(target=write)
        writer.start()
        while len(progress) < 5 and writer.is_alive():
            time.sleep(0.05)
        assert writer.is_alive(), "the ingest ended before the restart"
        server.stop("fast")
        time.sleep(2.0)
        server.start()
        writer.join(180)
        assert not errors, errors
        assert len(progress) * 20 >= len(many)
        applied_once(store, many)
        store.close()
    finally:
        server.stop("immediate")
        subprocess.run(["rm", "-rf", str(server.data)], check=False)
