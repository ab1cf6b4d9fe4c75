"""End to end on the demo storm: what a responder would expect to see."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import orjson
import pytest
from rich.console import Console

from triage.app.demo import run_demo

SCHEMA = json.loads((Path(__file__).resolve().parents[2] / "schemas" /
                     "incident-event.schema.json").read_text())


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[dict[str, Any]], Any]:
    out = tmp_path_factory.mktemp("demo")
    incidents, result = run_demo(out, Console(file=open("/dev/null", "w")))  # noqa: SIM115
    return [orjson.loads(line) for line in incidents.read_bytes().splitlines()], result


def latest(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    state: dict[str, dict[str, Any]] = {}
    for e in events:
        state[e["incident"]["id"]] = e["incident"]
    return state


def test_every_event_follows_the_schema(demo: Any) -> None:
    events, _ = demo
    for e in events:
        jsonschema.validate(e, SCHEMA)
    ids = [e["event_id"] for e in events]
    assert len(ids) == len(set(ids))


def test_one_incident_for_the_cascade_with_cartservice_as_root_cause(demo: Any) -> None:
    events, _ = demo
    cascade = [i for i in latest(events).values() if "cartservice" in i["services"]]
    assert len(cascade) == 1
    inc = cascade[0]
    assert set(inc["services"]) == {"cartservice", "checkoutservice", "frontend"}
    assert inc["root_cause"]["service"] == "cartservice"
    assert "2 of 2 other failing services depend on cartservice" in inc["root_cause"]["reason"]
    assert inc["suspect_changes"][0]["id"] == "deploy-8812"  # the bad deploy, top suspect
    assert all(s["id"] != "deploy-7713" for s in inc["suspect_changes"])  # 3.5 h earlier
    assert inc["priority"] == "P1" and inc["war_room"]["open"] is True
    assert inc["owner"]["team"] == "cart" and inc["owner"]["person"]
    assert inc["status"] == "resolved"
    created = [e for e in events if e["type"] == "incident.created"
               and e["incident"]["id"] == inc["id"]]
    assert len(created) == 1  # one page for the whole cascade


def test_noise_is_not_paged_and_the_flapping_alert_is_held(demo: Any) -> None:
    events, result = demo
    paged_services = {s for i in latest(events).values() for s in i["services"]}
    assert "node" not in paged_services  # disk noise below threshold, flapping link
    assert "shippingservice" not in paged_services  # maintenance window
    assert result.counts["suppressed.threshold"] == 2
    assert result.counts["suppressed.maintenance"] == 3
    assert result.counts["suppressed.silence"] >= 3  # Watchdog
    assert result.counts["suppressed.flapping"] >= 1
    assert result.incident_counts["flapping_held"] == 1
    assert result.counts["failed"] == 2


def test_the_later_adservice_slowdown_is_a_separate_lower_priority_incident(demo: Any) -> None:
    events, _ = demo
    ads = [i for i in latest(events).values() if i["services"] == ["adservice"]]
    assert len(ads) == 1
    assert ads[0]["priority"] in ("P2", "P3", "P4")
    assert ads[0]["owner"]["team"] == "catalog"
    assert ads[0]["war_room"]["open"] is False


def test_triage_demo_command_runs(tmp_path: Path) -> None:
    env = {**os.environ, "COLUMNS": "220"}
    proc = subprocess.run([sys.executable, "-m", "triage.cli", "demo", "--out", str(tmp_path)],
                          capture_output=True, timeout=120, check=False, env=env)
    assert proc.returncode == 0, proc.stderr.decode()
    assert b"cartservice" in proc.stderr and b"deploy-8812" in proc.stderr
    assert (tmp_path / "incidents.jsonl").stat().st_size > 0
