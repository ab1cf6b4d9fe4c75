"""The HTTP server of `triage serve` against hostile clients (issue 15, items 8-10), at the
scale the red team used; the single-request findings are in ``test_red_team.py``."""

from __future__ import annotations

import contextlib
import logging
import resource
import socket
import time
from pathlib import Path

import orjson
import pytest

from tests.http.tools import free_port, http, triage_serve
from triage.app.server import RateLimitFilter


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_the_log_rate_limit_lets_a_burst_through_then_says_how_many_it_dropped() -> None:
    """asyncio and aiohttp logged about 97k tracebacks (43 MB) in 12 s under abuse."""
    clock, handler = _Clock(), _Kept()
    seen = handler.records
    logger = logging.getLogger("tests.hardening.flood")
    logger.propagate = False
    logger.addHandler(handler)
    logger.addFilter(RateLimitFilter(burst=3, window=10.0, clock=clock))
    try:
        for i in range(1000):  # a flood within one window
            logger.error("bad connection %d", i)
        assert [r.getMessage() for r in seen[:3]] == [f"bad connection {i}" for i in range(3)]
        assert len(seen) == 4  # the burst, then one line saying the rest are dropped
        assert "dropped" in seen[3].getMessage()
        clock.now = 10.0  # the next window: its first line carries the count
        logger.error("bad connection again")
        assert len(seen) == 5
        assert seen[4].getMessage() == ("(996 similar log lines dropped in the last 10 s) "
                                        "bad connection again")
    finally:
        logger.removeHandler(handler)


def _trickle(sockets: list[socket.socket], closed: set[int]) -> None:
    """One more header byte on each open connection; note those the server closed."""
    for i, s in enumerate(sockets):
        if i in closed:
            continue
        try:
            s.send(b"X")
            if s.recv(1) == b"":
                closed.add(i)
        except (BlockingIOError, InterruptedError):
            pass
        except OSError:
            closed.add(i)


@pytest.mark.slow
def test_a_thousand_tricklers_on_1024_descriptors_are_cut_off_and_a_sender_gets_through(
        tmp_path: Path) -> None:
    """1,000 slowloris connections were never closed and, with 1,024 file descriptors,
    blocked real senders. Default connection cap (512), header timeout shortened to 2 s."""
    port = free_port()
    alert = orjson.dumps([{"labels": {"alertname": "Real", "service": "db"}}])
    with triage_serve(tmp_path, port=port, config="http:\n  header_timeout: 2s\n") as proc:
        resource.prlimit(proc.pid, resource.RLIMIT_NOFILE, (1024, 1024))
        tricklers: list[socket.socket] = []
        for _ in range(1000):
            with contextlib.suppress(OSError):
                s = socket.create_connection(("127.0.0.1", port), timeout=5)
                s.sendall(b"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                s.setblocking(False)
                tricklers.append(s)
        started = time.monotonic()
        closed: set[int] = set()
        served_after = None
        try:
            while time.monotonic() - started < 12 and (served_after is None
                                                       or len(closed) < len(tricklers)):
                _trickle(tricklers, closed)
                if served_after is None:
                    with contextlib.suppress(OSError):
                        if http("POST", f"http://127.0.0.1:{port}/api/v2/alerts", alert,
                                timeout=2)[0] == 200:
                            served_after = time.monotonic() - started
                time.sleep(0.5)
        finally:
            for s in tricklers:
                s.close()
        assert proc.poll() is None
        assert http("GET", f"http://127.0.0.1:{port}/-/healthy")[0] == 200
    assert len(tricklers) == 1000
    assert len(closed) == len(tricklers)  # every trickler cut off: by the cap or the timeout
    assert served_after is not None and served_after < 6
    lines = (tmp_path / "serve.log").read_text().splitlines()
    assert len(lines) < 100 and not any("Traceback" in line for line in lines), lines[-5:]
