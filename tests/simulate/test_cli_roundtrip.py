"""simulate -> run -> evaluate through the CLI, on small storms."""

from __future__ import annotations

from pathlib import Path

import orjson
from typer.testing import CliRunner

from triage.cli import app

runner = CliRunner()


def roundtrip(out: Path, *source: str) -> dict[str, object]:
    sim = runner.invoke(app, ["simulate", *source, "--minutes", "90", "--seed", "3",
                              "--out", str(out)])
    assert sim.exit_code == 0, sim.output
    check = runner.invoke(app, ["check-config", str(out / "triage.yaml")])
    assert check.exit_code == 0, check.output
    run = runner.invoke(app, ["run", "-q", "--config", str(out / "triage.yaml"),
                              "--input", str(out / "alerts.jsonl"),
                              "--output", str(out / "incidents.jsonl"),
                              "--dead-letter", str(out / "dead.jsonl")])
    assert run.exit_code == 0, run.output
    assert (out / "dead.jsonl").read_bytes() == b""  # the storm is valid input
    ev = runner.invoke(app, ["evaluate", "--truth", str(out / "truth.json"),
                             "--incidents", str(out / "incidents.jsonl"), "--details"])
    assert ev.exit_code == 0, ev.output
    assert "incident recall" in ev.output
    result: dict[str, object] = orjson.loads((out / "evaluation.json").read_bytes())
    return result


def test_roundtrip_on_online_boutique(shared_data: Path, tmp_path: Path) -> None:
    manifests = shared_data / "topologies" / "online-boutique" / "kubernetes-manifests.yaml"
    catalog = Path(__file__).parents[2] / "src/triage/demo_assets/boutique-services.yaml"
    r = roundtrip(tmp_path, "--topology", str(manifests), "--catalog", str(catalog))
    assert r["true_incidents"] >= 1
    assert r["incident_recall"] >= 0.9  # type: ignore[operator]
    assert r["compression"] >= 0.8  # type: ignore[operator]


def test_roundtrip_on_a_generated_graph(tmp_path: Path) -> None:
    r = roundtrip(tmp_path, "--services", "150", "--rules", str(tmp_path / "none"))
    assert r["true_incidents"] >= 2
    assert r["incident_recall"] >= 0.9  # type: ignore[operator]
    assert r["compression"] >= 0.8  # type: ignore[operator]
    assert r["pages"] >= r["true_pages"]  # type: ignore[operator]


def test_simulate_needs_one_topology(tmp_path: Path) -> None:
    r = runner.invoke(app, ["simulate", "--out", str(tmp_path)])
    assert r.exit_code == 2
