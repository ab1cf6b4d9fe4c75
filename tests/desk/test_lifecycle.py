"""What responders do to an incident on the desk: status moves checked for order with a time
per step, corrections and reopenings with reasons, a typed timeline with pins and judged
hypotheses, and time-bounded roles with handoffs; on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from triage.desk import lifecycle as lc
from triage.desk.rules import RuleError
from triage.desk.store import DeskStore


def open_incident(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The events of one incident up to just before triage resolves it (still firing)."""
    first = events[0]["incident"]["id"]
    mine = [e for e in events if e["incident"]["id"] == first]
    return [e for e in mine if e["type"] != "incident.resolved"][:2]


@pytest.fixture
def desk(desk_url: str, events: list[dict[str, Any]]) -> tuple[DeskStore, str, float]:
    store = DeskStore(desk_url)
    evs = open_incident(events)
    store.ingest(evs)
    iid = evs[0]["incident"]["id"]
    row = store.incident(iid)
    assert row is not None and row["status"] == "triggered"
    return store, iid, row["triggered_at"]


def status(to: str, at: float, actor: str = "ana", **kw: Any) -> Any:
    return lambda row, log: lc.set_status(row, log, to, actor=actor, at=at, **kw)


def test_a_status_moves_forward_each_step_with_its_own_time(
        desk: tuple[DeskStore, str, float]) -> None:
    store, iid, t0 = desk
    store.act(iid, status("acknowledged", t0 + 60))
    store.act(iid, status("investigating", t0 + 120))
    store.act(iid, status("mitigated", t0 + 900))  # identified skipped: it stays empty
    row = store.incident(iid)
    assert row is not None
    assert (row["status"], row["acknowledged_at"], row["investigating_at"],
            row["identified_at"], row["mitigated_at"]) == (
        "mitigated", t0 + 60, t0 + 120, None, t0 + 900)
    with pytest.raises(RuleError, match="before mitigated"):
        store.act(iid, status("investigating", t0 + 950))  # back, without saying so
    with pytest.raises(RuleError, match="reason"):
        store.act(iid, status("investigating", t0 + 950, correct=True))
    with pytest.raises(RuleError, match="earlier than mitigated"):
        store.act(iid, status("resolved", t0 + 800))  # a step before the one it follows
    with pytest.raises(RuleError, match="closed only follows resolved"):
        store.act(iid, status("closed", t0 + 1000))
    store.act(iid, status("identified", t0 + 950, correct=True, reason="the fix did not hold"))
    row = store.incident(iid)
    assert row is not None and (row["status"], row["identified_at"], row["mitigated_at"]) == (
        "identified", None, None)
    changes = [(e["body"]["to"], e["body"].get("kind")) for e in store.log(iid)
               if e["type"] == "status.changed"]
    assert changes[-1] == ("identified", "corrected")


def test_a_resolved_incident_reopens_with_a_reason_and_a_closed_one_never(
        desk: tuple[DeskStore, str, float]) -> None:
    store, iid, t0 = desk
    store.act(iid, status("acknowledged", t0 + 60))
    store.act(iid, status("resolved", t0 + 600))
    with pytest.raises(RuleError, match="reopened incident needs a reason"):
        store.act(iid, status("investigating", t0 + 700))
    with pytest.raises(RuleError, match="7 days"):
        store.act(iid, status("investigating", t0 + 600 + 8 * 86400, reason="back"))
    store.act(iid, status("investigating", t0 + 700, reason="errors are back"))
    store.act(iid, status("resolved", t0 + 800))
    store.act(iid, status("closed", t0 + 900))
    with pytest.raises(RuleError, match="closed incident does not reopen"):
        store.act(iid, status("investigating", t0 + 1000, reason="again"))
    with pytest.raises(RuleError, match="closed"):
        store.act(iid, lambda row, log: lc.add_entry(row, log, "observation", "late",
                                                     actor="ana", at=t0 + 1000))


def test_the_timeline_is_typed_with_pins_and_judged_hypotheses(
        desk: tuple[DeskStore, str, float]) -> None:
    store, iid, t0 = desk

    def post(kind: str, text: str, **kw: Any) -> int:
        rows = store.act(iid, lambda row, log: lc.add_entry(row, log, kind, text, actor="bo",
                                                            at=t0 + 100, **kw))
        return int(rows[0]["seq"])

    h = post("hypothesis", "cart latency drives checkout errors")
    n = post("negative_finding", "payments is not it: error rate at baseline")
    post("decision", "roll back deploy-8812", pinned=True)
    store.act(iid, lambda row, log: lc.judge(row, log, h, "confirmed", actor="ana",
                                             at=t0 + 200, reason="rollback fixed it"))
    store.act(iid, lambda row, log: lc.pin(row, log, n, actor="ana", at=t0 + 210))
    with pytest.raises(RuleError, match="not a hypothesis"):
        store.act(iid, lambda row, log: lc.judge(row, log, n, "refuted", actor="ana",
                                                 at=t0 + 220))
    with pytest.raises(RuleError, match="type"):
        store.act(iid, lambda row, log: lc.add_entry(row, log, "alert", "fake",
                                                     actor="ana", at=t0))
    with pytest.raises(RuleError, match="text"):
        store.act(iid, lambda row, log: lc.add_entry(row, log, "observation", "  ",
                                                     actor="ana", at=t0))
    timeline = store.timeline(iid)
    kinds = [e["type"] for e in timeline]
    assert kinds[:2] == ["alert", "alert"]  # triage's events landed on it by themselves
    assert kinds[2:] == ["hypothesis", "negative_finding", "decision"]
    entries = {e["seq"]: e for e in timeline}
    assert entries[h]["state"] == "confirmed" and entries[n]["pinned"]
    assert all(e["author"] and e["at"] for e in timeline)
    assert set(kinds) <= set(lc.ENTRY_TYPES)


def test_roles_are_time_bounded_and_a_handoff_carries_its_note(
        desk: tuple[DeskStore, str, float]) -> None:
    store, iid, t0 = desk

    def give(person: str, at: float, note: str | None = None) -> list[dict[str, Any]]:
        return store.act(iid, lambda row, log: lc.assume_role(
            row, log, "incident_commander", person, actor="ana", at=at, note=note))

    give("ana", t0 + 60)
    row = store.incident(iid)
    assert row is not None and row["commander"] == "ana"
    rows = give("bo", t0 + 3600, note="end of shift: rollback in progress")
    assert [(r["type"], r["body"]["person"]) for r in rows] == [
        ("role.renounced", "ana"), ("role.assumed", "bo")]
    assert all(r["body"]["note"] == "end of shift: rollback in progress" for r in rows)
    with pytest.raises(RuleError, match="holds incident_commander already"):
        give("bo", t0 + 3700)
    with pytest.raises(RuleError, match="role"):
        store.act(iid, lambda row, log: lc.assume_role(row, log, "hero", "x", actor="a",
                                                       at=t0))
    store.act(iid, lambda row, log: lc.renounce_role(row, log, "incident_commander",
                                                     actor="bo", at=t0 + 7200))
    row = store.incident(iid)
    assert row is not None and row["commander"] is None
    spans = [(e["type"], e["body"]["person"], e["at"]) for e in store.log(iid)
             if e["type"].startswith("role.")]
    assert spans == [("role.assumed", "ana", t0 + 60), ("role.renounced", "ana", t0 + 3600),
                     ("role.assumed", "bo", t0 + 3600), ("role.renounced", "bo", t0 + 7200)]


def test_two_responders_acknowledging_at_once_one_wins_the_other_is_told(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    """Raced on every incident of a storm (on SQLite, reads outside the write's snapshot
    once let both acknowledgements through: the first one's row, read too early)."""
    created = [e for e in events if e["type"] == "incident.created"]
    with DeskStore(desk_url) as store:
        store.ingest(created)
        for event in created:
            iid = event["incident"]["id"]
            outcomes: list[str] = []
            barrier = threading.Barrier(2)

            def ack(who: str, iid: str = iid, outcomes: list[str] = outcomes,
                    barrier: threading.Barrier = barrier) -> None:
                barrier.wait()
                try:
                    store.act(iid, status("acknowledged", 2e9, actor=who), retries=20)
                    outcomes.append("ok")
                except RuleError as exc:
                    outcomes.append(str(exc))

            threads = [threading.Thread(target=ack, args=(w,)) for w in ("ana", "bo")]
            for t in threads:
                t.start()
            for t in threads:
                t.join(60)
            assert sorted(outcomes) == ["ok", "status: the incident is acknowledged already"]
            acks = [e for e in store.log(iid) if e["type"] == "status.changed"]
            assert len(acks) == 1


def test_triage_keeps_updating_what_it_knows_without_undoing_a_responder(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    """Acknowledged by a person: triage's resolution no longer resolves it on the desk."""
    evs = open_incident(events)
    inc = evs[0]["incident"]
    resolved = {**evs[0], "event_id": inc["id"] + ":900", "type": "incident.resolved",
                "incident": {**inc, "sequence": 900, "status": "resolved", "priority": "P1"}}
    with DeskStore(desk_url) as store:
        store.ingest(evs)
        t0 = store.incident(inc["id"])["triggered_at"]  # type: ignore[index]
        store.act(inc["id"], status("acknowledged", t0 + 60))
        store.ingest([resolved])
        row = store.incident(inc["id"])
        assert row is not None
        assert (row["status"], row["firing"], row["priority"]) == ("acknowledged", False, "P1")


def test_a_p1_or_p2_without_a_commander_is_flagged_after_ten_minutes(
        desk: tuple[DeskStore, str, float]) -> None:
    store, iid, t0 = desk
    row = store.incident(iid)
    assert row is not None
    flagged = [r["id"] for r in store.unattended(t0 + 601, priorities=[row["priority"]])]
    assert flagged == [iid]
    assert store.unattended(t0 + 599, priorities=[row["priority"]]) == []
    assert store.unattended(t0 + 601, priorities=["P9"]) == []
    store.act(iid, lambda row, log: lc.assume_role(row, log, "incident_commander",
                                                   row["owner_person"] or "ana",
                                                   actor="ana", at=t0 + 700))
    assert store.unattended(t0 + 900, priorities=[row["priority"]]) == []
