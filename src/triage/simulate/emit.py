"""Write a scenario as a storm: ``alerts.jsonl``, ``changes.jsonl``, ``truth.json`` and a
``triage.yaml`` (with thresholds and maintenance windows) to replay it with ``triage run``.

Deliveries follow Alertmanager's timing (``deliver.dispatch``): grouped by alertname and
service, first sent after ``group_wait``, every firing alert re-sent each ``group_interval``,
resolved alerts sent once. A share of deliveries arrives twice, from the second Alertmanager
HA peer, a moment later. Every line is an envelope with ``received_at``, so replays are exact.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import yaml

from triage.core.fingerprint import labelset_fingerprint
from triage.core.timeutil import format_timestamp
from triage.core.topology import Topology
from triage.simulate.deliver import Notification, Series, Timers, dispatch
from triage.simulate.scenario import Scenario

FORMATS = ("alertmanager-webhook", "alertmanager-api-v2")
ZERO_TIME = "0001-01-01T00:00:00Z"


@dataclass(frozen=True, slots=True)
class DeliveryOptions:
    """How the storm reaches triage."""

    group_wait: float = 30.0
    group_interval: float = 300.0  # every firing alert is re-sent at this cadence
    fast_interval: float = 30.0  # the route for fast-moving (flapping) rules
    ha_duplicates: float = 0.3  # share of deliveries the second HA peer also sends
    format: str = "alertmanager-webhook"
    seed: int = 0


@dataclass(slots=True)
class Storm:
    """The delivered storm and the per-alert truth."""

    lines: list[bytes] = field(default_factory=list)
    alerts_in: int = 0
    deliveries: int = 0
    ha_duplicates: int = 0
    first_delivery: dict[str, float] = field(default_factory=dict)  # fingerprint -> time
    delivered: dict[str, int] = field(default_factory=dict)  # fingerprint -> alert count


def _ts(t: float) -> str:
    out = format_timestamp(t)
    assert out is not None
    return out


def deliver(scenario: Scenario, opts: DeliveryOptions) -> Storm:
    """The lines triage receives, in time order (deterministic for ``opts.seed``)."""
    if opts.format not in FORMATS:
        raise ValueError(f"unknown format {opts.format!r}; one of {', '.join(FORMATS)}")
    series = scenario.series
    notes = dispatch(series, group_wait=opts.group_wait, group_interval=opts.group_interval,
                     repeat_interval=opts.group_interval,
                     routes={"fast": Timers(opts.group_wait, opts.fast_interval,
                                            opts.fast_interval)})
    fps = [labelset_fingerprint(s.labels) for s in series]
    rng = random.Random(opts.seed * 7919 + 17)
    storm = Storm()
    timed: list[tuple[float, int, bytes]] = []
    for n, note in enumerate(notes):
        alerts = [_alert(series[i], note, firing=True, fmt=opts) for i in note.firing]
        alerts += [_alert(series[i], note, firing=False, fmt=opts) for i in note.resolved]
        copies = [note.at]
        if rng.random() < opts.ha_duplicates:
            copies.append(note.at + rng.uniform(0.05, 2.0))
            storm.ha_duplicates += 1
        for k, at in enumerate(copies):
            payload = (_webhook(alerts, note, peer=k) if opts.format == "alertmanager-webhook"
                       else alerts)
            timed.append((at, n * 2 + k, orjson.dumps({"received_at": _ts(at),
                                                        "payload": payload})))
            storm.deliveries += 1
            storm.alerts_in += len(alerts)
            for i in (*note.firing, *note.resolved):
                fp = fps[i]
                storm.delivered[fp] = storm.delivered.get(fp, 0) + 1
                if fp not in storm.first_delivery:
                    storm.first_delivery[fp] = at
    timed.sort(key=lambda x: (x[0], x[1]))
    storm.lines = [line for _, _, line in timed]
    return storm


def _alert(s: Series, note: Notification, *, firing: bool, fmt: DeliveryOptions
           ) -> dict[str, Any]:
    if firing:
        interval = s.firing_at(note.at)
        assert interval is not None
        start, end = interval[0], None
    else:
        end = s.last_end_before(note.at)
        start = next((a for a, b in s.intervals if b == end), s.intervals[0][0])
    if fmt.format == "alertmanager-api-v2":
        # API v2: endsAt is "valid until" while firing (as Prometheus sends it)
        valid = end if end is not None else note.at + 4 * fmt.group_interval
        return {"labels": s.labels, "annotations": s.annotations, "startsAt": _ts(start),
                "endsAt": _ts(valid), "generatorURL": "http://prometheus:9090/graph"}
    return {"status": "firing" if firing else "resolved", "labels": s.labels,
            "annotations": s.annotations, "startsAt": _ts(start),
            "endsAt": _ts(end) if end is not None else ZERO_TIME,
            "generatorURL": "http://prometheus:9090/graph",
            "fingerprint": labelset_fingerprint(s.labels)}


def _webhook(alerts: list[dict[str, Any]], note: Notification, *, peer: int) -> dict[str, Any]:
    group = {"alertname": note.group[0], "service": note.group[1]}
    group = {k: v for k, v in group.items() if v}
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    key = ",".join(f'{k}="{v}"' for k, v in group.items())
    return {"version": "4", "groupKey": "{}:{" + key + "}", "truncatedAlerts": 0,
            "status": "firing" if any(a["status"] == "firing" for a in alerts) else "resolved",
            "receiver": "triage", "groupLabels": group, "commonLabels": common,
            "commonAnnotations": {}, "externalURL": f"http://alertmanager-{peer}:9093",
            "alerts": alerts}


# -- truth and config -------------------------------------------------------------------------


def truth_document(scenario: Scenario, storm: Storm, *, meta: dict[str, Any]) -> dict[str, Any]:
    """``truth.json``: per alert its true incident or noise kind; per incident its root
    cause, causal change and true priority; the counts the scorer needs."""
    alerts: dict[str, dict[str, Any]] = {}
    by_incident: dict[str, list[str]] = {}
    for s in scenario.series:
        fp = labelset_fingerprint(s.labels)
        if fp not in storm.delivered:
            continue  # never reached a receiver (fired and resolved within group_wait)
        noise = s.truth[6:] if s.truth.startswith("noise:") else None
        alerts[fp] = {"incident": None if noise else s.truth, "noise": noise,
                      "alertname": s.labels.get("alertname"),
                      "service": s.labels.get("service"),
                      "severity": s.labels.get("severity"),
                      "first_delivery": storm.first_delivery[fp],
                      "deliveries": storm.delivered[fp]}
        if noise is None:
            by_incident.setdefault(s.truth, []).append(fp)
    incidents = []
    for inc in scenario.incidents:
        inc.fingerprints = sorted(by_incident.get(inc.id, []))
        inc.first_alert_at = min((storm.first_delivery[f] for f in inc.fingerprints),
                                 default=None)
        incidents.append(inc.to_json())
    noise_counts: dict[str, int] = {}
    for a in alerts.values():
        if a["noise"]:
            noise_counts[a["noise"]] = noise_counts.get(a["noise"], 0) + 1
    return {"schema": "triage-simulation-truth/1", **meta,
            "counts": {"alerts_in": storm.alerts_in, "deliveries": storm.deliveries,
                       "ha_duplicate_deliveries": storm.ha_duplicates,
                       "distinct_alerts": len(alerts), "incidents": len(incidents),
                       "noise_alerts": noise_counts,
                       "changes": len(scenario.changes)},
            "incidents": incidents, "alerts": alerts}


def write_config(out: Path, scenario: Scenario, *, topology_file: Path,
                 catalog_file: Path | None) -> Path:
    """``triage.yaml`` (and ``thresholds.yaml``) for replaying the storm with ``triage run``:
    the topology and catalog, the change records, the Watchdog silence, the maintenance
    windows the scenario used and tuned thresholds for its noisy rules."""
    thresholds = {"version": 1, "generated_by": "triage simulate", "rules": [
        {"match": {"alertname": name}, "threshold": th, "direction": "above",
         "fp_rate_before": before, "fp_rate_after": after}
        for name, (th, before, after) in sorted(scenario.thresholds.items())]}
    (out / "thresholds.yaml").write_text(yaml.safe_dump(thresholds, sort_keys=False))
    def where(path: Path) -> str:
        # files the simulator wrote stay relative, so the folder can be moved
        path = path.resolve()
        return path.name if path.parent == out.resolve() else str(path)

    topology: dict[str, Any] = {"file": where(topology_file), "service_labels": ["service"]}
    if catalog_file is not None:
        topology["catalog"] = where(catalog_file)
    config = {
        "topology": topology,
        "changes_file": "changes.jsonl",
        "thresholds_file": "thresholds.yaml",
        "silences": [{"id": "sim-watchdog", "matchers": ['alertname="Watchdog"'],
                      "starts_at": _ts(scenario.start - 86400),
                      "ends_at": _ts(scenario.end + 86400), "created_by": "triage simulate",
                      "comment": "dead man's switch, never a page"}],
        "maintenance": [{"id": m["id"], "matchers": [f'service="{m["service"]}"'],
                         "starts_at": _ts(m["starts_at"]), "ends_at": _ts(m["ends_at"]),
                         "created_by": "triage simulate", "comment": "planned maintenance"}
                        for m in scenario.maintenance],
    }
    path = out / "triage.yaml"
    path.write_text("# Written by `triage simulate`: replay with\n"
                    "#   triage run --config triage.yaml --input alerts.jsonl "
                    "--output incidents.jsonl\n" + yaml.safe_dump(config, sort_keys=False))
    return path


def services_yaml(topology: Topology) -> dict[str, Any]:
    """A services YAML document (graph, links and catalog) for a topology."""
    services: dict[str, Any] = {}
    for name in sorted(topology.graph.nodes):
        info = topology.info(name)
        entry: dict[str, Any] = {}
        deps = sorted(topology.graph.successors(name))
        if deps:
            entry["depends_on"] = deps
        for key in ("team", "tier", "business_service", "runbook"):
            if getattr(info, key) is not None:
                entry[key] = getattr(info, key)
        if info.users:
            entry["users"] = info.users
        services[name] = entry
    doc: dict[str, Any] = {"services": services}
    if topology.has_links:  # undirected links, as sorted [a, b] pairs
        doc["links"] = sorted(sorted(pair) for pair in topology.links.edges)
    if topology.business_tiers:
        doc["business_services"] = {k: {"tier": v}
                                    for k, v in sorted(topology.business_tiers.items())}
    return doc


def catalog_yaml(data: dict[str, Any]) -> dict[str, Any]:
    """A catalog document from a catalog or services YAML (``depends_on`` dropped)."""
    fields = ("team", "tier", "users", "business_service", "runbook")
    services = {name: {k: v for k, v in (entry or {}).items() if k in fields}
                for name, entry in (data.get("services") or {}).items()}
    out: dict[str, Any] = {"services": services}
    if data.get("business_services"):
        out["business_services"] = data["business_services"]
    return out


def write_lines(path: Path, lines: list[bytes]) -> None:
    with path.open("wb") as fh:
        for line in lines:
            fh.write(line)
            fh.write(b"\n")


def change_lines(scenario: Scenario) -> list[bytes]:
    return [orjson.dumps({**c, "at": _ts(c["at"])}) for c in scenario.changes]
