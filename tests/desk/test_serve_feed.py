"""``triage serve --desk``: the incident desk follows serve's incident output, each event once,
through a kill -9 of serve, a moved output and a desk that is down for a while."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
from pathlib import Path

import orjson
import pytest

from tests.conftest import webhook
from tests.desk.conftest import triage_events
from tests.faults.conftest import FAST_PAGES, TRIAGE
from tests.http.tools import free_port, http, ready, wait_until
from triage.app.deskfeed import DeskFeed
from triage.desk.store import DeskStore


def lines(events: list[dict[str, object]]) -> bytes:
    return b"".join(orjson.dumps(e) + b"\n" for e in events)


def event_ids(path: Path) -> set[str]:
    return {orjson.loads(line)["event_id"] for line in path.read_bytes().splitlines()}


def test_the_feed_applies_each_event_once_across_restarts_moves_and_cut_backs(
        desk_url: str, tmp_path: Path) -> None:
    events = triage_events(steps=120, services=12)
    out = tmp_path / "inc.jsonl"
    out.write_bytes(lines(events[:40]) + orjson.dumps(events[40])[:25])  # a torn last line
    with DeskStore(desk_url) as store:
        feed = DeskFeed(store, out)
        assert feed.step() == 40  # the torn line waits for its end
        out.write_bytes(lines(events[:60]))
        assert DeskFeed(store, out).step() == 20  # a new process: from the saved position
        # cut back past the position (serve after a crash), then written again: re-read
        out.write_bytes(lines(events[:10]))
        assert DeskFeed(store, out).step() == 0
        out.write_bytes(lines(events[:80]))
        assert DeskFeed(store, out).step() == 20
        # moved away and started over: another inode, read from its start
        out.rename(tmp_path / "old.jsonl")
        out.write_bytes(lines(events))
        feed = DeskFeed(store, out)
        while feed.step():
            pass
        assert feed.applied == len(events) - 80
        with store.engine.connect() as conn:
            from sqlalchemy import func, select

            from triage.desk.schema import incident_event
            triage_rows = conn.execute(select(func.count()).select_from(incident_event).where(
                incident_event.c.source_id.is_not(None))).scalar_one()
        assert triage_rows == len({e["event_id"] for e in events})


def test_a_desk_that_is_down_is_retried_and_serve_is_told_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "inc.jsonl"
    out.write_bytes(lines(triage_events(steps=60, services=6)))
    with DeskStore(f"sqlite:///{tmp_path / 'desk.db'}") as store:
        feed = DeskFeed(store, out)
        real = store.ingest

        def down(*_: object, **__: object) -> object:
            raise OSError("connection refused")
        store.ingest = down  # type: ignore[method-assign]
        with caplog.at_level(logging.WARNING, logger="triage.desk"):
            for _ in range(3):
                asyncio.run(feed.step_logged())
            assert feed.failing is not None and feed.position == 0
            store.ingest = real  # type: ignore[method-assign]
            asyncio.run(feed.step_logged())
        assert feed.failing is None and feed.applied > 0
        said = [r.getMessage() for r in caplog.records]
        assert sum("cannot apply" in m for m in said) == 1
        assert sum("applying incident events again" in m for m in said) == 1


@pytest.mark.slow
def test_serve_feeds_the_desk_through_a_kill_9(tmp_path: Path) -> None:
    config = tmp_path / "triage.yaml"
    config.write_text(FAST_PAGES)
    port = free_port()
    desk = tmp_path / "desk.db"
    out = tmp_path / "inc.jsonl"
    args = [*TRIAGE, "serve", "--config", str(config), "--port", str(port),
            "--state", str(tmp_path / "state.db"), "--output", str(out),
            "--desk", str(desk)]
    log = (tmp_path / "serve.log").open("ab")
    url = f"http://127.0.0.1:{port}/webhook"

    def start() -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        wait_until(lambda: ready(f"http://127.0.0.1:{port}/-/ready"), timeout=30,
                   what="triage serve", proc=proc)
        return proc

    def post(service: str) -> None:
        alert = {"status": "firing", "labels": {"alertname": "ServiceDown",
                                                "service": service, "severity": "critical"},
                 "annotations": {}, "startsAt": "2026-12-05T10:00:00Z"}
        assert http("POST", url, orjson.dumps(webhook(alert)))[0] == 200

    def desk_incidents() -> set[str]:
        with DeskStore(f"sqlite:///{desk}") as store:
            return {row["id"] for row in store.incidents(limit=1000)}

    proc = start()
    for i in range(5):
        post(f"svc-{i}")
    wait_until(lambda: len(desk_incidents()) == 5 or None, timeout=30, what="5 on the desk",
               proc=proc)
    for i in range(5, 8):
        post(f"svc-{i}")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    proc = start()
    for i in range(8, 10):
        post(f"svc-{i}")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    created = {orjson.loads(line)["incident"]["id"] for line in out.read_bytes().splitlines()
               if orjson.loads(line)["type"] == "incident.created"}
    assert len(created) == 10
    assert desk_incidents() == created  # everything serve wrote, once each
    with DeskStore(f"sqlite:///{desk}") as store:
        applied = sum(len([e for e in store.log(i) if e["source_id"]]) for i in created)
    assert applied == len(event_ids(out))
