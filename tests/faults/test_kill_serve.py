"""`serve --state` killed with SIGKILL at random points while 4 senders post: nothing that
was answered 2xx is lost, and nothing pages twice."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import orjson
import pytest

from tests.faults.conftest import FAST_PAGES, Losses
from tests.faults.test_disk_full import start_serve
from tests.http.tools import free_port, http

pytestmark = pytest.mark.slow

SENDERS = 4
PER_SENDER = 250  # bodies, 5 new alerts each, every alert its own service


def body(sender: int, n: int) -> bytes:
    return orjson.dumps([{"labels": {"alertname": "ServiceDown", "severity": "critical",
                                     "service": f"s{sender}-{n}-{k}"},
                          "startsAt": "2026-12-05T10:00:00Z"} for k in range(5)])


@pytest.mark.parametrize("durability", ["process", "power"])
def test_kill_9_under_load_loses_nothing_acknowledged(tmp_path: Path, losses: Losses,
                                                      durability: str) -> None:
    config = tmp_path / "triage.yaml"
    config.write_text(FAST_PAGES + f"state:\n  durability: {durability}\n")
    port, log = free_port(), tmp_path / "serve.log"
    url = f"http://127.0.0.1:{port}/api/v2/alerts"
    acked: set[str] = set()
    lock = threading.Lock()
    proc = start_serve(tmp_path, port, config, log)

    def sender(i: int) -> None:
        n = 0
        while n < PER_SENDER:
            try:
                status, _ = http("POST", url, body(i, n), timeout=10)
            except OSError:  # the server is down: retry, as Alertmanager does
                time.sleep(0.05)
                continue
            if status == 200:
                with lock:
                    acked.update(f"s{i}-{n}-{k}" for k in range(5))
                n += 1
            else:
                time.sleep(0.05)

    threads = [threading.Thread(target=sender, args=(i,)) for i in range(SENDERS)]
    for t in threads:
        t.start()
    rng = random.Random(5)
    at_kill = []
    total = SENDERS * PER_SENDER * 5
    # killed twice at random points of the stream (by alerts answered), restarted at once
    for share in (rng.uniform(0.1, 0.4), rng.uniform(0.5, 0.8)):
        while len(acked) < share * total:
            time.sleep(0.002)
        at_kill.append(len(acked))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        proc = start_serve(tmp_path, port, config, log)
    for t in threads:
        t.join(timeout=120)
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=30)

    created = Counter()
    for line in (tmp_path / "inc.jsonl").read_bytes().splitlines():
        event = orjson.loads(line)
        if event["type"] == "incident.created":
            created.update(event["incident"]["services"])
    assert len(acked) == SENDERS * PER_SENDER * 5
    assert 0 < at_kill[0] < at_kill[1] < len(acked)  # killed mid-stream, not after it
    kept = len(acked & set(created))
    assert losses.record(f"serve --state ({durability}): 4 senders, kill -9 x2 (pages)",
                         len(acked), kept) == 0
    assert [s for s, n in created.items() if n > 1] == []  # nothing paged twice
    text = log.read_text()
    # each restart ran again the requests journaled after the last snapshot, to the same
    # outputs as before the kill
    assert text.count("inputs journaled after the last snapshot") == 2
    assert "output of another size" not in text and "Traceback" not in text
