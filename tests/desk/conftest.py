"""The desk's store on SQLite and on a real PostgreSQL server (Debian's package, started by
``deploy/postgres/pg-local``, one server per test process, a fresh database per test).

Without a PostgreSQL server the PostgreSQL cases skip, except under ``CI=true``, where they
fail (``make test`` installs it: ``deploy/test-tools``). ``TRIAGE_TEST_PG_URL`` names a
server to use instead (its user must be allowed to create databases).
"""

from __future__ import annotations

import os
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.integration.storms import storm
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.triage import Triage

REPO = Path(__file__).resolve().parents[2]
PG_LOCAL = REPO / "deploy" / "postgres" / "pg-local"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LocalPostgres:
    """A pg-local server: ``url`` of its ``triage`` database; ``stop``/``start`` it."""

    def __init__(self, data: Path, port: int) -> None:
        self.data, self.port = data, port
        self.url = ""

    def _run(self, *args: str) -> str:
        proc = subprocess.run([str(PG_LOCAL), *args, "--port", str(self.port), "--data-dir",
                               str(self.data)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"pg-local {args[0]} failed:\n{proc.stderr}")
        return proc.stdout.strip()

    def start(self, fresh: bool = False) -> None:
        self.url = self._run("start", *(["--fresh"] if fresh else []))

    def stop(self, mode: str = "fast") -> None:
        self._run("stop", "--mode", mode)

    def database(self) -> str:
        """A new empty database on this server; its URL."""
        import psycopg
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.url.replace("+psycopg", ""), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url.rsplit("/", 1)[0] + "/" + name


def _have_postgres() -> bool:
    proc = subprocess.run(
        ["bash", "-c", "command -v pg_ctl || ls /usr/lib/postgresql/*/bin/pg_ctl"],
        capture_output=True)
    return proc.returncode == 0


def _require_postgres() -> None:
    if not _have_postgres():
        message = ("PostgreSQL server not found (install: sudo apt-get install postgresql; "
                   "make test does it as root)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="session")
def postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalPostgres]:
    """A PostgreSQL server for this test process."""
    given = os.environ.get("TRIAGE_TEST_PG_URL")
    if given:
        server = LocalPostgres(Path("/nonexistent"), 0)
        server.url = given
        yield server
        return
    _require_postgres()
    server = LocalPostgres(Path(f"/tmp/triage-pg-test-{uuid.uuid4().hex[:8]}"), free_port())
    server.start(fresh=True)
    try:
        yield server
    finally:
        server.stop("immediate")
        subprocess.run(["rm", "-rf", str(server.data)], check=False)


@pytest.fixture(params=["sqlite", "postgresql"])
def desk_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A fresh, empty desk database: a SQLite file, or a new database on the server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'desk.db'}"
    server: LocalPostgres = request.getfixturevalue("postgres")
    return server.database()


def triage_events(steps: int = 240, *, services: int = 30) -> list[dict[str, Any]]:
    """Incident events of a real triage run over a test storm (created, updated and
    resolved events of many incidents), as JSON would carry them."""
    t = Triage(Pipeline(), IncidentEngine())
    events: list[dict[str, Any]] = []
    for line in storm(steps=steps, services=services):
        events += t.process(line).events
    events += t.flush()
    return [orjson.loads(orjson.dumps(e)) for e in events]


@pytest.fixture(scope="session")
def events() -> list[dict[str, Any]]:
    return triage_events()


EventsFactory = Callable[..., list[dict[str, Any]]]
