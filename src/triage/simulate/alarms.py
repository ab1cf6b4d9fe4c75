"""Real telecom alarm sets (gCastle / PCIC 2021) replayed through triage, and judged.

The sets in ``../shared/data/alarms`` (read ``README.md`` there) have no incident labels, but
an expert causal graph between alarm *types* (``DAG.npy``, ``[i, j] = 1``: i causes j) and,
for 25V, the undirected links between devices (``Topology.npy``). This module

* writes a replay (``write_replay``): one generic JSON alert per alarm, in an envelope with
  its time, labelled ``alertname = alarm-<type>`` and ``device = dev-<id>``, with **no
  severity** (the set has none, and none is invented); a ``services.yaml`` with every device
  and the links as undirected ``links``; a ``triage.yaml`` naming the device label as the
  service; and ``index.json`` (fingerprint → [type, device]). 25V alarms have no clear time
  (end = start): their alerts are resolved by triage's resolve timeout, as any sender's that
  stops repeating. 18V alarms with a duration also get a resolved line at their end;
* implements the README's metric (``causal_consistency``: for each incident spanning several
  devices, the share of the alarm types on its other devices reachable in the DAG from a type
  on the root device; the same with a random root for reference) and its naive baseline
  (``naive_baseline``: 10-minute buckets, directly linked devices joined, earliest device as
  root);
* for 18V, which has no topology (so nothing spans devices), the per-device side:
  ``type coherence``, over incidents with two or more alarm types, the share of their types
  reachable in the DAG from the type of their earliest alarm.

>>> s = AlarmSet("toy", [(0, 1, 10, 10), (1, 2, 20, 20), (1, 1, 700, 700)],
...              [[0, 1], [0, 0]], [(1, 2)])
>>> [(i.root, sorted(i.devices)) for i in naive_baseline(s)]
[(1, [1, 2]), (1, [1])]
>>> causal_consistency(naive_baseline(s), s.dag)["consistency"]
1.0
"""

from __future__ import annotations

import csv
import random
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from triage.core.fingerprint import labelset_fingerprint
from triage.core.timeutil import format_timestamp

EPOCH = 1767225600.0  # 2026-01-01T00:00:00Z: the sets' anonymised time 0
BUCKET = 600.0


def alert_labels(alarm_type: int, device: int) -> dict[str, str]:
    """The labels of one alarm series (its identity)."""
    return {"alertname": f"alarm-{alarm_type:02d}", "device": device_name(device)}


def device_name(device: int) -> str:
    """``dev-007``."""
    return f"dev-{device:03d}"


@dataclass(slots=True)
class AlarmSet:
    """One alarm set: alarms ``(type, device, start, end)`` sorted by start, the experts'
    causal graph between types, and undirected device links."""

    name: str
    alarms: list[tuple[int, int, int, int]]
    dag: Any  # V x V 0/1 matrix (numpy array or nested lists)
    links: list[tuple[int, int]] = field(default_factory=list)
    _reach: list[frozenset[int]] | None = None

    @property
    def index(self) -> dict[str, tuple[int, int]]:
        """Fingerprint → (type, device) of every alarm series."""
        series = {(t, d) for t, d, _, _ in self.alarms}
        return {labelset_fingerprint(alert_labels(t, d)): (t, d) for t, d in sorted(series)}

    @property
    def devices(self) -> int:
        return 1 + max(d for _, d, _, _ in self.alarms)


def load_alarm_set(folder: Path) -> AlarmSet:
    """Read ``Alarm.csv``, ``DAG.npy`` and (if there) ``Topology.npy`` of one set."""
    with (folder / "Alarm.csv").open(newline="") as fh:
        alarms = [(int(row["alarm_id"]), int(row["device_id"]), int(row["start_timestamp"]),
                   int(row["end_timestamp"])) for row in csv.DictReader(fh)]
    alarms.sort(key=lambda a: (a[2], a[1], a[0]))
    dag = np.load(folder / "DAG.npy", allow_pickle=False)
    links: list[tuple[int, int]] = []
    topo = folder / "Topology.npy"
    if topo.exists():
        matrix = np.load(topo, allow_pickle=False)
        rows, cols = np.nonzero(np.triu(matrix, k=1))
        links = [(int(a), int(b)) for a, b in zip(rows, cols, strict=True)]
    return AlarmSet(folder.name, alarms, dag, links)


def write_replay(alarm_set: AlarmSet, out: Path, *, epoch: float = EPOCH) -> Path:
    """Write ``alerts.jsonl``, ``services.yaml``, ``triage.yaml`` and ``index.json`` into
    ``out``; returns ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    timed: list[tuple[int, int, bytes]] = []
    for n, (t, d, start, end) in enumerate(alarm_set.alarms):
        labels = alert_labels(t, d)
        fire = {"alertname": labels["alertname"], "labels": {"device": labels["device"]},
                "status": "firing", "starts_at": _ts(epoch + start)}
        timed.append((start, 2 * n, orjson.dumps({"received_at": _ts(epoch + start),
                                                  "payload": fire})))
        if end > start:
            done = {**fire, "status": "resolved", "ends_at": _ts(epoch + end)}
            timed.append((end, 2 * n + 1, orjson.dumps({"received_at": _ts(epoch + end),
                                                        "payload": done})))
    timed.sort(key=lambda x: (x[0], x[1]))
    with (out / "alerts.jsonl").open("wb") as fh:
        for _, _, line in timed:
            fh.write(line + b"\n")
    services: dict[str, Any] = {device_name(d): {} for d in range(alarm_set.devices)}
    doc: dict[str, Any] = {"services": services}
    if alarm_set.links:
        doc["links"] = [[device_name(a), device_name(b)] for a, b in alarm_set.links]
    (out / "services.yaml").write_text(
        f"# {alarm_set.name}: every device a service; Topology.npy as undirected links\n"
        + yaml.safe_dump(doc, sort_keys=False))
    config = {"topology": {"file": "services.yaml", "service_labels": ["device"]}}
    (out / "triage.yaml").write_text(
        f"# Replay of the {alarm_set.name} alarm set: triage run --config triage.yaml "
        "--input alerts.jsonl --output incidents.jsonl\n" + yaml.safe_dump(config))
    (out / "index.json").write_bytes(orjson.dumps(
        {fp: list(v) for fp, v in sorted(alarm_set.index.items())}))
    return out


def _ts(t: float) -> str:
    out = format_timestamp(t)
    assert out is not None
    return out


@dataclass(slots=True)
class AlarmIncident:
    """An incident as the metric sees it: alarm types per device, the root device and the
    type of its earliest alarm (for type coherence, when known)."""

    types: dict[int, set[int]]
    root: int | None
    first_type: int | None = None

    @property
    def devices(self) -> set[int]:
        return set(self.types)


def naive_baseline(alarm_set: AlarmSet, *, bucket: float = BUCKET) -> list[AlarmIncident]:
    """The README's simplest baseline: fixed buckets, directly linked devices joined, one
    incident per connected group, root the device with the earliest alarm (ties: lowest
    id)."""
    adjacency: dict[int, set[int]] = {}
    for a, b in alarm_set.links:
        adjacency.setdefault(a, set()).add(b)
        adjacency.setdefault(b, set()).add(a)
    buckets: dict[int, list[tuple[int, int, int, int]]] = {}
    for alarm in alarm_set.alarms:
        buckets.setdefault(int(alarm[2] // bucket), []).append(alarm)
    out: list[AlarmIncident] = []
    for key in sorted(buckets):
        alarms = buckets[key]
        first: dict[int, tuple[int, int]] = {}  # device -> (start, type) of its first alarm
        types: dict[int, set[int]] = {}
        for t, d, start, _ in alarms:
            types.setdefault(d, set()).add(t)
            if d not in first or (start, t) < first[d]:
                first[d] = (start, t)
        seen: set[int] = set()
        for d in sorted(types):
            if d in seen:
                continue
            group, stack = {d}, [d]
            while stack:
                x = stack.pop()
                for y in adjacency.get(x, ()):
                    if y in types and y not in group:
                        group.add(y)
                        stack.append(y)
            seen |= group
            root = min(group, key=lambda x: (first[x][0], x))
            out.append(AlarmIncident({x: set(types[x]) for x in group}, root, first[root][1]))
    return out


def incidents_from_events(events: Iterable[Mapping[str, Any]],
                          index: Mapping[str, Sequence[int]],
                          alarm_set: AlarmSet | None = None) -> list[AlarmIncident]:
    """triage's paged incidents in their final state: merges followed to the survivor, the
    fingerprints and root of each one's last event."""
    last: dict[str, Mapping[str, Any]] = {}
    merged: dict[str, str] = {}
    paged: list[str] = []
    for e in events:
        inc = e.get("incident") or {}
        iid = inc.get("id")
        if not iid:
            continue
        if e.get("type") == "incident.created":
            paged.append(iid)
        if inc.get("merged_into"):
            merged[iid] = inc["merged_into"]
        else:
            last[iid] = inc
    starts = _series_starts(alarm_set) if alarm_set is not None else None
    out: list[AlarmIncident] = []
    for iid in dict.fromkeys(paged):
        if iid in merged or iid not in last:
            continue
        inc = last[iid]
        types: dict[int, set[int]] = {}
        series: list[tuple[int, int]] = []
        for fp in inc.get("fingerprints") or []:
            found = index.get(fp)
            if found is None:
                continue
            t, d = int(found[0]), int(found[1])
            types.setdefault(d, set()).add(t)
            series.append((t, d))
        if not types:
            continue
        rc = (inc.get("root_cause") or {}).get("service") or ""
        root = int(rc[4:]) if rc.startswith("dev-") and rc[4:].isdigit() else None
        first_type = None
        if starts is not None and series:
            since = _epoch_offset(inc.get("first_seen"))
            first_type = min(series, key=lambda s: (_first_at_or_after(starts[s], since),
                                                    s))[0]
        out.append(AlarmIncident(types, root, first_type))
    return out


def _series_starts(alarm_set: AlarmSet) -> dict[tuple[int, int], list[int]]:
    out: dict[tuple[int, int], list[int]] = {}
    for t, d, start, _ in alarm_set.alarms:
        out.setdefault((t, d), []).append(start)
    return out


def _epoch_offset(stamp: Any) -> float:
    from triage.core.timeutil import parse_timestamp

    t = parse_timestamp(stamp, "first_seen") if stamp else None
    return (t or EPOCH) - EPOCH


def _first_at_or_after(starts: list[int], since: float) -> float:
    from bisect import bisect_left

    i = bisect_left(starts, since - 1.0)
    return float(starts[i]) if i < len(starts) else float("inf")


def reachability(dag: Any) -> list[frozenset[int]]:
    """For each type, the types reachable from it in the DAG (itself included)."""
    m = np.asarray(dag) != 0
    n = m.shape[0]
    out: list[frozenset[int]] = []
    for i in range(n):
        seen = {i}
        stack = [i]
        while stack:
            x = stack.pop()
            for found in np.nonzero(m[x])[0].tolist():
                if found not in seen:
                    seen.add(found)
                    stack.append(found)
        out.append(frozenset(seen))
    return out


def _score(inc: AlarmIncident, root: int, reach: list[frozenset[int]]) -> float | None:
    others = {t for d, ts in inc.types.items() if d != root for t in ts}
    if not others:
        return None
    reached: set[int] = set()
    for t in inc.types.get(root, ()):
        reached |= reach[t]
    return len(others & reached) / len(others)


def causal_consistency(incidents: Sequence[AlarmIncident], dag: Any, *, rng_seed: int = 0,
                       draws: int = 20) -> dict[str, Any]:
    """The README's metric over the incidents spanning several devices, with a random root
    among each one's devices as reference (mean of ``draws`` draws), and the type coherence
    of incidents with two or more types (when their first type is known)."""
    reach = reachability(dag)
    multi = [i for i in incidents if len(i.types) > 1]
    scores = [s for i in multi if i.root is not None and i.root in i.types
              and (s := _score(i, i.root, reach)) is not None]
    rng = random.Random(rng_seed)
    random_means: list[float] = []
    for _ in range(draws):
        vals = [s for i in multi if (s := _score(i, rng.choice(sorted(i.types)), reach))
                is not None]
        if vals:
            random_means.append(sum(vals) / len(vals))
    coherent: list[float] = []
    for i in incidents:
        all_types = {t for ts in i.types.values() for t in ts}
        if len(all_types) >= 2 and i.first_type is not None:
            coherent.append(len(all_types & reach[i.first_type]) / len(all_types))
    return {
        "consistency": sum(scores) / len(scores) if scores else None,
        "random_root": sum(random_means) / len(random_means) if random_means else None,
        "incidents": len(incidents),
        "multi_device": len(multi),
        "type_coherence": sum(coherent) / len(coherent) if coherent else None,
        "multi_type": len(coherent),
    }


def repeated_pages(events: Iterable[Mapping[str, Any]], index: Mapping[str, Sequence[int]]
                   ) -> int:
    """Pages whose alert set (the alarm series at creation) had already paged before."""
    seen: set[frozenset[tuple[int, int]]] = set()
    repeats = 0
    for e in events:
        if e.get("type") != "incident.created":
            continue
        fps = (e.get("incident") or {}).get("fingerprints") or []
        key = frozenset((int(v[0]), int(v[1])) for fp in fps if (v := index.get(fp)))
        if key in seen:
            repeats += 1
        seen.add(key)
    return repeats
