"""Emergency changes and just-in-time access on the desk, through its API, on SQLite and
PostgreSQL; and an emergency change written back as a change record that triage then
names as a suspect."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from tests.desk.test_api import ADMIN, ANA, TOKENS, VIEWER, ndjson
from tests.desk.test_updates import Clock, p1_events
from triage.core.changes import change_from_dict
from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.triage import Triage
from triage.desk.api import API, create_desk_app
from triage.desk.auth import Token
from triage.desk.changes import change_record
from triage.desk.notify import Route, deliveries
from triage.desk.store import DeskStore

BO = {"Authorization": "Bearer responder-token-0002"}
TOKENS_2 = [*TOKENS, Token("bo", "responder-token-0002", "responder")]


def run(desk_url: str, events: list[dict[str, Any]], body: Any) -> None:
    evs = p1_events(events)
    clock = Clock()
    store = DeskStore(desk_url)
    app = create_desk_app(store, TOKENS_2, clock=clock, remind_every=None)

    async def main() -> None:
        async with TestClient(TestServer(app)) as c:
            await c.post("/api/v1/events", data=ndjson(evs), headers=ADMIN)
            row = store.incident(evs[0]["incident"]["id"])
            assert row is not None
            clock.now = row["triggered_at"] + 300
            await body(c, store, app, clock, row)
    try:
        asyncio.run(main())
    finally:
        store.close()


def test_emergency_changes_need_a_second_person_when_risky_and_can_be_retro_approved(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    async def body(c: TestClient[Any, Any], store: DeskStore, app: Any, clock: Clock,
                   row: dict[str, Any]) -> None:
        url = f"/api/v1/incidents/{row['id']}/changes"
        change = {"service": "cartservice", "kind": "config", "what": "pool 50 → 200",
                  "why": "connections exhausted", "risk": "high",
                  "rollback": "set the pool back to 50"}
        r = await c.post(url, headers=ANA, json={**change, "approver": "ana"})
        assert r.status == 409 and (await r.json())["field"] == "approver"
        r = await c.post(url, headers=ANA, json={**change, "rollback": ""})
        assert r.status == 422 and (await r.json())["field"] == "rollback"
        r = await c.post(url, headers=ANA, json=change)  # made now, approved later
        assert r.status == 201
        seq = next(e["seq"] for e in (await r.json())["appended"] if e["type"] == "change")
        r = await c.post(f"{url}/{seq}/approval", headers=ANA, json={})
        assert r.status == 409  # its maker may not approve a high-risk change
        clock.now += 600
        r = await c.post(f"{url}/{seq}/approval", headers=BO, json={})
        assert r.status == 201
        r = await c.post(f"{url}/{seq}/approval", headers=BO, json={})
        assert r.status == 409  # approved already
        got = await (await c.get(f"/api/v1/incidents/{row['id']}", headers=VIEWER)).json()
        [made] = got["changes"]
        assert (made["by"], made["approver"], made["retro"]) == ("ana", "bo", True)
        assert made["id"].startswith("emergency-")
        assert {"change"} <= {e["type"] for e in got["timeline"]}
    run(desk_url, events, body)


def test_access_is_granted_by_another_person_until_it_expires(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    async def body(c: TestClient[Any, Any], store: DeskStore, app: Any, clock: Clock,
                   row: dict[str, Any]) -> None:
        url = f"/api/v1/incidents/{row['id']}/access"
        ask = {"resource": "prod-db-cart", "level": "admin", "why": "kill runaway queries",
               "minutes": 30}
        r = await c.post(url, headers=ANA, json={**ask, "minutes": 9999})
        assert r.status == 422 and (await r.json())["field"] == "minutes"
        r = await c.post(url, headers=ANA, json=ask)
        seq = (await r.json())["appended"][0]["seq"]
        r = await c.post(f"{url}/{seq}/decision", headers=ANA, json={"approve": True})
        assert r.status == 409  # not by who asked
        r = await c.post(f"{url}/{seq}/decision", headers=BO, json={"approve": "yes"})
        assert r.status == 422
        r = await c.post(f"{url}/{seq}/decision", headers=BO, json={"approve": True})
        assert r.status == 201
        granted_at = clock.now
        clock.now = granted_at + 29 * 60
        await app[API].remind()
        got = await (await c.get(f"/api/v1/incidents/{row['id']}", headers=VIEWER)).json()
        assert [(a["state"], a["who"], a["decided_by"]) for a in got["access"]] == [
            ("granted", "ana", "bo")]
        clock.now = granted_at + 31 * 60
        await app[API].remind()  # the desk's pass expires it
        got = await (await c.get(f"/api/v1/incidents/{row['id']}", headers=VIEWER)).json()
        [grant] = got["access"]
        assert grant["state"] == "expired"
        r = await c.post(f"{url}/{seq}/revoke", headers=BO, json={})
        assert r.status == 409  # nothing left to revoke
        trail = [e["text"] for e in got["timeline"] if e["type"] == "access_grant"]
        assert len(trail) == 3 and "expired" in trail[-1]
        # a second request, denied; a third, granted and revoked early
        for approve, then in ((False, None), (True, "revoke")):
            r = await c.post(url, headers=ANA, json=ask)
            s2 = (await r.json())["appended"][0]["seq"]
            await c.post(f"{url}/{s2}/decision", headers=BO, json={"approve": approve})
            if then:
                assert (await c.post(f"{url}/{s2}/revoke", headers=BO,
                                     json={"reason": "done"})).status == 201
        got = await (await c.get(f"/api/v1/incidents/{row['id']}", headers=VIEWER)).json()
        assert [a["state"] for a in got["access"]] == ["expired", "denied", "revoked"]
    run(desk_url, events, body)


def test_an_emergency_change_written_back_becomes_triage_s_suspect(
        events: list[dict[str, Any]], tmp_path: Any) -> None:
    """The change record a ``change`` route delivers is one triage reads, and an incident
    on that service afterwards names it among its suspect changes."""
    store = DeskStore(f"sqlite:///{tmp_path / 'desk.db'}")
    evs = p1_events(events)
    store.ingest(evs)
    iid = evs[0]["incident"]["id"]
    row = store.incident(iid)
    assert row is not None
    from triage.desk.changes import record_change
    rows = store.act(iid, lambda r, log: record_change(
        r, log, service="svc-07", kind="config", what="pool to 200", why="exhausted",
        risk="low", rollback="pool to 50", actor="ana", at=row["triggered_at"] + 60))
    route = Route("triage", "http://triage:8080/api/v1/alerts", "change", kinds=("change",))
    [delivery] = deliveries([route], row, rows, now=0.0)
    assert delivery["payload"] == change_record(row, rows[0])
    record = change_from_dict(delivery["payload"])  # triage's own reader takes it
    t = Triage(Pipeline(), IncidentEngine())
    at = record.at + 120
    t.process(delivery["payload"])
    created = []
    for i in range(3):
        line = {"alertname": f"Errors{i}", "service": "svc-07", "severity": "critical",
                "at": at + i}
        created += [e for e in t.process(line).events if e["type"] == "incident.created"]
    created += [e for e in t.tick(at + 600).events if e["type"] == "incident.created"]
    assert created
    suspects = [s["id"] for s in created[0]["incident"]["suspect_changes"]]
    assert record.id in suspects
    store.close()
