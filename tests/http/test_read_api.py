"""Alertmanager's read API on ``triage serve`` (embedded mode): ``GET /api/v2/alerts`` (and
``/alerts/groups``) lists the firing alerts triage holds, filtered as amtool and Grafana
filter; ``GET /api/v2/status`` says what this is. Through aiohttp's test server around a real
embedded backend, and with the real ``amtool`` against a real ``triage serve``."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import yaml
from aiohttp.test_utils import TestClient, TestServer

from tests.http.conftest import Clock, embedded_backend, fresh_metrics
from tests.http.tools import free_port, http, require_binary, triage_serve
from triage import __version__
from triage.core.fingerprint import labelset_fingerprint
from triage.core.timeutil import format_timestamp, parse_timestamp
from triage.http.app import create_app
from triage.http.embedded import EmbeddedBackend

SENDER = {"Authorization": "Bearer sender-token"}


@asynccontextmanager
async def server(backend: EmbeddedBackend, clock: Clock, *, token: str | None = None
                 ) -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(backend, fresh_metrics(), token=token, clock=clock)
    async with TestClient(TestServer(app)) as client:
        yield client


def am_alert(name: str, service: str, *, ends: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"labels": {"alertname": name, "service": service},
                           "annotations": {"summary": f"{name} on {service}"},
                           "startsAt": "2027-01-15T07:59:00Z",
                           "generatorURL": "http://prometheus/graph"}
    if ends is not None:
        out["endsAt"] = ends
    return out


async def listed(client: TestClient[Any, Any], query: str = "") -> list[dict[str, Any]]:
    resp = await client.get(f"/api/v2/alerts{query}")
    assert resp.status == 200, await resp.text()
    return await resp.json()  # type: ignore[no-any-return]


def test_alerts_are_listed_as_alertmanager_lists_them(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        backend = embedded_backend(tmp_path, fresh_metrics(), clock)
        async with server(backend, clock) as client:
            assert await listed(client) == []
            resp = await client.post("/api/v2/alerts", data=orjson.dumps([
                am_alert("DiskFull", "db"), am_alert("HighLatency", "api"),
                am_alert("Gone", "api", ends="2027-01-15T07:59:30Z")]))  # already resolved
            assert resp.status == 200
            clock.now += 5
            alerts = {a["labels"]["alertname"]: a for a in await listed(client)}
            assert sorted(alerts) == ["DiskFull", "HighLatency"]  # firing ones only
            disk = alerts["DiskFull"]
            assert disk["fingerprint"] == labelset_fingerprint(
                {"alertname": "DiskFull", "service": "db"})  # Alertmanager's own
            assert disk["status"] == {"state": "active", "silencedBy": [], "inhibitedBy": []}
            assert disk["receivers"] == [{"name": "triage"}]
            assert disk["startsAt"] == format_timestamp(
                parse_timestamp("2027-01-15T07:59:00Z", "t"))
            for key in ("endsAt", "updatedAt"):
                assert parse_timestamp(disk[key], key) is not None
            assert set(disk) >= {"labels", "annotations", "generatorURL"}

            groups = await (await client.get("/api/v2/alerts/groups")).json()
            assert [g["receiver"] for g in groups] == [{"name": "triage"}]
            assert sorted(a["labels"]["alertname"] for a in groups[0]["alerts"]) == sorted(
                alerts)
    asyncio.run(body())


def test_filters_active_and_silenced(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        backend = embedded_backend(tmp_path, fresh_metrics(), clock)
        async with server(backend, clock) as client:
            await client.post("/api/v2/alerts", data=orjson.dumps([
                am_alert("DiskFull", "db"), am_alert("DiskFull", "cache"),
                am_alert("HighLatency", "api")]))
            silence = {"matchers": [{"name": "service", "value": "cache", "isRegex": False}],
                       "startsAt": format_timestamp(clock.now - 1),
                       "endsAt": format_timestamp(clock.now + 3600), "createdBy": "me",
                       "comment": "resizing"}
            sid = (await (await client.post("/api/v2/silences", json=silence)).json()
                   )["silenceID"]

            def names(alerts: list[dict[str, Any]]) -> list[str]:
                return sorted(f"{a['labels']['alertname']}/{a['labels']['service']}"
                              for a in alerts)

            everything = await listed(client)
            cache = next(a for a in everything if a["labels"]["service"] == "cache")
            # silenced now, though it arrived before the silence
            assert cache["status"] == {"state": "suppressed", "silencedBy": [sid],
                                       "inhibitedBy": []}
            assert names(await listed(client, '?filter=alertname="DiskFull"')) == [
                "DiskFull/cache", "DiskFull/db"]
            assert names(await listed(
                client, '?filter=alertname="DiskFull"&filter=service=~"d.*"')) == [
                "DiskFull/db"]
            assert names(await listed(client, "?silenced=false")) == [
                "DiskFull/db", "HighLatency/api"]
            assert names(await listed(client, "?active=false")) == ["DiskFull/cache"]
            resp = await client.get('/api/v2/alerts?filter=alertname=~"("')
            assert resp.status == 400
            answer = await resp.json()
            assert answer["error"] == "BadFilter" and "filter" in answer["message"]
    asyncio.run(body())


def test_status_says_what_this_is(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        backend = embedded_backend(tmp_path, fresh_metrics(), clock)
        async with server(backend, clock, token="sender-token") as client:
            assert (await client.get("/api/v2/status")).status == 401
            assert (await client.get("/api/v2/alerts")).status == 401
            resp = await client.get("/api/v2/status", headers=SENDER)
            status = await resp.json()
        assert status["versionInfo"]["version"] == __version__
        assert status["cluster"]["status"] == "disabled"
        # Alertmanager's config, in its terms: one receiver, the one alerts name
        config = yaml.safe_load(status["config"]["original"])
        assert config["route"]["receiver"] == "triage"
        assert config["receivers"] == [{"name": "triage"}]
        uptime = parse_timestamp(status["uptime"], "uptime")
        assert uptime is not None and uptime <= time.time()
    asyncio.run(body())


def test_amtool_queries_alerts(tmp_path: Path) -> None:
    binary = require_binary("amtool")
    port = free_port()
    auth = tmp_path / "amtool-auth.yml"
    auth.write_text("authorization:\n  credentials: sender-token\n")

    def amtool(*args: str) -> Any:
        proc = subprocess.run([binary, f"--alertmanager.url=http://127.0.0.1:{port}",
                               f"--http.config.file={auth}", "-o", "json", *args],
                              capture_output=True, timeout=60, check=False)
        assert proc.returncode == 0, proc.stderr.decode()
        return orjson.loads(proc.stdout)

    with triage_serve(tmp_path, port=port, config="http:\n  token: sender-token\n"):
        for name, service in (("DiskFull", "db"), ("DiskFull", "cache"), ("Slow", "api")):
            alert = {"labels": {"alertname": name, "service": service}}
            status, answer = http("POST", f"http://127.0.0.1:{port}/api/v2/alerts",
                                  orjson.dumps([alert]), headers=SENDER)
            assert status == 200, answer
        found = amtool("alert", "query", "DiskFull", "service=~c.*")
        assert [a["labels"] for a in found] == [{"alertname": "DiskFull", "service": "cache"}]
        assert found[0]["status"]["state"] == "active"
        assert found[0]["fingerprint"] == labelset_fingerprint(found[0]["labels"])
        assert len(amtool("alert", "query")) == 3
