"""Slow clients (slowloris headers, trickled bodies) beside real senders: the senders get
through and nothing they were answered 200 for is lost."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path

import orjson
import pytest

from tests.faults.conftest import Losses
from tests.http.tools import free_port, http, triage_serve

pytestmark = pytest.mark.slow

CONFIG = ("http:\n  header_timeout: 2s\n  body_timeout: 2s\n  max_connections: 64\n"
          "correlation:\n  page_delay: 0s\n  lone_delay: 0s\n  lone_critical_delay: 0s\n"
          "  page_unknown_services: true\n")


def test_real_senders_lose_nothing_while_slow_clients_attack(tmp_path: Path,
                                                             losses: Losses) -> None:
    port = free_port()
    stop = threading.Event()

    def attacker(kind: str) -> None:
        while not stop.is_set():
            held = []
            for _ in range(40):
                with contextlib.suppress(OSError):
                    s = socket.create_connection(("127.0.0.1", port), timeout=5)
                    s.sendall(b"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\n" if kind == "head"
                              else b"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\n"
                                   b"Content-Length: 1000\r\n\r\n[")
                    held.append(s)
            for _ in range(20):
                if stop.is_set():
                    break
                for s in held:
                    with contextlib.suppress(OSError):
                        s.send(b"X")
                time.sleep(0.25)
            for s in held:
                s.close()

    acked: set[str] = set()
    with triage_serve(tmp_path, port=port, config=CONFIG):
        attackers = [threading.Thread(target=attacker, args=(k,)) for k in ("head", "body")]
        for t in attackers:
            t.start()
        time.sleep(0.5)
        deadline = time.monotonic() + 60
        for n in range(100):
            name = f"svc-{n}"
            body = orjson.dumps([{"labels": {"alertname": "Down", "service": name,
                                             "severity": "critical"}}])
            while time.monotonic() < deadline:
                with contextlib.suppress(OSError):
                    if http("POST", f"http://127.0.0.1:{port}/api/v2/alerts", body,
                            timeout=5)[0] == 200:
                        acked.add(name)
                        break
                time.sleep(0.1)
        stop.set()
        for t in attackers:
            t.join(timeout=30)
    created = set()
    for line in (tmp_path / "events.jsonl").read_bytes().splitlines():
        event = orjson.loads(line)
        if event["type"] == "incident.created":
            created.update(event["incident"]["services"])
    assert len(acked) == 100  # every sender got through within the minute
    assert losses.record("serve: 80 slow clients beside 100 real senders (pages)",
                         len(acked), len(acked & created)) == 0
