"""The desk's lifecycle events: every change to an incident queued in the same transaction,
each a valid ``schemas/lifecycle-event.schema.json`` object, in order per incident."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

from tests.desk.test_updates import p1_events
from triage.desk import changes as ch
from triage.desk import lifecycle as lc
from triage.desk import mitigation as mt
from triage.desk import updates as up
from triage.desk.events import LIFECYCLE_ROUTE
from triage.desk.store import DeskStore

SCHEMA = orjson.loads((Path(__file__).resolve().parents[2] / "schemas" /
                       "lifecycle-event.schema.json").read_bytes())


def test_every_change_to_an_incident_is_a_valid_lifecycle_event_in_order(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    with DeskStore(desk_url, lifecycle=True) as store:
        evs = p1_events(events)
        store.ingest(evs)
        iid = evs[0]["incident"]["id"]
        row = store.incident(iid)
        assert row is not None
        t = row["triggered_at"]
        steps = [
            lambda r, log: lc.set_status(r, log, "acknowledged", actor="ana", at=t + 60),
            lambda r, log: lc.add_entry(r, log, "hypothesis", "the deploy", actor="ana",
                                        at=t + 70),
            lambda r, log: lc.judge(r, log, log[-1]["seq"], "confirmed", actor="bo",
                                    at=t + 80),
            lambda r, log: lc.pin(r, log, log[-2]["seq"], actor="bo", at=t + 81),
            lambda r, log: lc.assume_role(r, log, "incident_commander", "ana", actor="ana",
                                          at=t + 90),
            lambda r, log: lc.renounce_role(r, log, "incident_commander", actor="ana",
                                            at=t + 95),
            lambda r, log: up.send_update(r, log, "internal", "IMPACT: ...", actor="ana",
                                          at=t + 100),
            lambda r, log: up.remind(r, log, now=t + 4000),
            lambda r, log: mt.add_mitigation(r, log, "roll back", actor="ana", at=t + 110,
                                             manual="errors down"),
            lambda r, log: mt.check(r, log, log[-1]["seq"], True, actor="bo", at=t + 120),
            lambda r, log: mt.set_outcome(r, log, log[-2]["seq"], "worked", actor="bo",
                                          at=t + 130),
            lambda r, log: ch.record_change(r, log, service="cart", kind="config", what="x",
                                            why="y", risk="low", rollback="z", actor="ana",
                                            at=t + 140, approver="bo"),
            lambda r, log: ch.request_access(r, log, who="ana", resource="db", level="read",
                                             why="look", minutes=1, actor="ana", at=t + 150),
            lambda r, log: ch.decide_access(r, log, log[-1]["seq"], True, approver="bo",
                                            at=t + 151),
            lambda r, log: ch.expire_access(r, log, now=t + 300),
        ]
        for step in steps:
            assert store.act(iid, step), step
        log = store.log(iid)
        queued = [d["payload"] for d in store.due(1e12, 10_000, routes=[LIFECYCLE_ROUTE])]
    mine = [e for e in queued if e["incident"]["id"] == iid]
    assert [e["event_id"] for e in mine] == [f"{iid}:{e['seq']}" for e in log]
    validator = Draft202012Validator(SCHEMA)
    for event in queued:
        assert not list(validator.iter_errors(event)), event
    assert {e["type"] for e in mine} == {e["type"] for e in log}
    assert len({e["type"] for e in mine}) >= 18
    assert mine[-1]["incident"]["status"] == "acknowledged"
