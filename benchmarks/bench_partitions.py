"""The Kafka path's two stages over several partitions, in process, against ``triage run``
(issue 12): how many of the embedded run's incidents come out identical, whatever order the
partitions are read in, with the stage-2 clock of before issue 12 beside it.

    python benchmarks/bench_partitions.py [--steps 120] [--orders 4] [--partitions 1,3,6]

The storm is the integration tests' (``tests/integration/storms.py``), produced unkeyed (a
random partition per line, as kcat does), over a 30-service topology of trees
(``tests/streams/harness.py``); partitions are read in random weighted orders, one
partition up to 3x faster than another. "old clock" strips the upstream marker from the
keyed records, so stage 2 follows the fastest upstream as it did before issue 12 (stage 1
is today's in both rows). Run from the repository root.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

import yaml
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.integration.conftest import CONFIG
from tests.integration.storms import storm, without_sentinel
from tests.streams.harness import Streams, embedded, outcome, services_yaml

from machine import describe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=120)
    ap.add_argument("--orders", type=int, default=4)
    ap.add_argument("--partitions", default="1,3,6")
    args = ap.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        (folder / "services.yaml").write_text(yaml.safe_dump(services_yaml()))
        config = folder / "triage.yaml"
        config.write_text(yaml.safe_dump(
            {**CONFIG, "topology": {"file": str(folder / "services.yaml")}}))
        lines = storm(steps=args.steps)
        want = outcome(without_sentinel(embedded(config, lines)))
        table = Table(title=f"{len(lines)} lines, triage run: {len(want)} incidents; "
                            f"{args.orders} read orders")
        for col in ("raw partitions", "clock", "created (min-max)",
                    "identical (min-max)", "records behind the clock (min-max)"):
            table.add_column(col, justify="right")
        for raw in (int(x) for x in args.partitions.split(",")):
            for legacy in (True, False):
                rows = []
                for seed in range(args.orders):
                    rng = random.Random(seed)
                    streams = Streams(config, raw, 3, legacy=legacy)
                    streams.produce(lines, rng)
                    streams.run(rng)
                    got = outcome(without_sentinel(streams.events))
                    rows.append((len(got), sum(1 for k, v in want.items() if got.get(k) == v),
                                 streams.incidents.counts()["late_records"]))
                table.add_row(str(raw), "old" if legacy else "now",
                              *(f"{min(r[i] for r in rows)}-{max(r[i] for r in rows)}"
                                for i in range(3)))
        console.print(table)
        console.print(describe())


if __name__ == "__main__":
    main()
