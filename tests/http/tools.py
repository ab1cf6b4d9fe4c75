"""External tools the HTTP and metrics tests drive: Debian's ``promtool``, ``prometheus`` and
``prometheus-alertmanager``. They skip when a tool is missing, except under ``CI=true``,
where ``.ci/run`` installs them and a missing one is a failure."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")


def require_binary(*names: str) -> str:
    """The path of the first of ``names`` on PATH; skip (or fail under CI) without one."""
    for name in names:
        path = shutil.which(name)
        if path is not None:
            return path
    message = f"{' / '.join(names)} not installed (apt-get install prometheus " \
              "prometheus-alertmanager)"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; .ci/run installs it before the tests")
    pytest.skip(message)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: bytes | None = None, *,
         headers: dict[str, str] | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    """One request; (status, body). Connection errors raise ``OSError``."""
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Content-Type": "application/json",
                                              **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_until(check: Callable[[], T | None], *, timeout: float, what: str,
               proc: subprocess.Popen[bytes] | None = None, interval: float = 0.1) -> T:
    """Poll ``check`` until it returns something other than None (or False); fail after
    ``timeout`` seconds, or at once if ``proc`` has exited."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
        except OSError:
            result = None
        if result is not None and result is not False:
            return result
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"waiting for {what}: the process exited with {proc.returncode}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(interval)


def ready(url: str) -> bool | None:
    """Whether ``url`` answers 200 (None while it does not)."""
    status, _ = http("GET", url, timeout=2.0)
    return True if status == 200 else None


@contextmanager
def triage_serve(tmp: Path, *, port: int, config: str,
                 extra: tuple[str, ...] = ()) -> Iterator[subprocess.Popen[bytes]]:
    """``triage serve`` as a subprocess on 127.0.0.1:``port`` (embedded, outputs in ``tmp``),
    ready when yielded; stopped with SIGTERM, which must exit cleanly."""
    cfg = tmp / "triage.yaml"
    cfg.write_text(config)
    log = (tmp / "serve.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "triage.cli", "serve", "--config", str(cfg),
         "--host", "127.0.0.1", "--port", str(port), "--output", str(tmp / "events.jsonl"),
         "--dead-letter", str(tmp / "dead.jsonl"), "--state", str(tmp / "serve.state"), *extra],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: ready(f"http://127.0.0.1:{port}/-/ready"), timeout=20,
                   what="triage serve to be ready", proc=proc)
        yield proc
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        log.close()


@contextmanager
def daemon(args: list[str], *, log: Path, ready_url: str,
           timeout: float = 30) -> Iterator[subprocess.Popen[bytes]]:
    """A Prometheus or Alertmanager process, ready when yielded, stopped afterwards."""
    out = log.open("wb")
    proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: ready(ready_url), timeout=timeout, what=f"{args[0]} to be ready",
                   proc=proc)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        out.close()
