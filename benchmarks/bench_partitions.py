"""The Kafka path's two stages over several partitions, in process, against ``triage run``
(issue 12): how many of the embedded run's incidents come out identical, whatever order and
pace the partitions are read in.

    python benchmarks/bench_partitions.py [--orders 4] [--partitions 1,3,6] [--keyed 3]
        [--storms integration,online-boutique,sock-shop,teastore] [--minutes 120] [--seed 1]
        [--workers 1]
        [--src DIR] [--json FILE]

Storms: the integration tests' (``tests/integration/storms.py``, one alert per line, over a
30-service topology of trees) and simulated ones (``triage.simulate``, Alertmanager webhook
groups of several alerts with background noise, overlapping failures and silent roots;
seed 1). Each is produced two ways: **keyed**, as ``triage serve`` (Kafka mode) publishes a
body, split per alert at the door and keyed by fingerprint (``split_payload``), and
**unkeyed**, a random partition per line, as kcat sends a file. Partitions are read in
random weighted orders (one up to 6x faster than another), ``--orders`` of them.
``--workers N`` spreads the partitions of both topics over N workers (partition p is worker
p % N's), each with its own two stages, as separate processes would be.

A row counts, over the orders (min-max): incidents created, incidents identical to
``triage run`` (ids, root cause and priority at creation and at the end, services, alerts,
final status, event types), stage-2 records behind its clock (late), and the most messages
either stage held at once waiting for the others' time (memory).

``--src DIR`` runs it against another tree's ``src`` (e.g. a worktree of the code before
issue 12: ``git worktree add /tmp/before 84b73ce``, then ``--src /tmp/before/src``), so the
before and after rows come from one command each on one machine. Run from the repository
root; nothing here is tuned (the event-time rules have no parameters fitted to a storm).
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
SIMULATED = {
    "online-boutique": {"topology": SHARED / "topologies/online-boutique/kubernetes-manifests.yaml",
                        "catalog": ROOT / "src/triage/demo_assets/boutique-services.yaml"},
    "sock-shop": {"topology": SHARED / "topologies/sock-shop/services.yaml"},
    "teastore": {"topology": SHARED / "topologies/teastore/services.yaml"},
}


def parse() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--orders", type=int, default=4)
    ap.add_argument("--partitions", default="1,3,6")
    ap.add_argument("--keyed", type=int, default=3, help="alerts.keyed partitions")
    ap.add_argument("--storms", default="integration,online-boutique,sock-shop,teastore")
    ap.add_argument("--minutes", type=int, default=120, help="simulated storms' length")
    ap.add_argument("--workers", type=int, default=1,
                    help="workers the partitions are spread over (each its own two stages)")
    ap.add_argument("--seed", type=int, default=1,
                    help="simulated storms' seed (the integration storm has none)")
    ap.add_argument("--src", type=Path, help="run against this src tree instead")
    ap.add_argument("--json", type=Path)
    return ap.parse_args()


def storms(names: list[str], folder: Path, minutes: int, seed: int = 1
           ) -> dict[str, tuple[Path, list[bytes]]]:
    """name -> (triage.yaml, lines)."""
    import yaml
    from tests.integration.conftest import CONFIG
    from tests.integration.storms import storm
    from tests.streams.harness import services_yaml

    out: dict[str, tuple[Path, list[bytes]]] = {}
    for name in names:
        if name == "integration":
            (folder / "services.yaml").write_text(yaml.safe_dump(services_yaml()))
            config = folder / "triage.yaml"
            config.write_text(yaml.safe_dump(
                {**CONFIG, "topology": {"file": str(folder / "services.yaml")}}))
            out[name] = (config, storm(steps=120))
            continue
        from triage.simulate import ScenarioOptions, default_rules_dir, simulate

        where = folder / name
        sim = simulate(where, rules_dir=default_rules_dir(),
                       scenario=ScenarioOptions(minutes=minutes, seed=seed), **SIMULATED[name])
        lines = [line for line in (where / "alerts.jsonl").read_bytes().splitlines()
                 if line.strip()]
        out[name] = (sim.config, lines)
    return out


def main() -> None:
    args = parse()
    if args.src is not None:
        sys.path.insert(0, str(args.src.resolve()))
    sys.path.insert(0, str(ROOT))
    sys.path.insert(1, str(ROOT / "benchmarks"))
    import orjson
    from rich.console import Console
    from rich.progress import Progress
    from rich.table import Table
    from tests.integration.storms import summary, without_sentinel
    from tests.streams.harness import Streams, embedded, outcome

    import triage
    from machine import describe

    console = Console(width=150)
    console.print(f"triage from {Path(triage.__file__).parent}")
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        made = storms(args.storms.split(","), Path(tmp), args.minutes, args.seed)
        parts = [int(x) for x in args.partitions.split(",")]
        total = len(made) * 2 * len(parts) * args.orders
        with Progress(console=console, transient=True) as progress:
            task = progress.add_task("runs", total=total)
            for name, (config, lines) in made.items():
                want_events = without_sentinel(embedded(config, lines))
                want = (outcome(want_events), summary(want_events))
                for keyed in (True, False):
                    for raw in parts:
                        rows = []
                        started = time.perf_counter()
                        for seed in range(args.orders):
                            rng = random.Random(seed)
                            streams = (Streams(config, raw, args.keyed, workers=args.workers)
                                       if args.workers > 1
                                       else Streams(config, raw, args.keyed))
                            streams.produce(lines, rng, keyed=keyed)
                            streams.run(rng, skew=6.0)
                            got_events = without_sentinel(streams.events)
                            got = (outcome(got_events), summary(got_events))
                            same = sum(1 for k in want[0] if got[0].get(k) == want[0][k]
                                       and got[1].get(k) == want[1].get(k))
                            late = (streams.counts("keyed") if args.workers > 1
                                    else streams.incidents.counts())["late_records"]
                            rows.append((len(got[0]), same, late, streams.peak))
                            progress.advance(task)
                        results.append({
                            "storm": name, "lines": len(lines), "incidents": len(want[0]),
                            "keyed": keyed, "raw": raw, "orders": rows,
                            "seconds": time.perf_counter() - started})
    table = Table(title="incidents of the Kafka path's stages against triage run "
                        f"({args.orders} read orders, {args.keyed} keyed partitions, "
                        f"{args.workers} worker{'s' if args.workers > 1 else ''})")
    for col in ("storm", "lines", "run", "produced", "raw partitions", "created",
                "identical", "late records", "most waiting"):
        table.add_column(col, justify="right")
    for r in results:
        rows = r["orders"]

        def span(i: int, rows: list[tuple[int, ...]] = rows) -> str:
            lo, hi = min(x[i] for x in rows), max(x[i] for x in rows)
            return f"{lo:,}" if lo == hi else f"{lo:,}-{hi:,}"

        table.add_row(r["storm"], f"{r['lines']:,}", str(r["incidents"]),
                      "keyed" if r["keyed"] else "unkeyed", str(r["raw"]),
                      span(0), span(1), span(2), span(3))
    console.print(table)
    console.print(describe())
    if args.json is not None:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
