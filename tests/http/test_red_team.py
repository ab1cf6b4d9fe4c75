"""The red-team findings on `triage serve` (issue 15), each as the request that broke it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.http.conftest import Clock, embedded_backend, fresh_metrics, records, served
from tests.http.tools import free_port, http, triage_serve
from triage.app.settings import load_settings
from triage.errors import ConfigError


async def raw_request(client: Any, data: bytes) -> tuple[int, bytes]:
    """Send ``data`` as it is on a new connection; the status and the body."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    writer.write(data)
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(65536), timeout=10)
    writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), body


def test_a_non_ascii_authorization_header_is_a_401_not_a_500(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock)
        async with served(backend, metrics, clock=clock, token="s3cret") as client:
            alert = b'{"alertname": "DiskFull", "service": "db"}'
            for auth in (b"Bearer \xff\xfe", b"\xff", b"Bearer s3cret\xff", b"Bearer ",
                         b"Bearer"):
                status, answer = await raw_request(client, (
                    b"POST /api/v1/alerts HTTP/1.1\r\nHost: x\r\nContent-Type: "
                    b"application/json\r\nAuthorization: " + auth + b"\r\nContent-Length: "
                    + str(len(alert)).encode() + b"\r\nConnection: close\r\n\r\n" + alert))
                assert status == 401, (auth, answer)
                assert orjson.loads(answer)["error"] == "Unauthorized"

    asyncio.run(body())


@pytest.mark.parametrize("value", ["", "   ", "two words"])
def test_an_empty_or_blank_token_is_a_config_error(value: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """`TRIAGE_HTTP__TOKEN=` used to admit `Bearer` with nothing after it."""
    monkeypatch.setenv("TRIAGE_HTTP__TOKEN", value)
    with pytest.raises(ConfigError) as exc:
        load_settings(None)
    assert "http.token" in str(exc.value)


def test_a_token_of_the_wrong_type_is_not_echoed(tmp_path: Path) -> None:
    config = tmp_path / "triage.yaml"
    config.write_text("http:\n  token: [hunter2-very-secret]\n")
    with pytest.raises(ConfigError) as exc:
        load_settings(config)
    assert "hunter2" not in str(exc.value)
    assert "http.token" in str(exc.value) and "list" in str(exc.value)
    # and through the CLI, as a user sees it
    proc = subprocess.run([sys.executable, "-m", "triage.cli", "serve", "--config",
                           str(config)], capture_output=True, timeout=60, check=False)
    assert proc.returncode == 2 and b"hunter2" not in proc.stderr + proc.stdout


def test_api_v2_alerts_answers_what_happened_to_each_alert(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock)
        alerts: list[dict[str, Any]] = [
            {"labels": {"alertname": "A", "service": "db"}, "startsAt": "2027-01-15T07:59:00Z"},
            {"labels": {"alertname": "B", "service": "db"}},  # no startsAt: now
            {"labels": "not a map", "startsAt": "2027-01-15T07:59:00Z"},
            {"labels": {"alertname": "A", "service": "db"}, "startsAt": "2027-01-15T07:59:00Z"},
        ]
        async with served(backend, metrics, clock=clock) as client:
            resp = await client.post("/api/v2/alerts", data=orjson.dumps(alerts))
            assert resp.status == 200
            got = await resp.json()
        outcomes = [r["outcome"] for r in got["alerts"]]
        assert outcomes == ["accepted", "accepted", "refused", "deduplicated"]
        assert got["alerts"][2]["reason"] and got["alerts"][2]["field"]
        assert got["alerts"][0]["fingerprint"] == got["alerts"][3]["fingerprint"]
        assert got["counts"] == {"accepted": 2, "deduplicated": 1, "suppressed": 0,
                                 "refused": 1}
        dead = records(tmp_path / "dead.jsonl")
        assert len(dead) == 1 and "labels" in dead[0]["field"]

    asyncio.run(body())


def test_an_oversize_body_is_dead_lettered(tmp_path: Path) -> None:
    async def body() -> None:
        metrics, clock = fresh_metrics(), Clock()
        backend = embedded_backend(tmp_path, metrics, clock)
        big = b'[{"labels": {"alertname": "' + b"x" * 5000 + b'"}}]'
        async with served(backend, metrics, clock=clock, max_body_bytes=1000) as client:
            resp = await client.post("/api/v2/alerts", data=big)
            assert resp.status == 413
        dead = records(tmp_path / "dead.jsonl")
        assert len(dead) == 1
        assert dead[0]["error"] == "PayloadTooLarge"
        assert str(len(big)) in dead[0]["reason"]
        assert big.decode().startswith(dead[0]["raw"][:500])  # its first bytes are kept

    asyncio.run(body())


HARDENED = "http:\n  header_timeout: 2s\n  body_timeout: 1s\n  max_connections: 40\n"


def _connect(port: int) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    return s


def _answer(s: socket.socket) -> tuple[int, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next((h.split(b":", 1)[1] for h in head.split(b"\r\n")
                       if h.lower().startswith(b"content-length:")), b"0"))
    while len(body) < length:
        chunk = s.recv(65536)
        if not chunk:
            break
        body += chunk
    return int(head.split(b" ", 2)[1]), body


def test_trickling_clients_are_cut_off_and_real_senders_get_through(tmp_path: Path) -> None:
    """1,000 slowloris connections used to be kept forever, blocking real senders."""
    port = free_port()
    with triage_serve(tmp_path, port=port, config=HARDENED) as proc:
        tricklers = []
        for _ in range(60):  # more than max_connections
            s = _connect(port)
            s.sendall(b"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\n")
            tricklers.append(s)
        started = time.monotonic()
        closed: set[int] = set()
        served_at = None
        body = orjson.dumps([{"labels": {"alertname": "Real", "service": "db"}}])
        while time.monotonic() - started < 10 and (served_at is None or
                                                   len(closed) < len(tricklers)):
            for i, s in enumerate(tricklers):  # one header byte at a time, forever
                if i in closed:
                    continue
                try:
                    s.sendall(b"X")
                    s.setblocking(False)
                    if s.recv(1) == b"":
                        closed.add(i)
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    closed.add(i)
                finally:
                    s.setblocking(True)
            if served_at is None:
                with contextlib.suppress(OSError):
                    status, _ = http("POST", f"http://127.0.0.1:{port}/api/v2/alerts", body,
                                     timeout=2)
                    if status == 200:
                        served_at = time.monotonic() - started
            time.sleep(0.2)
        for s in tricklers:
            s.close()
        assert proc.poll() is None
    assert len(closed) == len(tricklers)  # every trickler cut off (timeout or cap)
    assert served_at is not None and served_at < 6  # within the header timeout and then some


def test_malformed_framing_is_a_json_400_without_a_traceback(tmp_path: Path) -> None:
    port = free_port()
    requests = [
        b"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        b"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
        b"Content-Length: 7\r\n\r\n[]",
        b"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: nope\r\n\r\n[]",
    ]
    with triage_serve(tmp_path, port=port, config=HARDENED):
        for raw in requests:
            s = _connect(port)
            s.sendall(raw)
            status, body = _answer(s)
            s.close()
            assert status == 400, body
            got = orjson.loads(body)
            assert got["code"] == 400 and "malformed HTTP request" in got["message"]
        # a body that trickles: 408 after http.body_timeout
        s = _connect(port)
        s.sendall(b"POST /api/v2/alerts HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n[{")
        status, body = _answer(s)
        s.close()
        assert status == 408 and orjson.loads(body)["error"] == "RequestTimeout"
    log = (tmp_path / "serve.log").read_text()
    assert "Traceback" not in log


def test_a_flood_of_garbage_is_logged_in_a_few_lines(tmp_path: Path) -> None:
    """About 97k tracebacks (43 MB) in 12 s, before."""
    port = free_port()
    with triage_serve(tmp_path, port=port, config=HARDENED) as proc:
        for i in range(400):
            with contextlib.suppress(OSError):
                s = _connect(port)
                s.sendall(b"POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"
                          if i % 2 else b"\x16\x03\x01garbage\r\n\r\n")
                with contextlib.suppress(OSError):
                    s.recv(4096)
                s.close()
        assert proc.poll() is None
        assert http("GET", f"http://127.0.0.1:{port}/-/healthy")[0] == 200
    lines = (tmp_path / "serve.log").read_text().splitlines()
    assert len(lines) < 80, lines[-5:]
    assert not any("Traceback" in line for line in lines)
