"""Notifications to webhook receivers, on SQLite and PostgreSQL: routed by priority and
audience, in the three formats, retried with backoff, dead-lettered on a refusal, and every
attempt in the incident's log (the comms log)."""

from __future__ import annotations

import asyncio
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestServer

from tests.desk.test_updates import p1_events
from triage.desk import lifecycle as lc
from triage.desk import updates
from triage.desk.dispatch import Dispatcher
from triage.desk.notify import BACKOFF, Route
from triage.desk.store import DeskStore


class Receivers:
    """Three webhook receivers: one that takes everything, one that fails twice with 500
    first, one that refuses (400)."""

    def __init__(self) -> None:
        self.got: dict[str, list[dict[str, Any]]] = {"json": [], "slack": [], "am": []}
        self.slack_failures = 2

    def app(self) -> web.Application:
        async def take(request: web.Request) -> web.Response:
            name = request.match_info["name"]
            if name == "slack" and self.slack_failures:
                self.slack_failures -= 1
                return web.Response(status=500, text="try later")
            if name == "am":
                return web.Response(status=400, text="unknown receiver")
            self.got[name].append(await request.json())
            return web.Response(text="ok")

        app = web.Application()
        app.router.add_post("/{name}", take)
        return app


def test_deliveries_are_routed_retried_and_dead_lettered_with_every_attempt_logged(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    evs = p1_events(events)
    iid = evs[0]["incident"]["id"]
    receivers = Receivers()

    async def main() -> None:
        async with TestServer(receivers.app()) as server:
            base = str(server.make_url(""))
            routes = [
                Route("everything", base + "/json"),
                Route("slack-p1", base + "/slack", "slack", priorities=("P1",),
                      kinds=("triggered", "update"), audiences=("responders",)),
                Route("tickets", base + "/am", "alertmanager", kinds=("triggered",)),
                Route("p4-only", base + "/json", priorities=("P4",)),
            ]
            now = [1_800_000_000.0]
            store = DeskStore(desk_url, routes=routes, now=lambda: now[0])
            try:
                store.ingest(evs)
                store.act(iid, lambda r, log: lc.set_status(r, log, "acknowledged",
                                                            actor="ana", at=now[0]))
                for audience in ("responders", "customers"):
                    store.act(iid, lambda r, log, a=audience: updates.send_update(
                        r, log, a, "we are on it", actor="ana", at=now[0]))
                dispatcher = Dispatcher(store, routes, lambda: now[0])
                first = await dispatcher.run_once()
                # everything: triggered, status, 2 updates (4 sent); slack: triggered and
                # the responders update fail once (pending); tickets: refused at once (dead)
                assert first == {"sent": 4, "pending": 2, "dead": 1}
                assert await dispatcher.run_once() == {"sent": 0, "pending": 0, "dead": 0}
                now[0] += BACKOFF  # the retry is due
                assert await dispatcher.run_once() == {"sent": 2, "pending": 0, "dead": 0}
                log = store.log(iid)
            finally:
                store.close()

        kinds = [p["kind"] for p in receivers.got["json"]]
        assert sorted(kinds) == ["status", "triggered", "update", "update"]
        assert all(p["incident"]["id"] == iid for p in receivers.got["json"])
        slack = [p["text"] for p in receivers.got["slack"]]
        assert len(slack) == 2 and any("update to responders" in t for t in slack)
        attempts = [e["body"] for e in log if e["type"] == "notify.attempt"]
        assert len(attempts) == 4 + 2 + 1 + 2
        dead = [e["body"] for e in log if e["type"] == "notify.dead"]
        assert len(dead) == 1 and dead[0]["route"] == "tickets" and dead[0]["status"] == 400
        assert dead[0]["payload"]["version"] == "4" and dead[0]["error"] == "unknown receiver"
        comms = updates.comms_log(log)
        responders = next(m for m in comms if m["audience"] == "responders")
        outcomes = sorted((d["route"], d["attempt"], d["outcome"])
                          for d in responders["deliveries"])
        assert outcomes == [("everything", 1, "sent"), ("slack-p1", 1, "pending"),
                            ("slack-p1", 2, "sent")]
    asyncio.run(main())
