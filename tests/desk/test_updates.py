"""Status updates per audience through the desk's API, on SQLite and PostgreSQL: templates,
no internal name in a customer update, the comms log, and the cadence's reminders with
their metric."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp.test_utils import TestClient, TestServer

from tests.desk.test_api import ADMIN, ANA, TOKENS, VIEWER, ndjson
from triage.desk.api import API, create_desk_app
from triage.desk.store import DeskStore
from triage.desk.updates import internal_names


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def p1_events(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A P1 incident, still firing: the first incident's events before triage resolved it,
    made P1."""
    first = events[0]["incident"]["id"]
    mine = [e for e in events if e["incident"]["id"] == first and e["type"] != "incident.resolved"]
    return [{**e, "incident": {**e["incident"], "priority": "P1"}} for e in mine[:2]]


def test_updates_per_audience_the_comms_log_and_the_cadence(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    evs = p1_events(events)
    iid = evs[0]["incident"]["id"]
    clock = Clock()
    store = DeskStore(desk_url)
    app = create_desk_app(store, TOKENS, clock=clock, remind_every=None)
    api = app[API]

    async def main() -> None:
        async with TestClient(TestServer(app)) as c:
            await c.post("/api/v1/events", data=ndjson(evs), headers=ADMIN)
            t0 = (await (await c.get(f"/api/v1/incidents/{iid}", headers=VIEWER)).json())
            row = store.incident(iid)
            assert row is not None
            start = row["triggered_at"]
            clock.now = start + 600
            url = f"/api/v1/incidents/{iid}/updates"

            drafts = {}
            for audience in ("responders", "internal", "executive", "customers"):
                r = await c.get(url + f"/draft?audience={audience}", headers=VIEWER)
                assert r.status == 200
                drafts[audience] = (await r.json())["text"]
            assert all(k in drafts["responders"] for k in ("CONDITIONS:", "ACTIONS:", "NEEDS:"))
            assert all(k in drafts["internal"] for k in ("IMPACT:", "STATUS:", "NEXT UPDATE:"))
            names = internal_names(row, store.log(iid))
            assert names and not [n for n in names if n.lower() in drafts["customers"].lower()]
            assert t0["next_update_due"] is not None  # a P1: every 30 minutes

            # a customer update naming a service is refused, naming the word
            service = row["services"][0]
            r = await c.post(url, headers=ANA, json={
                "audience": "customers", "text": f"{service} is slow for some users"})
            body = await r.json()
            assert r.status == 422 and body["field"] == "text" and service in body["reason"]
            r = await c.post(url, headers=ANA, json={"audience": "board", "text": "x"})
            assert r.status == 422 and (await r.json())["field"] == "audience"

            # no update for 30 minutes: one reminder per due time, and the gauge
            clock.now = start + 1799
            assert await api.remind() == []
            clock.now = start + 1801
            assert await api.remind() == [iid]
            assert await api.remind() == [iid]  # still overdue, not reminded twice
            reminders = [e for e in store.log(iid) if e["type"] == "update.overdue"]
            assert len(reminders) == 1 and reminders[0]["body"]["due"] == start + 1800
            metrics = await (await c.get("/metrics")).text()
            assert "triage_desk_updates_overdue 1.0" in metrics

            # an update is sent: recorded in the comms log, and the next is due 30 min later
            clock.now = start + 1900
            r = await c.post(url, headers=ANA, json={"audience": "customers",
                                                     "text": drafts["customers"]})
            assert r.status == 201
            got = await (await c.get(f"/api/v1/incidents/{iid}", headers=VIEWER)).json()
            assert [(m["audience"], m["channel"], m["by"]) for m in got["comms"]] == [
                ("customers", "desk", "ana")]
            assert got["comms"][0]["text"] == drafts["customers"]
            clock.now = start + 2000
            assert await api.remind() == []
            metrics = await (await c.get("/metrics")).text()
            assert "triage_desk_updates_overdue 0.0" in metrics
            assert any(e["type"] == "status_update" and e["text"].startswith("to customers")
                       for e in got["timeline"])
    try:
        asyncio.run(main())
    finally:
        store.close()
