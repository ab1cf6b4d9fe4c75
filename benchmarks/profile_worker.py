"""Where one ``triage worker`` spends its time on a backlog: py-spy over the worker of
``bench_streaming.py`` part (b), summarised by layer.

    python benchmarks/profile_worker.py [--alerts 30000] [--out benchmarks/results]
                                        [--partitions 1] [--unkeyed]

Needs ``py-spy`` (``pip install -e '.[profile]'``) and Java (the local broker). Writes the
raw collapsed stacks (``worker_profile.txt``, for speedscope or flamegraph.pl) and prints
the share of samples per layer (inclusive: a frame anywhere on the stack) and the top
functions by own time, with the microseconds per alert each stands for.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_streaming import Case, local_broker, produce, storm
from machine import describe

ROOT = Path(__file__).resolve().parents[1]
PY_SPY = str(Path(sys.executable).with_name("py-spy"))

# (layer, a substring of a frame "function (file:line)"), first match wins per stack level
LAYERS = (
    ("stage 1: triage intake (decode, gates, dedup)", "triage/streams/stages.py"),
    ("stage 1+2: triage agents (batching, delivery, state)", "triage/streams/agents.py"),
    ("core pipeline (intake)", "triage/core/pipeline.py"),
    ("core normalize", "triage/core/normalize"),
    ("core dedup", "triage/core/dedup.py"),
    ("incident engine", "triage/core/incidents"),
    ("faust streams/tables", "faust/"),
    ("aiokafka", "aiokafka/"),
    ("mode (faust's service runtime)", "mode/"),
    ("asyncio event loop", "asyncio/"),
    ("orjson", "orjson"),
)


def summarise(raw: Path, alerts: int, seconds: float) -> str:
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = stack.split(";")
        own[frames[-1]] += count
        for layer, needle in LAYERS:
            if any(needle in f for f in frames):
                inclusive[layer] += count
    per_alert_us = seconds / alerts * 1e6 if alerts else 0.0
    out = [f"{total:,} samples over {seconds:.1f} s, {alerts:,} alerts: "
           f"{per_alert_us:.0f} us of wall time per alert",
           "share of samples with a frame of (inclusive; layers overlap):"]
    for layer, _ in LAYERS:
        share = inclusive[layer] / total if total else 0.0
        out.append(f"  {share:6.1%}  {share * per_alert_us:7.1f} us/alert  {layer}")
    out.append("top 25 functions by own time:")
    for frame, count in own.most_common(25):
        share = count / total
        out.append(f"  {share:6.1%}  {share * per_alert_us:7.1f} us/alert  {frame[:110]}")
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--alerts", type=int, default=60_000)
    ap.add_argument("--seconds", type=float, default=8.0, help="how long to sample")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--partitions", type=int, default=1)
    ap.add_argument("--unkeyed", action="store_true",
                    help="produce unkeyed (as kcat), not keyed by fingerprint")
    args = ap.parse_args()
    if not Path(PY_SPY).exists():
        print("py-spy is missing: pip install -e '.[profile]'", file=sys.stderr)
        return 2
    print("machine:", describe())
    lines = storm(args.alerts)
    args.out.mkdir(parents=True, exist_ok=True)
    raw = args.out / "worker_profile.txt"
    with local_broker("profile") as (broker, _), tempfile.TemporaryDirectory() as tmp:
        case = Case(broker.bootstrap, Path(tmp), partitions=args.partitions)
        try:
            asyncio.run(produce(broker.bootstrap, case.topics["raw"], lines,
                                keyed=args.partitions > 1 and not args.unkeyed))
            case.start_worker()
            case.wait_received(2000, timeout=120)  # started, and into the backlog
            before, started = case.received(), time.monotonic()
            subprocess.run([PY_SPY, "record", "--pid", str(case.workers[0][0].pid),
                            "--duration", str(int(args.seconds)), "--rate", "250",
                            "--format", "raw", "--output", str(raw), "--nonblocking"],
                           check=True, capture_output=True)
            seconds, taken = time.monotonic() - started, case.received() - before
        finally:
            case.close()
    if taken >= len(lines) - 10:
        print("warning: the backlog ran out while sampling; use more --alerts",
              file=sys.stderr)
    print(f"profile: {raw} ({taken:,.0f} alerts taken in {seconds:.1f} s: "
          f"{taken / seconds:,.0f} alerts/s while sampled)")
    print(summarise(raw, int(taken), seconds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
