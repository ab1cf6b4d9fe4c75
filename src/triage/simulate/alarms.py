"""Real telecom alarm sets (gCastle / PCIC 2021) replayed through triage, and judged.

The sets in ``../shared/data/alarms`` (read ``README.md`` there) have no incident labels, but
an expert causal graph between alarm *types* (``DAG.npy``, ``[i, j] = 1``: i causes j) and,
for 25V, the undirected links between devices (``Topology.npy``). This module

* **writes a replay** (``write_replay``): one generic JSON alert per alarm, in an envelope
  with its time, labelled ``alertname = alarm-<type>`` and ``device = dev-<id>``, with **no
  severity** (the sets have none, and none is invented); ``services.yaml`` with every device
  a service and the links as undirected top-level ``links``; ``triage.yaml`` naming the
  device label as the service; and ``index.json`` (fingerprint → [type, device]).

  *Clear times.* An alarm series (one type on one device) is one alert, so its alarms are
  folded into *runs*: an alarm starting at or before the latest clear time so far of its
  series extends the run (15 % of 18V's alarms start while an earlier one of their series is
  still active). Every alarm is written as a firing line at its start; a run with a clear
  time after its start gets **one** resolved line at its clear time (a resolved line per
  alarm would resolve a series that is still active). With ``valid_until`` (the default)
  the firing lines also carry the run's clear time known so far as ``ends_at`` (the generic
  format's "when the sender expects it to end"): an NMS alarm stays active until cleared,
  and without it triage's resolve timeout (5 minutes without a repeat, as for any
  continuous sender) would end a quarter of 18V's alarms early and page their next alarm
  again. 25V's alarms have no clear time (end = start): they are firing lines only, resolved
  by triage's resolve timeout like any sender's alert that stops repeating.

* **judges incidents** the way the README does. ``causal_consistency``: over the incidents
  spanning several devices, the share of the alarm types on the incident's other devices
  reachable in the DAG from some type raised on the named root device (a type reaches
  itself); a root device that raised no alarm in the incident (or no root) explains nothing
  and scores 0. Beside it, a root drawn at random among the incident's devices (the mean of
  20 seeded draws, and its exact expectation). ``naive_baseline`` is the README's baseline
  (10-minute buckets, directly linked devices joined, the earliest device the root).

* for 18V, which has no topology (nothing spans devices), **type coherence**: over the
  incidents with two or more alarm types, the share of their types reachable in the DAG from
  the type of their earliest alarm. For the baseline that is the earliest alarm of the group.
  For triage's incidents it is, for each alarm series in the incident, its first alarm at or
  after the incident's ``first_seen`` in the set's own start times; the earliest of those
  (ties: lowest type, then device) gives the type. A series with no alarm at or after
  ``first_seen`` (it began before and was still active) counts last.

>>> s = AlarmSet("toy", [(0, 1, 10, 10), (1, 2, 20, 20), (1, 1, 700, 700)],
...              np.array([[0, 1], [0, 0]]), [(1, 2)])
>>> [(i.root, sorted(i.devices)) for i in naive_baseline(s)]
[(1, [1, 2]), (1, [1])]
>>> causal_consistency(naive_baseline(s), s.dag)["consistency"]
1.0
"""

from __future__ import annotations

import csv
import random
from bisect import bisect_left
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import yaml

from triage.core.fingerprint import labelset_fingerprint
from triage.core.timeutil import format_timestamp, parse_timestamp

EPOCH = 1767225600.0  # 2026-01-01T00:00:00Z: the sets' anonymised time 0
BUCKET = 600.0  # the README's baseline: 10-minute buckets
RANDOM_DRAWS = 20

Alarm = tuple[int, int, int, int]  # (type, device, start, end)


def device_name(device: int) -> str:
    """The service name of a device.

    >>> device_name(7)
    'dev-007'
    """
    return f"dev-{device:03d}"


def device_id(name: object) -> int | None:
    """The device of a service name, or None.

    >>> device_id("dev-007"), device_id("checkout"), device_id(None)
    (7, None, None)
    """
    if isinstance(name, str) and name.startswith("dev-") and name[4:].isdigit():
        return int(name[4:])
    return None


def alert_labels(alarm_type: int, device: int) -> dict[str, str]:
    """The labels of one alarm series: its identity, exactly the labels written.

    >>> alert_labels(3, 7)
    {'alertname': 'alarm-03', 'device': 'dev-007'}
    """
    return {"alertname": f"alarm-{alarm_type:02d}", "device": device_name(device)}


@dataclass(slots=True)
class AlarmSet:
    """One alarm set: alarms ``(type, device, start, end)`` sorted by start, the experts'
    causal graph between types (V x V, ``dag[i, j]``: i causes j) and the undirected device
    links (``a < b``; empty without a topology)."""

    name: str
    alarms: list[Alarm]
    dag: np.ndarray
    links: list[tuple[int, int]] = field(default_factory=list)

    @property
    def index(self) -> dict[str, tuple[int, int]]:
        """Fingerprint → (type, device) of every alarm series."""
        series = {(t, d) for t, d, _, _ in self.alarms}
        return {labelset_fingerprint(alert_labels(t, d)): (t, d) for t, d in sorted(series)}

    @property
    def devices(self) -> int:
        """Devices are numbered ``0 .. devices - 1``."""
        return 1 + max([d for _, d, _, _ in self.alarms] + [b for _, b in self.links],
                       default=-1)


def load_alarm_set(folder: Path) -> AlarmSet:
    """Read ``Alarm.csv``, ``DAG.npy`` and (if there) ``Topology.npy`` of one set; the links
    are the upper triangle of the (symmetric) topology. Raises ``ValueError`` on a file that
    does not fit (an alarm type outside the DAG, a matrix that is not square)."""
    folder = Path(folder)
    with (folder / "Alarm.csv").open(newline="") as fh:
        alarms = [(int(row["alarm_id"]), int(row["device_id"]), int(row["start_timestamp"]),
                   int(row["end_timestamp"])) for row in csv.DictReader(fh)]
    alarms.sort(key=lambda a: (a[2], a[1], a[0]))
    dag = _square(np.load(folder / "DAG.npy", allow_pickle=False), "DAG.npy") != 0
    if alarms and not 0 <= min(a[0] for a in alarms) <= max(a[0] for a in alarms) < len(dag):
        raise ValueError(f"Alarm.csv: alarm types outside the {len(dag)} types of DAG.npy")
    links: list[tuple[int, int]] = []
    topo = folder / "Topology.npy"
    if topo.exists():
        matrix = _square(np.load(topo, allow_pickle=False), "Topology.npy") != 0
        rows, cols = np.nonzero(np.triu(matrix | matrix.T, k=1))
        links = [(int(a), int(b)) for a, b in zip(rows, cols, strict=True)]
    return AlarmSet(folder.name, alarms, dag, links)


def _square(matrix: np.ndarray, what: str) -> np.ndarray:
    if matrix.ndim != 2 or matrix.shape[0] != matrix.shape[1]:
        raise ValueError(f"{what}: expected a square matrix, got shape {matrix.shape}")
    return matrix


# -- the replay ------------------------------------------------------------------------------


def replay_lines(alarm_set: AlarmSet, *, epoch: float = EPOCH, valid_until: bool = True
                 ) -> list[bytes]:
    """The ``alerts.jsonl`` lines, in time order (see the module's *Clear times*).

    >>> s = AlarmSet("t", [(0, 1, 10, 30), (0, 1, 20, 50), (2, 3, 40, 40)], np.zeros((3, 3)))
    >>> [(e["received_at"][11:19], e["payload"]["status"], e["payload"].get("ends_at", "")[11:19])
    ...  for e in map(orjson.loads, replay_lines(s))]
    ... # doctest: +NORMALIZE_WHITESPACE
    [('00:00:10', 'firing', '00:00:30'), ('00:00:20', 'firing', '00:00:50'),
     ('00:00:40', 'firing', ''), ('00:00:50', 'resolved', '00:00:50')]
    """
    timed: list[tuple[int, int, bytes]] = []
    runs: dict[tuple[int, int], list[int]] = {}  # series -> [run start, clear time so far]

    def close(series: tuple[int, int], run: list[int], n: int) -> None:
        if run[1] > run[0]:
            labels = alert_labels(*series)
            done = {"alertname": labels["alertname"], "labels": {"device": labels["device"]},
                    "status": "resolved", "starts_at": _ts(epoch + run[0]),
                    "ends_at": _ts(epoch + run[1])}
            timed.append((run[1], n, orjson.dumps({"received_at": _ts(epoch + run[1]),
                                                   "payload": done})))

    for n, (t, d, start, end) in enumerate(alarm_set.alarms):
        run = runs.get((t, d))
        if run is not None and start <= run[1]:
            run[1] = max(run[1], end)
        else:
            if run is not None:
                close((t, d), run, 2 * n - 1)  # before this alarm's firing line
            run = runs[(t, d)] = [start, end]
        labels = alert_labels(t, d)
        fire: dict[str, Any] = {"alertname": labels["alertname"],
                                "labels": {"device": labels["device"]}, "status": "firing",
                                "starts_at": _ts(epoch + start)}
        if valid_until and run[1] > start:
            fire["ends_at"] = _ts(epoch + run[1])
        timed.append((start, 2 * n, orjson.dumps({"received_at": _ts(epoch + start),
                                                  "payload": fire})))
    end_n = 2 * len(alarm_set.alarms)
    for series, run in runs.items():
        close(series, run, end_n)
    timed.sort(key=lambda x: (x[0], x[1]))
    return [line for _, _, line in timed]


def services_document(alarm_set: AlarmSet) -> str:
    """``services.yaml``: every device a service, the links as top-level ``links`` pairs."""
    head = (f"# {alarm_set.name}: every device a service"
            + ("; Topology.npy as undirected links\n" if alarm_set.links else "\n"))
    body = yaml.safe_dump({"services": {device_name(d): {} for d in range(alarm_set.devices)}},
                          sort_keys=False)
    if alarm_set.links:
        body += "links:\n" + "".join(f"- [{device_name(a)}, {device_name(b)}]\n"
                                     for a, b in alarm_set.links)
    return head + body


def write_replay(alarm_set: AlarmSet, out: Path, *, epoch: float = EPOCH,
                 valid_until: bool = True) -> Path:
    """Write ``alerts.jsonl``, ``services.yaml``, ``triage.yaml`` and ``index.json`` into
    ``out`` (created); returns ``out``. Time 0 of the set is ``epoch``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with (out / "alerts.jsonl").open("wb") as fh:
        for line in replay_lines(alarm_set, epoch=epoch, valid_until=valid_until):
            fh.write(line + b"\n")
    (out / "services.yaml").write_text(services_document(alarm_set))
    config = {"topology": {"file": "services.yaml", "service_labels": ["device"]}}
    (out / "triage.yaml").write_text(
        f"# Replay of the {alarm_set.name} alarm set: triage run --config triage.yaml "
        "--input alerts.jsonl --output incidents.jsonl\n" + yaml.safe_dump(config))
    (out / "index.json").write_bytes(orjson.dumps(
        {fp: list(v) for fp, v in sorted(alarm_set.index.items())}))
    return out


def read_index(replay: Path) -> dict[str, tuple[int, int]]:
    """A replay's ``index.json``."""
    raw = orjson.loads((Path(replay) / "index.json").read_bytes())
    return {str(fp): (int(v[0]), int(v[1])) for fp, v in raw.items()}


def _ts(t: float) -> str:
    out = format_timestamp(t)
    assert out is not None
    return out


# -- incidents -------------------------------------------------------------------------------


@dataclass(slots=True)
class AlarmIncident:
    """An incident as the metric sees it: the alarm types raised on each device, the root
    device (None: none named) and the type of its earliest alarm (for type coherence)."""

    types: dict[int, set[int]]
    root: int | None
    first_type: int | None = None

    @property
    def devices(self) -> set[int]:
        return set(self.types)

    @property
    def series(self) -> frozenset[tuple[int, int]]:
        """Its alarm series, ``(type, device)``."""
        return frozenset((t, d) for d, ts in self.types.items() for t in ts)


def naive_baseline(alarm_set: AlarmSet, bucket: float = BUCKET) -> list[AlarmIncident]:
    """The README's simplest baseline: buckets of ``start // bucket``; within one, devices
    joined when directly linked; one incident per connected group; the root is the device
    with the earliest alarm (ties: lowest device id), its earliest alarm's type (ties: lowest
    type) the incident's first type. Incidents in bucket order, then by lowest device."""
    adjacency: dict[int, set[int]] = {}
    for a, b in alarm_set.links:
        adjacency.setdefault(a, set()).add(b)
        adjacency.setdefault(b, set()).add(a)
    buckets: dict[int, list[Alarm]] = {}
    for alarm in alarm_set.alarms:
        buckets.setdefault(int(alarm[2] // bucket), []).append(alarm)
    out: list[AlarmIncident] = []
    for key in sorted(buckets):
        first: dict[int, tuple[int, int]] = {}  # device -> (start, type) of its first alarm
        types: dict[int, set[int]] = {}
        for t, d, start, _ in buckets[key]:
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
                          alarm_set: AlarmSet | None = None, *,
                          epoch: float = EPOCH) -> list[AlarmIncident]:
    """triage's paged incidents in their final state, in the order they paged: an incident
    that merged into another is folded into the survivor (following ``merged_into``); each
    survivor's alarms are the fingerprints of its last event, its root its last
    ``root_cause.service``. Fingerprints not in ``index`` are ignored. With ``alarm_set``
    (and the replay's ``epoch``) the first type is found for type coherence.

    >>> index = {"f1": (0, 1), "f2": (2, 3)}
    >>> events = [
    ...   {"type": "incident.created", "incident": {"id": "a", "fingerprints": ["f1"],
    ...    "root_cause": {"service": "dev-001"}}},
    ...   {"type": "incident.created", "incident": {"id": "b", "fingerprints": ["f2"],
    ...    "root_cause": {"service": "dev-003"}}},
    ...   {"type": "incident.updated", "incident": {"id": "b", "fingerprints": ["f2"],
    ...    "merged_into": "a"}},
    ...   {"type": "incident.updated", "incident": {"id": "a", "fingerprints": ["f1", "f2"],
    ...    "root_cause": {"service": "dev-001"}}}]
    >>> [(i.root, i.types) for i in incidents_from_events(events, index)]
    [(1, {1: {0}, 3: {2}})]
    """
    last: dict[str, Mapping[str, Any]] = {}
    merged: dict[str, str] = {}
    paged: dict[str, None] = {}
    for e in events:
        inc = e.get("incident") or {}
        iid = inc.get("id")
        if not iid:
            continue
        if e.get("type") == "incident.created":
            paged.setdefault(iid)
        if inc.get("merged_into"):
            merged[iid] = inc["merged_into"]
        else:
            last[iid] = inc

    def survivor(iid: str) -> str:
        seen = {iid}
        while iid in merged and merged[iid] not in seen:
            iid = merged[iid]
            seen.add(iid)
        return iid

    starts = _series_starts(alarm_set) if alarm_set is not None else None
    out: list[AlarmIncident] = []
    for iid in dict.fromkeys(survivor(i) for i in paged):
        inc = last.get(iid)
        if inc is None:
            continue
        types: dict[int, set[int]] = {}
        for fp in inc.get("fingerprints") or []:
            found = index.get(fp)
            if found is not None:
                types.setdefault(int(found[1]), set()).add(int(found[0]))
        if not types:
            continue
        root = device_id((inc.get("root_cause") or {}).get("service"))
        first_type = None
        if starts is not None:
            seen_at = parse_timestamp(inc.get("first_seen"), "first_seen") \
                if inc.get("first_seen") else None
            since = (seen_at - epoch) if seen_at is not None else float("-inf")
            first_type = min(((_first_at_or_after(starts.get((t, d), []), since), t, d)
                              for d, ts in types.items() for t in ts))[1]
        out.append(AlarmIncident(types, root, first_type))
    return out


def _series_starts(alarm_set: AlarmSet) -> dict[tuple[int, int], list[int]]:
    out: dict[tuple[int, int], list[int]] = {}
    for t, d, start, _ in alarm_set.alarms:  # sorted by start
        out.setdefault((t, d), []).append(start)
    return out


def _first_at_or_after(starts: list[int], since: float) -> float:
    i = bisect_left(starts, since)
    return float(starts[i]) if i < len(starts) else float("inf")


def repeated_pages(events: Iterable[Mapping[str, Any]], index: Mapping[str, Sequence[int]]
                   ) -> int:
    """Pages (``incident.created``) whose alert set at creation, as alarm series, had
    already paged before.

    >>> ev = [{"type": "incident.created", "incident": {"fingerprints": ["f1"]}}] * 3
    >>> repeated_pages(ev, {"f1": (0, 1)})
    2
    """
    seen: set[frozenset[tuple[int, int]]] = set()
    repeats = 0
    for e in events:
        if e.get("type") != "incident.created":
            continue
        fps = (e.get("incident") or {}).get("fingerprints") or []
        key = frozenset((int(v[0]), int(v[1])) for fp in fps if (v := index.get(fp)))
        repeats += key in seen
        seen.add(key)
    return repeats


def repeated_alert_sets(incidents: Iterable[AlarmIncident]) -> int:
    """Incidents whose set of alarm series an earlier one already had: ``repeated_pages`` for
    incidents known only in their final state, such as the baseline's."""
    seen: set[frozenset[tuple[int, int]]] = set()
    repeats = 0
    for inc in incidents:
        repeats += inc.series in seen
        seen.add(inc.series)
    return repeats


# -- the metric ------------------------------------------------------------------------------


def reachability(dag: Any) -> list[frozenset[int]]:
    """For each type, the types reachable from it in the DAG, itself included (the
    transitive closure).

    >>> [sorted(r) for r in reachability([[0, 1, 0], [0, 0, 1], [0, 0, 0]])]
    [[0, 1, 2], [1, 2], [2]]
    """
    m = np.asarray(dag) != 0
    closure = m | np.eye(len(m), dtype=bool)
    while True:  # squaring: at most log2(V) rounds
        nxt = closure | ((closure.astype(np.int64) @ closure.astype(np.int64)) > 0)
        if np.array_equal(nxt, closure):
            break
        closure = nxt
    return [frozenset(np.nonzero(row)[0].tolist()) for row in closure]


def _score(inc: AlarmIncident, root: int | None, reach: Sequence[frozenset[int]]) -> float:
    """The README's incident score for ``root`` (the incident spans several devices)."""
    others = {t for d, ts in inc.types.items() if d != root for t in ts}
    reached: set[int] = set()
    for t in inc.types.get(root, ()) if root is not None else ():
        reached |= reach[t]
    return len(others & reached) / len(others)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


def causal_consistency(incidents: Sequence[AlarmIncident], dag: Any, *, rng_seed: int = 0,
                       draws: int = RANDOM_DRAWS, pages: int | None = None) -> dict[str, Any]:
    """The README's metric and its references, for one set of incidents.

    ``consistency``: the mean incident score over the incidents spanning several devices
    (``multi_device``; a root outside the incident's devices scores 0, counted in
    ``root_outside``); ``random_root``: the same with a root drawn uniformly among each
    incident's devices, the mean of ``draws`` seeded draws, and ``random_root_expected``,
    its exact expectation; ``type_coherence`` over the ``multi_type`` incidents with two or
    more types and a known first type; ``incidents``; ``pages`` (default: one per
    incident). Scores are None when no incident qualifies."""
    reach = reachability(dag)
    multi = [i for i in incidents if len(i.types) > 1]
    scores = [_score(i, i.root, reach) for i in multi]
    rng = random.Random(rng_seed)
    random_means = [sum(_score(i, rng.choice(sorted(i.types)), reach) for i in multi)
                    / len(multi) for _ in range(draws)] if multi else []
    expected = [sum(_score(i, d, reach) for d in i.types) / len(i.types) for i in multi]
    coherent: list[float] = []
    for i in incidents:
        all_types = {t for ts in i.types.values() for t in ts}
        if len(all_types) >= 2 and i.first_type is not None:
            coherent.append(len(all_types & reach[i.first_type]) / len(all_types))
    return {
        "consistency": _mean(scores),
        "random_root": _mean(random_means),
        "random_root_expected": _mean(expected),
        "incidents": len(incidents),
        "pages": len(incidents) if pages is None else pages,
        "multi_device": len(multi),
        "root_outside": sum(1 for i in multi if i.root not in i.types),
        "type_coherence": _mean(coherent),
        "multi_type": len(coherent),
    }
