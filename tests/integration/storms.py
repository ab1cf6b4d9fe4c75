"""Deterministic alert storms for the Kafka tests, and the reference result from the
embedded runtime (``triage run``) on the same input."""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson

T0 = 1_790_000_000.0  # 2026-09-21: in the past, as real alerts are (event time is bounded
# against the wall clock: intake.max_future_skew)
SENTINEL = "zz-sentinel"
TRIAGE = str(Path(sys.executable).with_name("triage"))


def storm(*, services: int = 30, steps: int = 360, malformed_every: int = 10) -> list[bytes]:
    """Every 30 s of event time, the services in an episode (4 of every 20 minutes, phase
    by service) send two alerts each; a malformed line every ``malformed_every`` steps.
    Ends with two sentinel alerts an hour apart, so every timeout, quiet period and page
    delay of the storm passes in event time (no wall-clock ticks needed)."""
    lines: list[bytes] = []
    for step in range(steps):
        t = T0 + 30 * step
        for s in range(services):
            if (step + 7 * s) % 40 < 8:
                for name, sev in (("HighLatency", "warning"), ("ErrorRate", "critical")):
                    lines.append(orjson.dumps({"alertname": name, "service": f"svc{s:02d}",
                                               "severity": sev, "at": t}))
        if malformed_every and step % malformed_every == 0:
            lines.append(b'{"alertname": "Broken", "service": "svc00", "at": "soon"}')
    end = T0 + 30 * steps
    for i, later in enumerate((3600.0, 7200.0)):
        lines.append(orjson.dumps({"alertname": f"Sentinel{i}", "service": SENTINEL,
                                   "at": end + later}))
    return lines


def embedded(config: Path, lines: list[bytes], tmp: Path) -> list[dict[str, Any]]:
    """Incident events of ``triage run`` (one process, event time) on ``lines``."""
    source = tmp / "storm.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    out = tmp / "embedded.jsonl"
    subprocess.run([TRIAGE, "run", "--config", str(config), "--input", str(source),
                    "--output", str(out), "--dead-letter", str(tmp / "embedded-dead.jsonl"),
                    "--quiet"], check=True, timeout=120)
    return [orjson.loads(x) for x in out.read_bytes().splitlines() if x]


def without_sentinel(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if SENTINEL not in e["incident"]["services"]]


def check_effectively_once(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Every duplicate is an exact copy with the same event id, and no incident is created
    twice; returns the events by id."""
    by_id: dict[str, dict[str, Any]] = {}
    created: dict[str, set[str]] = defaultdict(set)
    for e in events:
        seen = by_id.setdefault(e["event_id"], e)
        assert seen == e, (f"{e['event_id']} delivered twice with different content: "
                           f"{_differences(seen, e)}")
        if e["type"] == "incident.created":
            created[e["incident"]["id"]].add(e["event_id"])
    twice = {i: ids for i, ids in created.items() if len(ids) > 1}
    assert not twice, f"incidents created twice: {twice}"
    return by_id


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Where two event records differ (for assertion messages)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys(), key=str)
                for d in _differences(a.get(k), b.get(k), f"{path}.{k}")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def summary(events: list[dict[str, Any]]) -> dict[str, tuple[Any, ...]]:
    """Per incident: its alerts (fingerprints), services, final status and priority, and
    the event types it had. What a consumer acts on; timing of updates aside."""
    out: dict[str, tuple[Any, ...]] = {}
    types: dict[str, set[str]] = defaultdict(set)
    last: dict[str, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: (e["incident"]["id"], e["incident"]["sequence"])):
        inc = e["incident"]
        types[inc["id"]].add(e["type"])
        last[inc["id"]] = inc
    for inc_id, inc in last.items():
        out[inc_id] = (tuple(inc["fingerprints"]), tuple(inc["services"]), inc["status"],
                       inc["priority"], inc["first_seen"], tuple(sorted(types[inc_id])))
    return out
