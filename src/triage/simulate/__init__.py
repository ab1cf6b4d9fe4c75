"""The storm simulator: realistic alert storms with known truth, for measuring triage.

``simulate(...)`` injects failures and noise on a topology (``scenario``), delivers them the
way Alertmanager would (``deliver``, ``emit``) and writes ``alerts.jsonl``,
``changes.jsonl``, ``truth.json`` and a ``triage.yaml`` to replay them. ``score`` compares
triage's incident events with the truth. See ``docs/simulation.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import yaml

from triage.core.topology import Topology
from triage.simulate.emit import (
    DeliveryOptions,
    Storm,
    catalog_yaml,
    change_lines,
    deliver,
    services_yaml,
    truth_document,
    write_config,
    write_lines,
)
from triage.simulate.rules import RuleCatalog
from triage.simulate.scenario import Scenario, ScenarioOptions, build_scenario

__all__ = ["DeliveryOptions", "RuleCatalog", "ScenarioOptions", "SimulationResult",
           "default_rules_dir", "load_sim_topology", "simulate"]


def default_rules_dir() -> Path | None:
    """``../shared/data/alert-rules/awesome-prometheus-alerts`` beside the repository (or the
    working directory), if it exists."""
    here = Path(__file__).resolve()
    candidates = [p / "shared" / "data" / "alert-rules" / "awesome-prometheus-alerts"
                  for p in (*here.parents, Path.cwd(), Path.cwd().parent)]
    return next((c for c in candidates if c.is_dir()), None)


@dataclass(slots=True)
class SimulationResult:
    out: Path
    scenario: Scenario
    storm: Storm
    truth: dict[str, Any]
    config: Path
    rules: RuleCatalog
    topology: Topology


def load_sim_topology(out: Path, *, topology: Path | None, catalog: Path | None,
                      services: int | None, seed: int) -> tuple[Topology, Path, Path | None]:
    """The topology to simulate on, and the files ``triage.yaml`` should point at.

    Either a file (services YAML, GraphML or Kubernetes manifests) with an optional catalog
    (a catalog or services YAML; its ``depends_on`` are dropped and it is written to
    ``OUT/catalog.yaml``), or a generated graph of ``services`` services written to
    ``OUT/services.yaml``."""
    from triage.app.settings import TopologySettings
    from triage.loaders.topology import load_topology
    from triage.simulate.graphs import layered_topology

    out.mkdir(parents=True, exist_ok=True)
    if services is not None:
        topo = layered_topology(services, seed=seed)
        path = out / "services.yaml"
        path.write_text(yaml.safe_dump(services_yaml(topo), sort_keys=False))
        return topo, path, None
    if topology is None:
        raise ValueError("give a topology file or a number of services to generate")
    catalog_out = None
    if catalog is not None:
        data = yaml.safe_load(catalog.read_text()) or {}
        catalog_out = out / "catalog.yaml"
        catalog_out.write_text(yaml.safe_dump(catalog_yaml(data), sort_keys=False))
    topo, _ = load_topology(TopologySettings(file=topology, catalog=catalog_out))
    return topo, topology, catalog_out


def simulate(out: Path, *, topology: Path | None = None, catalog: Path | None = None,
             services: int | None = None, rules_dir: Path | None = None,
             scenario: ScenarioOptions | None = None,
             delivery: DeliveryOptions | None = None) -> SimulationResult:
    """Generate a storm with ground truth into ``out`` (deterministic for the seed)."""
    opts = scenario or ScenarioOptions()
    dopts = delivery or DeliveryOptions(seed=opts.seed)
    topo, topo_file, catalog_file = load_sim_topology(out, topology=topology, catalog=catalog,
                                                      services=services, seed=opts.seed)
    rules = RuleCatalog.load(rules_dir)
    sc = build_scenario(topo, rules, opts)
    storm = deliver(sc, dopts)
    write_lines(out / "alerts.jsonl", storm.lines)
    write_lines(out / "changes.jsonl", change_lines(sc))
    meta = {"seed": opts.seed, "minutes": opts.minutes, "start": sc.start, "end": sc.end,
            "topology": (f"generated:{services}" if services is not None else str(topo_file)),
            "services": len(topo), "rules": rules.source,
            "format": dopts.format, "group_interval": dopts.group_interval,
            "ha_duplicates": dopts.ha_duplicates}
    truth = truth_document(sc, storm, meta=meta)
    (out / "truth.json").write_bytes(orjson.dumps(truth, option=orjson.OPT_INDENT_2
                                                  | orjson.OPT_SORT_KEYS))
    config = write_config(out, sc, topology_file=topo_file, catalog_file=catalog_file)
    return SimulationResult(out, sc, storm, truth, config, rules, topo)
