"""Silences on ``triage serve`` as Alertmanager's API v2 has them (issue 15, item 7): created,
listed, updated and expired on ``/api/v2/silences``, with their own token; never taken from
alert senders on the alert routes; kept across restarts with ``--state``.

The app runs on aiohttp's test server (a real socket) around a real embedded backend."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp.test_utils import TestClient, TestServer

from tests.http.conftest import (
    Clock,
    StubProducer,
    embedded_backend,
    fresh_metrics,
    kafka_backend,
    records,
)
from tests.http.tools import free_port, http, triage_serve
from triage.core.matchers import parse_matchers
from triage.core.pipeline import Pipeline
from triage.core.silences import Silence
from triage.core.timeutil import format_timestamp, parse_timestamp
from triage.core.types import Failed
from triage.http.app import create_app
from triage.http.intake import Backend

ADMIN = {"Authorization": "Bearer admin-token"}
SENDER = {"Authorization": "Bearer sender-token"}


def postable(*matchers: dict[str, Any], start: float, hours: float = 2.0,
             **extra: Any) -> dict[str, Any]:
    """An Alertmanager postableSilence, as amtool sends it."""
    return {"matchers": list(matchers), "startsAt": format_timestamp(start),
            "endsAt": format_timestamp(start + hours * 3600), "createdBy": "alice",
            "comment": "db failover", **extra}


def eq(name: str, value: str, *, regex: bool = False, equal: bool = True) -> dict[str, Any]:
    return {"name": name, "value": value, "isRegex": regex, "isEqual": equal}


def alert(name: str, service: str = "db") -> bytes:
    return orjson.dumps([{"labels": {"alertname": name, "service": service},
                          "startsAt": "2027-01-15T07:59:00Z"}])


@asynccontextmanager
async def server(backend: Backend, clock: Clock, *, token: str | None = None,
                 admin_token: str | None = None, stream_silences: bool = False,
                 host: str = "127.0.0.1") -> AsyncIterator[TestClient[Any, Any]]:
    app = create_app(backend, fresh_metrics(), token=token, admin_token=admin_token,
                     clock=clock, stream_silences=stream_silences)
    async with TestClient(TestServer(app, host=host)) as client:
        yield client


async def outcome(client: TestClient[Any, Any], body: bytes,
                  headers: dict[str, str] | None = None) -> str:
    resp = await client.post("/api/v2/alerts", data=body, headers=headers)
    assert resp.status == 200, await resp.text()
    return str((await resp.json())["alerts"][0]["outcome"])


def test_a_silence_is_created_listed_and_expired_like_alertmanagers(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        backend = embedded_backend(tmp_path, fresh_metrics(), clock)
        async with server(backend, clock) as client:  # no token: a laptop, loopback
            resp = await client.post("/api/v2/silences", json=postable(
                eq("alertname", "DiskFull"), eq("env", "staging", equal=False),
                start=clock.now - 60))
            assert resp.status == 200, await resp.text()
            silence_id = (await resp.json())["silenceID"]
            pending = (await (await client.post("/api/v2/silences", json=postable(
                eq("alertname", "Later"), start=clock.now + 3600))).json())["silenceID"]

            listed = {s["id"]: s for s in await (await client.get("/api/v2/silences")).json()}
            assert listed[pending]["status"] == {"state": "pending"}
            got = await (await client.get(f"/api/v2/silence/{silence_id}")).json()
            assert got == listed[silence_id]
            assert got["status"] == {"state": "active"}
            assert got["matchers"] == [
                {"name": "alertname", "value": "DiskFull", "isRegex": False, "isEqual": True},
                {"name": "env", "value": "staging", "isRegex": False, "isEqual": False}]
            assert (got["createdBy"], got["comment"]) == ("alice", "db failover")
            assert parse_timestamp(got["endsAt"], "endsAt") == clock.now - 60 + 7200
            assert parse_timestamp(got["updatedAt"], "updatedAt") is not None
            assert await outcome(client, alert("DiskFull")) == "suppressed"

            clock.now += 600
            assert (await client.delete(f"/api/v2/silence/{silence_id}")).status == 200
            # expired, not deleted: still there, ended now
            got = await (await client.get(f"/api/v2/silence/{silence_id}")).json()
            assert got["status"] == {"state": "expired"}
            assert parse_timestamp(got["endsAt"], "endsAt") == clock.now
            assert await outcome(client, alert("DiskFull", "cache")) == "accepted"
            # expiring twice changes nothing
            assert (await client.delete(f"/api/v2/silence/{silence_id}")).status == 200
    asyncio.run(body())


def test_silences_are_filtered_as_alertmanager_filters_them(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        backend = embedded_backend(tmp_path, fresh_metrics(), clock)
        async with server(backend, clock) as client:
            for name, env in (("DiskFull", "prod"), ("DiskSlow", "staging"), ("Up", "prod")):
                resp = await client.post("/api/v2/silences", json=postable(
                    eq("alertname", name), eq("env", env), start=clock.now, comment=name))
                assert resp.status == 200

            async def query(*filters: str) -> list[str]:
                resp = await client.get("/api/v2/silences",
                                        params=[("filter", f) for f in filters])
                assert resp.status == 200, await resp.text()
                return sorted(s["comment"] for s in await resp.json())

            # what `amtool silence query 'alertname=~Disk.*' env=prod` sends
            assert await query('alertname=~"Disk.*"') == ["DiskFull", "DiskSlow"]
            assert await query('alertname=~"Disk.*"', 'env="prod"') == ["DiskFull"]
            assert await query('env!="prod"') == ["DiskSlow"]
            assert await query() == ["DiskFull", "DiskSlow", "Up"]
            resp = await client.get("/api/v2/silences", params={"filter": 'a=~"("'})
            assert resp.status == 400
    asyncio.run(body())


def test_update_and_unknown_ids(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        backend = embedded_backend(tmp_path, fresh_metrics(), clock)
        week = 7 * 86400.0
        backend.pipeline.add_silence(Silence("patch-tuesday", parse_matchers("team=db"),
                                             clock.now - 60, clock.now + 3600,
                                             kind="maintenance", repeat_every=week))
        async with server(backend, clock) as client:
            sid = (await (await client.post("/api/v2/silences", json=postable(
                eq("alertname", "X"), start=clock.now))).json())["silenceID"]
            # amtool silence update posts the silence with its id: updated in place
            resp = await client.post("/api/v2/silences", json=postable(
                eq("alertname", "X"), start=clock.now, id=sid, comment="longer", hours=4))
            assert (await resp.json()) == {"silenceID": sid}
            got = await (await client.get(f"/api/v2/silence/{sid}")).json()
            assert got["comment"] == "longer"
            assert len(await (await client.get("/api/v2/silences")).json()) == 1
            # an id that is not a silence: 404, nothing created
            resp = await client.post("/api/v2/silences", json=postable(
                eq("alertname", "X"), start=clock.now, id="nope"))
            assert resp.status == 404 and "nope" in await resp.json()
            for method in ("GET", "DELETE"):
                resp = await client.request(method, "/api/v2/silence/nope")
                assert resp.status == 404
                assert (await resp.json())["error"] == "NotFound"
            # a maintenance window is config: not listed, not changed through the API
            for method in ("GET", "DELETE"):
                resp = await client.request(method, "/api/v2/silence/patch-tuesday")
                assert resp.status == 404
            resp = await client.post("/api/v2/silences", json=postable(
                eq("alertname", "X"), start=clock.now, id="patch-tuesday"))
            assert resp.status == 404
            window = backend.pipeline.silences.get("patch-tuesday")
            assert window is not None and window.kind == "maintenance"
            assert window.repeat_every == week
            assert all(s["id"] != "patch-tuesday"
                       for s in await (await client.get("/api/v2/silences")).json())
    asyncio.run(body())


def test_a_silence_matching_everything_needs_force(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        backend = embedded_backend(tmp_path, fresh_metrics(), clock)
        async with server(backend, clock) as client:
            everything = postable(eq("alertname", ".+", regex=True),
                                  eq("job", "", equal=False), start=clock.now)
            resp = await client.post("/api/v2/silences", json=everything)
            assert resp.status == 400
            assert "matches every alert" in await resp.json()  # a JSON string, as amtool reads
            assert len(backend.pipeline.silences) == 0
            resp = await client.post("/api/v2/silences?force=true", json=everything)
            assert resp.status == 200
            # all matchers match the empty value: Alertmanager's own refusal, force or not
            resp = await client.post("/api/v2/silences?force=true", json=postable(
                eq("alertname", ".*", regex=True), start=clock.now))
            assert resp.status == 400 and "every alert" in await resp.json()
            # one real matcher is enough
            resp = await client.post("/api/v2/silences", json=postable(
                eq("alertname", ".+", regex=True), eq("service", "db"), start=clock.now))
            assert resp.status == 200
    asyncio.run(body())


def test_bad_silences_are_400_naming_the_problem(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        backend = embedded_backend(tmp_path, fresh_metrics(), clock)
        async with server(backend, clock) as client:
            cases: list[tuple[bytes, str]] = [
                (b"{nope", "not JSON"),
                (orjson.dumps({"matchers": [eq("a", "b")], "startsAt": "2027-01-15T08:00:00Z",
                               "createdBy": "x"}), "endsAt"),
                (orjson.dumps(postable(eq("a", "b"), start=clock.now, hours=-1)), "endsAt"),
                (orjson.dumps(postable({"name": "a"}, start=clock.now)), "matchers[0]"),
                (orjson.dumps([]), "silence"),
            ]
            for data, named in cases:
                resp = await client.post("/api/v2/silences", data=data)
                assert resp.status == 400, data
                assert named in await resp.json(), (data, await resp.text())
            assert len(backend.pipeline.silences) == 0
    asyncio.run(body())


def lan_address() -> str | None:
    """This machine's address on its network (not loopback), if it has one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 9))  # no packet is sent: only picks the route
            address = str(s.getsockname()[0])
        except OSError:
            return None
    return None if address.startswith("127.") else address


def test_silences_have_their_own_permission(tmp_path: Path) -> None:
    new = postable(eq("alertname", "X"), start=1_800_000_000.0)

    async def body() -> None:
        clock = Clock()
        # both tokens: the senders' token reads but never writes
        backend = embedded_backend(tmp_path / "both", fresh_metrics(), clock)
        async with server(backend, clock, token="sender-token",
                          admin_token="admin-token") as client:
            resp = await client.post("/api/v2/silences", json=new, headers=SENDER)
            assert resp.status == 403 and "admin_token" in (await resp.json())["message"]
            resp = await client.post("/api/v2/silences", json=new)
            assert resp.status == 401 and resp.headers["WWW-Authenticate"] == "Bearer"
            assert len(backend.pipeline.silences) == 0
            resp = await client.post("/api/v2/silences", json=new, headers=ADMIN)
            sid = (await resp.json())["silenceID"]
            assert (await client.get("/api/v2/silences", headers=SENDER)).status == 200
            assert (await client.get("/api/v2/silences")).status == 401
            assert (await client.delete(f"/api/v2/silence/{sid}",
                                        headers=SENDER)).status == 403
            assert (await client.delete(f"/api/v2/silence/{sid}", headers=ADMIN)).status == 200

        # a sender token and no admin token: writes refused, naming the setting
        backend = embedded_backend(tmp_path / "sender", fresh_metrics(), clock)
        async with server(backend, clock, token="sender-token") as client:
            resp = await client.post("/api/v2/silences", json=new, headers=SENDER)
            assert resp.status == 403
            assert "http.admin_token" in (await resp.json())["message"]
            assert (await client.get("/api/v2/silences", headers=SENDER)).status == 200

        # only an admin token: reads need it too
        backend = embedded_backend(tmp_path / "admin", fresh_metrics(), clock)
        async with server(backend, clock, admin_token="admin-token") as client:
            assert (await client.get("/api/v2/silences")).status == 401
            assert (await client.get("/api/v2/silences", headers=ADMIN)).status == 200
            assert (await client.post("/api/v2/silences", json=new,
                                      headers=ADMIN)).status == 200

        # no token at all: silences are written from this machine only
        lan = lan_address()
        if lan is None:
            pytest.skip("no non-loopback address to connect from")
        backend = embedded_backend(tmp_path / "none", fresh_metrics(), clock)
        async with server(backend, clock, host=lan) as client:
            resp = await client.post("/api/v2/silences", json=new)
            assert resp.status == 403
            assert "http.admin_token" in (await resp.json())["message"]
            assert (await client.get("/api/v2/silences")).status == 200
            assert len(backend.pipeline.silences) == 0
    asyncio.run(body())


SMUGGLED = postable(eq("service", "db"), start=1_800_000_000.0 - 60, hours=24 * 365,
                    comment="mute it all")


def smuggled_bodies() -> list[bytes]:
    plain = orjson.dumps(SMUGGLED)
    return [
        plain,
        # the envelope the receiver itself writes, which the pipeline unwraps
        orjson.dumps({"received_at": "2027-01-15T08:00:00Z", "payload": SMUGGLED}),
        # the key written with a JSON escape: the same object once decoded
        plain.replace(b'"matchers"', b'"\\u006datchers"'),
    ]


def test_alert_senders_cannot_silence(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        backend = embedded_backend(tmp_path, fresh_metrics(), clock)
        # with sender tokens the admin token is not one (401); without, it is no pass either
        for token, headers in (("sender-token", SENDER), (None, ADMIN)):
            async with server(backend, clock, token=token, admin_token="admin-token") as client:
                for data in smuggled_bodies():
                    for path in ("/api/v2/alerts", "/api/v1/alerts", "/webhook"):
                        resp = await client.post(path, data=data, headers=headers)
                        answer = await resp.json()
                        assert resp.status == 403, (path, data, answer)
                        assert answer["error"] == "UntrustedSilence"
                        assert "/api/v2/silences" in answer["message"]
        assert len(backend.pipeline.silences) == 0
        async with server(backend, clock, token="sender-token") as client:
            assert await outcome(client, alert("DiskFull"), SENDER) == "accepted"
            # an alert that only mentions the word is an alert
            resp = await client.post("/api/v2/alerts", headers=SENDER, data=orjson.dumps(
                [{"labels": {"alertname": "matchers", "createdBy": "\\u0041"}}]))
            assert resp.status == 200
        dead = records(tmp_path / "dead.jsonl")
        assert len(dead) == 3 * 3 * 2
        assert all(d["error"] == "UntrustedSilence" and "mute it all" in d["raw"]
                   for d in dead)
    asyncio.run(body())


def test_a_trusted_stream_may_carry_silences(tmp_path: Path) -> None:
    async def body() -> None:
        clock = Clock()
        backend = embedded_backend(tmp_path, fresh_metrics(), clock)
        async with server(backend, clock, stream_silences=True) as client:
            resp = await client.post("/api/v1/alerts", data=orjson.dumps(SMUGGLED))
            assert resp.status == 200
            assert len(backend.pipeline.silences) == 1
            assert await outcome(client, alert("DiskFull")) == "suppressed"
    asyncio.run(body())


def test_the_pipeline_dead_letters_an_untrusted_silence() -> None:
    """What ``triage serve`` sets (``http.stream_silences`` false) behind the door's check:
    the pipeline itself never takes a silence from an untrusted input."""
    raw = orjson.dumps(SMUGGLED)
    trusting = Pipeline()
    assert trusting.process(raw) == [] and len(trusting.silences) == 1
    wary = Pipeline()
    wary.trust_stream_silences = False
    for payload in (raw, orjson.dumps({"received_at": "2027-01-15T08:00:00Z",
                                       "payload": SMUGGLED})):
        [failed] = wary.process(payload)
        assert isinstance(failed, Failed) and failed.error == "UntrustedSilence"
        assert failed.raw == payload.decode()  # dead-lettered as it came
        assert "/api/v2/silences" in failed.reason
    assert len(wary.silences) == 0 and not wary.silences_changed
    assert wary.counts["in"] == wary.counts["failed"] == 2


def test_kafka_mode_answers_501(tmp_path: Path) -> None:
    async def body() -> None:
        clock, producer = Clock(), StubProducer()
        async with server(kafka_backend(producer, fresh_metrics(), clock), clock) as client:
            for method, path in (("GET", "/api/v2/silences"), ("POST", "/api/v2/silences"),
                                 ("GET", "/api/v2/silence/x"), ("DELETE", "/api/v2/silence/x"),
                                 ("GET", "/api/v2/alerts"), ("GET", "/api/v2/alerts/groups"),
                                 ("GET", "/api/v2/status")):
                resp = await client.request(method, path, json=SMUGGLED)
                assert resp.status == 501, (method, path)
                assert "workers" in (await resp.json())["message"]
            # and a silence sent as an alert never reaches the workers
            resp = await client.post("/api/v1/alerts", data=orjson.dumps(SMUGGLED))
            assert resp.status == 403
        assert [topic for topic, _, _ in producer.sent] == ["alerts.deadletter"]
    asyncio.run(body())


CONFIG = "http:\n  token: sender-token\n  admin_token: admin-token\n"


def test_silences_survive_a_restart_and_expire_after_it(tmp_path: Path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}/api/v2"
    new = orjson.dumps(postable(eq("alertname", "DiskFull"), start=time.time() - 60))
    with triage_serve(tmp_path, port=port, config=CONFIG):
        status, answer = http("POST", f"{base}/silences", new, headers=ADMIN)
        assert status == 200, answer
        sid = orjson.loads(answer)["silenceID"]
        for data in smuggled_bodies():
            assert http("POST", f"{base}/alerts", data, headers=SENDER)[0] == 403
    with triage_serve(tmp_path, port=port, config=CONFIG):
        status, answer = http("GET", f"{base}/silences", headers=SENDER)
        assert [s["id"] for s in orjson.loads(answer)] == [sid]  # nothing smuggled in
        assert orjson.loads(answer)[0]["status"]["state"] == "active"
        status, answer = http("POST", f"{base}/alerts", alert("DiskFull"), headers=SENDER)
        assert orjson.loads(answer)["alerts"][0]["outcome"] == "suppressed"
        assert http("DELETE", f"{base}/silence/{sid}", headers=ADMIN)[0] == 200
    with triage_serve(tmp_path, port=port, config=CONFIG):
        status, answer = http("GET", f"{base}/silence/{sid}", headers=SENDER)
        assert status == 200 and orjson.loads(answer)["status"]["state"] == "expired"
        status, answer = http("POST", f"{base}/alerts", alert("DiskFull", "cache"),
                              headers=SENDER)
        assert orjson.loads(answer)["alerts"][0]["outcome"] == "accepted"
