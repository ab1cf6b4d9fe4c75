"""The real alarm sets: replay files, the README's metric and its naive baseline."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import orjson
import pytest

from triage.bootstrap import build_engine, build_pipeline
from triage.settings import load_settings
from triage.simulate.alarms import (
    AlarmIncident,
    AlarmSet,
    causal_consistency,
    incidents_from_events,
    load_alarm_set,
    naive_baseline,
    repeated_pages,
    write_replay,
)

# 0 -> 1 -> 2 between types; devices 0-1 linked, 2 alone
DAG = np.array([[0, 1, 0], [0, 0, 1], [0, 0, 0]])


def toy(tmp_path: Path) -> AlarmSet:
    folder = tmp_path / "toy"
    folder.mkdir()
    rows = ["alarm_id,device_id,start_timestamp,end_timestamp",
            "0,0,10,10", "1,1,40,40", "2,1,50,50",  # bucket 0: linked, root 0 explains all
            "2,2,60,60",  # bucket 0, device 2 is not linked: its own incident
            "2,0,700,700", "0,1,710,710",  # bucket 1: root 0 (type 2) cannot reach type 0
            "1,0,2000,2300"]  # a duration: a resolved line too
    (folder / "Alarm.csv").write_text("\n".join(rows) + "\n")
    np.save(folder / "DAG.npy", DAG)
    topo = np.zeros((3, 3), dtype=np.int64)
    topo[0, 1] = topo[1, 0] = 1
    np.save(folder / "Topology.npy", topo)
    return load_alarm_set(folder)


def test_naive_baseline_and_causal_consistency_by_hand(tmp_path: Path) -> None:
    s = toy(tmp_path)
    incidents = naive_baseline(s)
    assert [(i.root, sorted(i.devices)) for i in incidents] == [
        (0, [0, 1]), (2, [2]), (0, [0, 1]), (0, [0])]
    cc = causal_consistency(incidents, s.dag)
    # bucket 0: types {1, 2} on device 1, both reachable from type 0 -> 1.0;
    # bucket 1: type 0 on device 1 is not reachable from type 2 -> 0.0
    assert cc["consistency"] == pytest.approx(0.5)
    assert cc["multi_device"] == 2 and cc["incidents"] == 4
    # type coherence: bucket 0 of devices 0-1 has types {0, 1, 2}, first 0: all reachable;
    # bucket 1 has {0, 2}, first 2: only 2
    assert cc["type_coherence"] == pytest.approx((1.0 + 0.5) / 2)


def test_replay_lines_parse_and_their_fingerprints_are_the_index(tmp_path: Path) -> None:
    s = toy(tmp_path)
    out = write_replay(s, tmp_path / "replay")
    lines = (out / "alerts.jsonl").read_bytes().splitlines()
    assert len(lines) == len(s.alarms) + 1  # the alarm with a duration resolves
    times = [orjson.loads(x)["received_at"] for x in lines]
    assert times == sorted(times)
    settings = load_settings(out / "triage.yaml")
    engine = build_engine(settings)
    assert engine.topology.linked("dev-000") == {"dev-001"}
    pipeline = build_pipeline(settings)
    index = orjson.loads((out / "index.json").read_bytes())
    seen = {o.alert.fingerprint for line in lines for o in pipeline.process(line)
            if hasattr(o, "alert")}
    assert seen and seen <= set(index)
    assert {tuple(v) for v in index.values()} == {(t, d) for t, d, _, _ in s.alarms}


def test_incidents_from_events_follow_merges_and_take_the_final_state() -> None:
    index = {"a" * 16: (0, 0), "b" * 16: (1, 1), "c" * 16: (2, 2)}

    def ev(kind: str, iid: str, fps: list[str], root: str, merged: str | None = None
           ) -> dict[str, object]:
        return {"type": kind, "incident": {"id": iid, "fingerprints": fps,
                                           "root_cause": {"service": root},
                                           "merged_into": merged}}

    events = [ev("incident.created", "i1", ["a" * 16], "dev-000"),
              ev("incident.created", "i2", ["b" * 16], "dev-001"),
              ev("incident.updated", "i2", ["b" * 16], "dev-001", merged="i1"),
              ev("incident.updated", "i1", ["a" * 16, "b" * 16], "dev-000"),
              ev("incident.created", "i3", ["c" * 16], "dev-002"),
              ev("incident.created", "i4", ["c" * 16], "dev-002")]
    incidents = incidents_from_events(events, index)
    assert [(i.root, i.types) for i in incidents] == [
        (0, {0: {0}, 1: {1}}), (2, {2: {2}}), (2, {2: {2}})]
    assert repeated_pages(events, index) == 1  # i4 pages the same alert set as i3


def test_a_random_root_is_the_reference() -> None:
    incidents = [AlarmIncident({0: {0}, 1: {2}}, root=0), AlarmIncident({0: {0}, 1: {2}},
                                                                        root=1)]
    cc = causal_consistency(incidents, DAG, draws=50)
    assert cc["consistency"] == pytest.approx(0.5)
    assert 0.2 < cc["random_root"] < 0.8


def test_the_readme_baseline_on_the_real_25v_set(shared_data: Path) -> None:
    s = load_alarm_set(shared_data / "alarms" / "25V_474N_Microwave")
    assert len(s.alarms) == 48_572 and len(s.links) == 440
    incidents = naive_baseline(s)
    cc = causal_consistency(incidents, s.dag)
    # the figures ../shared/data/alarms/README.md gives for its computation
    assert len(incidents) == 7_906 and cc["multi_device"] == 2_190
    assert round(cc["consistency"], 3) == 0.927
