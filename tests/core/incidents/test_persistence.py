"""What the incident stage hands its state stores: deltas that cost what changed (a storm's
incident holding many alerts is not rewritten whole at each commit), and that rebuild the
same engine through merges, splits and expiry, older records included."""

from __future__ import annotations

from typing import Any

import networkx as nx
import orjson

from tests.core.incidents.test_engine import T, engine, fire, resolve, run
from triage.core.incidents import IncidentEngine

FORK = nx.DiGraph([("a", "c"), ("b", "c"), ("x", "a"), ("x", "b")])
BRIDGE = nx.DiGraph([("left", "bridge"), ("bridge", "right")])


class Store:
    """A key/value store as the state file and the Kafka table keep the deltas."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[str, Any]] = {}
        self.written: list[int] = []  # bytes of each delta

    def save(self, eng: IncidentEngine) -> None:
        changed, removed = eng.take_changes()
        assert not changed.keys() & removed
        for key in removed:
            self.rows.pop(key, None)
        self.rows.update(orjson.loads(orjson.dumps(changed)))
        self.written.append(len(orjson.dumps([changed, sorted(removed)])))

    def restore(self, graph: nx.DiGraph, eng: IncidentEngine, **policy: Any) -> IncidentEngine:
        restored = engine(graph, **policy)
        restored.load(self.rows.values(), [list(t) for t in eng.timers()])
        restored.take_changes()  # what was just loaded is saved
        return restored


def whole(eng: IncidentEngine) -> dict[str, Any]:
    return {i: inc.to_record() for i, inc in sorted(eng.incidents.items())}


def test_a_commit_writes_the_alerts_that_changed_not_every_alert_of_the_incident() -> None:
    eng, store = engine(), Store()
    run(eng, [(0, [fire("cart", instance=str(i)) for i in range(1000)])])
    store.save(eng)
    (inc,) = eng.incidents.values()
    assert len(inc.alerts) == 1000 and store.written[0] > 100_000
    run(eng, [(10, [fire("cart", instance="new")])])
    store.save(eng)
    assert store.written[1] < 3_000  # the incident's own fields and one alert, not 1,001
    assert whole(store.restore(nx.DiGraph(), eng)) == whole(eng)


def test_deltas_rebuild_the_engine_through_merges_splits_and_expiry() -> None:
    for graph, steps, tail in [
        (FORK, [(0, [fire("a", "PodCrashLooping")]), (10, [fire("b", "PodCrashLooping")]),
                (40, [fire("c", "DatabaseDown")])],
         [(50, [resolve("a", "PodCrashLooping")]), (60, [fire("x")])]),
        (BRIDGE, [(0, [fire("left", "PodCrash")]), (10, [fire("bridge", "PodCrash")]),
                  (20, [fire("right", "PodCrash")]),
                  (30, [fire("bridge", "PodCrash", change="flapping")])],
         [(40, [fire("left", "PodCrash", instance="2")])]),
    ]:
        eng, store = engine(graph, quiet_period=60.0, retention=60.0), Store()
        for step in steps:  # a commit after each request
            run(eng, [step])
            store.save(eng)
            assert whole(store.restore(graph, eng)) == whole(eng)
        restored = store.restore(graph, eng, quiet_period=60.0, retention=60.0)
        assert run(restored, tail) == run(eng, tail)
        store.save(eng)
        # everything resolves, then is forgotten after retention: so are its rows
        fired = {(t.alert.labels["service"], t.alert.labels["alertname"],
                  t.alert.labels["instance"]) for _, outs in [*steps, *tail] for t in outs}
        run(eng, [(100, [resolve(*alert) for alert in sorted(fired)])])
        eng.tick(T + 5000)
        eng.tick(T + 10_000)
        store.save(eng)
        assert not eng.incidents and not store.rows


def test_an_incident_saved_with_its_alerts_inside_keeps_them_after_the_next_commit() -> None:
    # the format before alerts had rows of their own (record version 2)
    old = engine()
    run(old, [(0, [fire("cart", instance=str(i)) for i in range(5)])])
    store = Store()
    store.rows = {i: {**inc.to_record(), "v": 2} for i, inc in old.incidents.items()}
    eng = store.restore(nx.DiGraph(), old)
    run(eng, [(10, [fire("cart", instance="new")])])
    store.save(eng)
    (inc,) = store.restore(nx.DiGraph(), eng).incidents.values()
    assert len(inc.alerts) == 6


def test_an_engine_nobody_saves_keeps_no_record_of_changes() -> None:
    eng = engine(quiet_period=60.0, retention=60.0)
    run(eng, [(0, [fire("cart", instance=str(i)) for i in range(50)])])
    run(eng, [(10, [resolve("cart", instance=str(i)) for i in range(50)])])
    eng.tick(T + 5000)
    eng.tick(T + 10_000)
    assert not eng.incidents
    # a long-running serve without --state: nothing grows with the alerts it has seen
    assert not eng._removed and not eng._dirty_alerts and not eng._gone_alerts
    changed, removed = eng.take_changes()  # saved for the first time: everything there is
    assert changed == {} and removed == set()


def test_an_incident_renamed_for_alerts_stamped_alike_leaves_no_old_record() -> None:
    """Saved under the id its first alert gave it, then renamed by a second alert at the
    same time (``IncidentEngine._name_for_ties``): the store ends with the new id only, and
    a restore gives the same engine."""
    graph = nx.DiGraph([("web", "db")])
    eng, store = engine(graph, page_delay=30.0), Store()
    run(eng, [(0, [fire("web")])])
    store.save(eng)
    (old,) = eng.incidents
    run(eng, [(0, [fire("db")])])
    store.save(eng)
    (new,) = eng.incidents
    assert new != old and eng.counts["renamed_for_ties"] == 1
    assert not any(key.startswith(old) for key in store.rows)
    restored = store.restore(graph, eng, page_delay=30.0)
    assert whole(restored) == whole(eng)
    step = [(60, [fire("web", instance="1")])]
    assert [e["incident"]["id"] for e in run(restored, step)] == [new]
    assert [e["incident"]["id"] for e in run(eng, step)] == [new]
