"""Rebalance benchmark: how long a worker that keeps partitions stops when another joins.

    python benchmarks/bench_rebalance.py [--alerts 20000 80000] [--repeats 3] [--json out.json]
                                         [--plot benchmarks/results/rebalance_pause.png]
    python benchmarks/bench_rebalance.py --replot out.json --plot out.png   # no broker

Starts a local broker (``deploy/kafka/kafka-local``, free ports, a temporary data dir) and
stops it at the end. For each state size (``--alerts`` distinct alerts on 4 partitions,
keyed by fingerprint, each firing once: one stage-1 state record per alert and the
incidents they open), worker A triages them all alone, then worker B joins. A keeps 2 of
the 4 partitions. Measured from A's log, per run:

* **recovery**: faust's ``_on_partitions_assigned`` to ``Worker ready`` (A's table recovery
  and the restore of its stages): the time A's streams wait after the new assignment;
* **pause**: the revoke that starts the rebalance to ``Worker ready``: all A does not
  triage (includes waiting for B to join the group, the same for both variants).

Variants, alternated within one run:

* ``triage``: the worker as shipped: its tables tell faust the offset of their last
  acknowledged changelog write, so kept partitions are not read back;
* ``faust default``: the same worker with that turned off (``StateTable.persisted_offset``
  returns None, faust's in-memory store's answer): faust re-reads the changelog of every
  kept partition from where it last read.

Medians over ``--repeats``; the ratio is of medians in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson

from bench_streaming import Case, free_port, java_or_say_so, local_broker, produce
from machine import describe

T0 = 1_800_000_000.0
VARIANTS = {
    "triage": "from triage.cli import main; main()",
    "faust default": ("import triage.streams.agents as a; "
                      "a.StateTable.persisted_offset = lambda self, tp: None; "
                      "from triage.cli import main; main()"),
}
STAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3})\]")


def alerts(n: int) -> list[bytes]:
    """``n`` distinct alerts, each firing once, 10 ms of event time apart."""
    return [orjson.dumps({"alertname": f"Alert{i}", "service": f"svc{i % 400:03d}",
                          "severity": "warning", "at": T0 + i * 0.01}) for i in range(n)]


def start(case: Case, code: str, name: str) -> tuple[subprocess.Popen[bytes], int, Path]:
    port = free_port()
    log = case.tmp / f"{case.app_id}-{name}.log"
    proc = subprocess.Popen([sys.executable, "-c", code, "worker", "--config",
                             str(case.config), "--log-level", "info", "--metrics-port",
                             str(port), "--idle-after", "600"],
                            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=case.tmp,
                            start_new_session=True)
    case.workers.append((proc, port))
    return proc, port, log


def stamp(line: str) -> float:
    m = STAMP.match(line)
    if m is None:
        raise ValueError(line)
    return datetime.strptime(m[1], "%Y-%m-%d %H:%M:%S,%f").timestamp()


def second_rebalance(log: Path) -> dict[str, float] | None:
    """(recovery, pause) seconds of the worker's second assignment, from its log."""
    lines = [ln for ln in log.read_text(errors="replace").splitlines() if STAMP.match(ln)]
    revokes = [i for i, ln in enumerate(lines) if "Revoking previously assigned" in ln]
    assigned = [i for i, ln in enumerate(lines) if "Executing _on_partitions_assigned" in ln]
    if len(revokes) < 2 or len(assigned) < 2:
        return None
    ready = next((i for i in range(assigned[1], len(lines))
                  if "Worker ready" in lines[i]), None)
    if ready is None:
        return None
    end = stamp(lines[ready])
    return {"recovery": end - stamp(lines[assigned[1]]), "pause": end - stamp(lines[revokes[1]])}


def kept_read_back(log: Path) -> bool:
    """Whether faust read changelog records back in the second rebalance."""
    text = log.read_text(errors="replace")
    return text.count("Restoring state from changelog topics") >= 1


def one_run(bootstrap: str, tmp: Path, lines: list[bytes], variant: str) -> dict[str, Any]:
    case = Case(bootstrap, tmp, partitions=4)
    try:
        asyncio.run(produce(bootstrap, case.topics["raw"], lines, keyed=True))
        _, _, log_a = start(case, VARIANTS[variant], "a")
        case.wait_received(len(lines), timeout=600)
        time.sleep(2.0)  # the last state writes and their acks
        start(case, VARIANTS["triage"], "b")
        case.wait_members(2, timeout=120)
        deadline = time.monotonic() + 120
        while (result := second_rebalance(log_a)) is None:
            if time.monotonic() > deadline:
                raise RuntimeError(f"worker A did not finish its rebalance: {log_a}")
            time.sleep(0.2)
        return {**result, "read_back": kept_read_back(log_a)}
    finally:
        case.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--alerts", type=int, nargs="+", default=[20_000, 80_000])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--plot", type=Path, help="draw the pauses by state size into this PNG")
    ap.add_argument("--replot", type=Path, help="only plot the runs of an earlier --json")
    args = ap.parse_args(argv)
    if args.replot:
        plot(orjson.loads(args.replot.read_bytes())["runs"], args.plot or
             args.replot.with_suffix(".png"))
        return 0
    if not java_or_say_so():
        return 2
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    print(f"machine: {describe(memory=True)}")
    began = time.monotonic()
    results: dict[str, Any] = {}
    with local_broker("bench-rebalance-") as (broker, tmp):
        for n in args.alerts:
            lines = alerts(n)
            runs: dict[str, list[dict[str, Any]]] = {v: [] for v in VARIANTS}
            for r in range(args.repeats):
                for variant in VARIANTS:
                    got = one_run(broker.bootstrap, tmp, lines, variant)
                    runs[variant].append(got)
                    print(f"{n:,} alerts, run {r + 1}, {variant}: recovery "
                          f"{got['recovery']:.2f} s, pause {got['pause']:.2f} s, "
                          f"read back: {got['read_back']}", flush=True)
            results[str(n)] = runs
    report(results, time.monotonic() - began)
    if args.json:
        args.json.write_text(json.dumps({"machine": describe(memory=True), "runs": results},
                                        indent=2))
    if args.plot:
        plot(results, args.plot)
    return 0


def plot(results: dict[str, Any], path: Path) -> None:
    """Median pause by state size, one line per variant, each run a dot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted(results, key=int)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for variant, marker, color in zip(VARIANTS, "os", ("tab:blue", "tab:orange"),
                                      strict=True):
        xs = [int(n) for n in sizes]
        ax.plot(xs, [statistics.median(r["pause"] for r in results[n][variant])
                     for n in sizes], marker + "-", color=color, label=f"{variant} (median)")
        ax.scatter([int(n) for n in sizes for _ in results[n][variant]],
                   [r["pause"] for n in sizes for r in results[n][variant]], s=12,
                   alpha=0.4, color=color)
    ax.set_xlabel("alerts in the state of the worker (4 partitions, 2 kept)")
    ax.set_ylabel("pause of the worker that keeps partitions (s)")
    ax.set_title("A second worker joins")
    ax.set_ylim(bottom=0)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90)
    print(f"plot: {path}")


def report(results: dict[str, Any], seconds: float) -> None:
    print("\n| alerts in state | variant | recovery (median) | pause (median) | read back |")
    print("|---:|---|---:|---:|---|")
    for n, runs in results.items():
        med = {v: {k: statistics.median(r[k] for r in rs) for k in ("recovery", "pause")}
               for v, rs in runs.items()}
        for v, rs in runs.items():
            print(f"| {int(n):,} | {v} | {med[v]['recovery']:.2f} s | {med[v]['pause']:.2f} s "
                  f"| {sum(r['read_back'] for r in rs)} of {len(rs)} |")
        ours, peer = med["triage"], med["faust default"]
        print(f"| | ratio faust default / triage | {peer['recovery'] / ours['recovery']:.1f}x "
              f"| {peer['pause'] / ours['pause']:.1f}x | |")
    print(f"\ntotal {seconds:.0f} s")


if __name__ == "__main__":
    raise SystemExit(main())
