"""The desk's store, on SQLite and on a real PostgreSQL: triage's incident events applied
once each, whatever the order or the repeats; the log append-only; the projection what the
newest event says; concurrent writers; the Alembic schema equal to the code's."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from triage.desk.schema import metadata
from triage.desk.store import DeskStore


def latest(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each incident as its newest event (by triage's sequence) says it is."""
    out: dict[str, dict[str, Any]] = {}
    for e in events:
        inc = e["incident"]
        if inc["id"] not in out or inc["sequence"] > out[inc["id"]]["sequence"]:
            out[inc["id"]] = inc
    return out


def state(store: DeskStore) -> dict[str, tuple[Any, ...]]:
    """What a responder sees of each incident (not when it was written)."""
    return {r["id"]: (r["status"], r["priority"], tuple(r["services"]), r["root_cause"],
                      r["owner_team"], r["owner_person"], r["alert_count"], r["firing"],
                      r["triage_sequence"], r["war_room"])
            for r in store.incidents(limit=10_000)}


def test_each_event_is_applied_once_and_the_incident_is_what_its_newest_event_says(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    with DeskStore(desk_url) as store:
        first = store.ingest(events)
        assert (first.added, first.duplicates, first.rejected) == (len(events), 0, [])
        want = latest(events)
        got = {r["id"]: r for r in store.incidents(limit=10_000)}
        assert got.keys() == want.keys()
        for iid, inc in want.items():
            row = got[iid]
            assert row["priority"] == inc["priority"]
            assert row["services"] == inc["services"]
            assert row["alert_count"] == inc["alert_count"]
            assert row["owner_team"] == inc["owner"]["team"]
            assert row["root_cause"] == (inc.get("root_cause") or {}).get("service")
            assert row["firing"] == (inc["status"] != "resolved")
            # nobody acknowledged them: triage's resolution resolves them on the desk
            assert row["status"] == ("resolved" if inc["status"] == "resolved" else "triggered")
        n_incidents, n_rows = store.count()
        status_rows = n_rows - len(events)
        assert n_incidents == len(want) and status_rows >= sum(
            1 for inc in want.values() if inc["status"] == "resolved")

        # the same events again, shuffled, some twice in one batch: nothing changes
        before = state(store), store.count()
        again = events + events[:50]
        random.Random(1).shuffle(again)
        second = store.ingest(again)
        assert (second.added, second.duplicates) == (0, len(again))
        assert (state(store), store.count()) == before


def test_events_out_of_order_give_the_same_incidents(desk_url: str, tmp_path: Path,
                                                     events: list[dict[str, Any]]) -> None:
    """A consumer that reads partitions in another order (or a late replay): the newest
    event of each incident wins, whatever came first, and every event is in the log."""
    with DeskStore(f"sqlite:///{tmp_path / 'in-order.db'}") as ordered:
        ordered.ingest(events)
        want = state(ordered)
    with DeskStore(desk_url) as store:
        shuffled = list(events)
        random.Random(7).shuffle(shuffled)
        for i in range(0, len(shuffled), 37):
            store.ingest(shuffled[i:i + 37])
        assert state(store) == want
        iid = events[0]["incident"]["id"]
        logged = [e["type"] for e in store.log(iid) if e["type"].startswith("triage.")]
    assert len(logged) == sum(1 for e in events if e["incident"]["id"] == iid)
    assert logged.count("triage.created") == 1


def test_the_log_only_grows_and_numbers_each_incident_s_rows_in_order(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    with DeskStore(desk_url) as store:
        half = len(events) // 2
        store.ingest(events[:half])
        iid = events[0]["incident"]["id"]
        before = store.log(iid)
        store.ingest(events[half:])
        after = store.log(iid)
        assert after[:len(before)] == before  # nothing rewritten
        assert [e["seq"] for e in after] == list(range(1, len(after) + 1))
        assert store.incident(iid)["seq"] == after[-1]["seq"]  # type: ignore[index]


def test_bad_events_are_refused_naming_the_field_and_the_good_ones_applied(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    bad: list[Any] = [b"{not json", {"event_id": "x:1", "type": "incident.opened"},
                      {**events[0], "incident": {**events[0]["incident"], "sequence": "1"}},
                      {**events[0], "event_id": ""}, {**events[0], "at": "yesterday"}, 42]
    with DeskStore(desk_url) as store:
        result = store.ingest([*bad, events[0]])
        assert result.added == 1
        fields = {i: exc.field for i, exc in result.rejected}
        assert fields == {0: "", 1: "type", 2: "incident.sequence", 3: "event_id", 4: "at",
                          5: ""}
        assert "JSON" in str(result.rejected[0][1])


def test_a_second_ingest_of_an_incident_reopens_what_triage_had_resolved(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    """Triage resolved it and no one had acknowledged it: resolved on the desk; an alert of
    the incident fires again: triggered again, each step in the log with its reason."""
    created = next(e for e in events if e["type"] == "incident.created")
    inc = created["incident"]
    resolved = {**created, "event_id": inc["id"] + ":900", "type": "incident.resolved",
                "incident": {**inc, "sequence": 900, "status": "resolved"}}
    refired = {**created, "event_id": inc["id"] + ":901", "type": "incident.updated",
               "incident": {**inc, "sequence": 901, "status": "open"}}
    with DeskStore(desk_url) as store:
        store.ingest([created, resolved])
        assert store.incident(inc["id"])["status"] == "resolved"  # type: ignore[index]
        store.ingest([refired])
        row = store.incident(inc["id"])
        assert row is not None and row["status"] == "triggered" and row["resolved_at"] is None
        changes = [(e["body"]["from"], e["body"]["to"]) for e in store.log(inc["id"])
                   if e["type"] == "status.changed"]
        assert changes == [("triggered", "resolved"), ("resolved", "triggered")]


def test_two_desks_writing_at_once_apply_each_event_once(desk_url: str,
                                                         events: list[dict[str, Any]]) -> None:
    """Two consumers (or a restarted one beside its old self) share the database: the
    unique event id makes one of them retry, and it then skips what the other wrote."""
    with DeskStore(desk_url) as setup:
        pass  # migrated once, before the writers start
    stores = [DeskStore(desk_url, upgrade=False) for _ in range(2)]
    errors: list[BaseException] = []

    def write(store: DeskStore, seed: int) -> None:
        order = list(events)
        random.Random(seed).shuffle(order)
        try:
            for i in range(0, len(order), 25):
                store.ingest(order[i:i + 25], retries=50)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors, errors
    with DeskStore(desk_url, upgrade=False) as store:
        n_incidents = store.count()[0]
        triage_rows = sum(1 for iid in latest(events) for e in store.log(iid)
                          if e["type"].startswith("triage."))
    assert triage_rows == len(events) and n_incidents == len(latest(events))
    for s in stores:
        s.close()
    del setup


def test_the_migrations_build_the_schema_the_code_uses(desk_url: str) -> None:
    with DeskStore(desk_url) as store, store.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


@pytest.mark.parametrize("url", ["sqlite:////nonexistent-dir/desk.db"])
def test_an_unusable_database_is_named(url: str) -> None:
    from sqlalchemy.exc import OperationalError
    with pytest.raises(OperationalError):
        DeskStore(url)


def test_a_database_of_an_older_schema_is_migrated_with_its_incidents(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    """A desk database made before the commander column (revision 0001), with incidents in
    it: opening it migrates it, and nothing it held is lost."""
    from alembic import command
    from alembic.config import Config

    from triage.desk.store import MIGRATIONS, make_engine
    engine = make_engine(desk_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
        conn.exec_driver_sql(
            "INSERT INTO incident (id, title, status, priority, services, war_room, "
            "alert_count, firing, first_seen, last_seen, triggered_at, triage_sequence, seq, "
            "updated_at) VALUES ('inc-old', 'db: 1 alert', 'triggered', 'P2', '[\"db\"]', "
            "false, 1, true, 0, 0, 0, 1, 1, 0)")
    engine.dispose()
    with DeskStore(desk_url) as store:
        row = store.incident("inc-old")
        assert row is not None and row["services"] == ["db"] and row["commander"] is None
        assert store.ingest(events).added == len(events)
