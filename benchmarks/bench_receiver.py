"""The crash-safe receiver in a storm, beside Alertmanager, in one run (issue 15).

    python benchmarks/bench_receiver.py [--alerts 100000] [--batch 100] [--senders 4]
                                        [--repeats 3] [--json FILE] [--before SRC]

Each receiver is started fresh on 127.0.0.1 and gets the same bodies from the same client:
``--senders`` processes, each with one keep-alive ``http.client`` connection, POST
``/api/v2/alerts`` bodies of ``--batch`` alerts as fast as they are answered.

* **new**: every alert distinct (a storm: 2,000 services x 12 rules x instances), so each is
  a new alert for both receivers (for triage: new dedup state, and an incident decision);
* **repeats**: then the same bodies again (alerts already firing: Prometheus re-sends every
  active alert each evaluation interval).

Receivers: Alertmanager (Debian ``prometheus-alertmanager``), ``triage serve --state`` at
``durability: process`` (survives ``kill -9``: the target) and ``power`` (fsync per group
commit: survives power loss), and ``triage serve`` without state. Reported per receiver and
phase: alerts/s (median over ``--repeats`` fresh starts) and request latency p50 / p99; and
the ratio to Alertmanager in the same run.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from bench_intake import free_port, machine

console = Console(stderr=True)
RULES = ["HighErrorRate", "HighLatencyP99", "PodCrashLooping", "HostHighCpuLoad",
         "KubePodNotReady", "RedisDown", "TargetDown", "HostOutOfMemory", "DiskWillFillIn4h",
         "UpstreamTimeouts", "CertificateExpiry", "ContainerThrottled"]


def storm_bodies(n: int, batch: int) -> list[bytes]:
    """``n`` distinct firing alerts as API v2 bodies of ``batch`` alerts, stamped now."""
    from triage.core.timeutil import format_timestamp

    now = time.time()
    starts, ends = format_timestamp(now - 60), format_timestamp(now + 3600)
    alerts = [{"labels": {"alertname": RULES[i % len(RULES)],
                          "service": f"svc-{(i // len(RULES)) % 2000:04d}",
                          "instance": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:9100",
                          "severity": "critical" if i % 7 == 0 else "warning",
                          "namespace": "prod", "job": "kubernetes-pods"},
               "annotations": {"summary": f"alert {i}"},
               "startsAt": starts, "endsAt": ends,
               "generatorURL": "http://prometheus:9090/graph"} for i in range(n)]
    return [orjson.dumps(alerts[i:i + batch]) for i in range(0, n, batch)]


def _sender(port: int, bodies: list[bytes], start: Any, out: Any) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    latencies = []
    start.wait()
    for body in bodies:
        t0 = time.perf_counter()
        conn.request("POST", "/api/v2/alerts", body=body,
                     headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        latencies.append(time.perf_counter() - t0)
        if resp.status != 200:
            raise SystemExit(f"answered {resp.status}")
    out.put(latencies)


def post_all(port: int, bodies: list[bytes], senders: int) -> tuple[float, list[float]]:
    """Seconds for ``senders`` processes to POST ``bodies`` (split round-robin), and every
    request's latency."""
    ctx = multiprocessing.get_context("fork")
    start, out = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_sender, args=(port, bodies[i::senders], start, out))
             for i in range(senders)]
    for p in procs:
        p.start()
    time.sleep(0.3)  # connected and waiting
    began = time.perf_counter()
    start.set()
    latencies: list[float] = []
    for _ in procs:
        latencies += out.get(timeout=600)
    seconds = time.perf_counter() - began
    for p in procs:
        p.join()
        if p.exitcode:
            raise RuntimeError(f"a sender failed ({p.exitcode})")
    return seconds, latencies


def wait_ready(port: int, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/-/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.1)
    raise RuntimeError("not ready")


BEFORE: Path | None = None  # --before: the src folder of the triage compared against


def start(kind: str, tmp: Path, binary: str | None) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = None
    if kind.endswith("@before"):
        assert BEFORE is not None
        kind = kind.removesuffix("@before")
        env = {**os.environ, "PYTHONPATH": str(BEFORE.resolve())}
    if kind == "alertmanager":
        assert binary is not None
        cfg = tmp / "am.yml"
        cfg.write_text("route:\n  receiver: 'null'\n  group_by: [alertname, service]\n"
                       "receivers:\n  - name: 'null'\n")
        args = [binary, f"--config.file={cfg}", f"--storage.path={tmp}",
                f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="]
    else:
        args = [sys.executable, "-m", "triage.cli", "serve", "--port", str(port),
                "--output", str(tmp / "incidents.jsonl"),
                "--dead-letter", str(tmp / "dead.jsonl")]
        if kind != "triage-nostate":
            args += ["--state", str(tmp / "state.db")]
        if kind.startswith("triage-state-"):  # plain triage-state: the default level
            args += ["--durability", kind.removeprefix("triage-state-")]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    wait_ready(port, proc)
    return proc, port


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def measure(kinds: list[str], binary: str | None, n: int, batch: int, senders: int,
            repeats: int) -> dict[str, dict[str, Any]]:
    """Per receiver: alerts/s of each fresh start and every request's latency, for ``n``
    new alerts and then the same again."""
    bodies = storm_bodies(n, batch)
    results: dict[str, dict[str, Any]] = {}
    with Progress(console=console, transient=True) as bar:
        task = bar.add_task("receivers", total=len(kinds) * repeats)
        for rep in range(repeats):
            for kind in kinds:  # interleaved, so drift on the machine hits all alike
                bar.update(task, description=f"{kind} (run {rep + 1})")
                with tempfile.TemporaryDirectory() as tmp:
                    proc, port = start(kind, Path(tmp), binary)
                    try:
                        row = results.setdefault(kind, {"new": [], "repeats": [],
                                                        "lat_new": [], "lat_rep": []})
                        sec, lat = post_all(port, bodies, senders)
                        row["new"].append(n / sec)
                        row["lat_new"] += lat
                        sec, lat = post_all(port, bodies, senders)
                        row["repeats"].append(n / sec)
                        row["lat_rep"] += lat
                    finally:
                        proc.terminate()
                        proc.wait(timeout=60)
                bar.advance(task)
    return results


def report(results: dict[str, dict[str, Any]], n: int, batch: int, senders: int,
           repeats: int) -> dict[str, Any]:
    """The table, printed, and its figures."""
    summary: dict[str, Any] = {"machine": machine(), "alerts": n, "batch": batch,
                               "senders": senders, "repeats": repeats, "receivers": {}}
    table = Table(title=f"{n:,} new alerts, then the same again; batch {batch}, "
                        f"{senders} senders; median of {repeats} fresh starts")
    for col in ("receiver", "new alerts/s", "p50 / p99 ms", "vs AM", "repeats alerts/s",
                "p50 / p99 ms", "vs AM"):
        table.add_column(col, justify="right" if col != "receiver" else "left",
                         no_wrap=col == "receiver")
    am = results.get("alertmanager")
    for kind, row in results.items():
        new, rep = statistics.median(row["new"]), statistics.median(row["repeats"])
        entry = {"new_alerts_per_s": new, "repeat_alerts_per_s": rep,
                 "new_runs": row["new"], "repeat_runs": row["repeats"],
                 "new_p50_ms": pct(row["lat_new"], 0.5) * 1e3,
                 "new_p99_ms": pct(row["lat_new"], 0.99) * 1e3,
                 "repeat_p50_ms": pct(row["lat_rep"], 0.5) * 1e3,
                 "repeat_p99_ms": pct(row["lat_rep"], 0.99) * 1e3}
        if am is not None:
            entry["new_vs_alertmanager"] = new / statistics.median(am["new"])
            entry["repeats_vs_alertmanager"] = rep / statistics.median(am["repeats"])
        summary["receivers"][kind] = entry
        table.add_row(kind, f"{new:,.0f}",
                      f"{entry['new_p50_ms']:.1f} / {entry['new_p99_ms']:.1f}",
                      f"{entry.get('new_vs_alertmanager', float('nan')):.2f}x",
                      f"{rep:,.0f}",
                      f"{entry['repeat_p50_ms']:.1f} / {entry['repeat_p99_ms']:.1f}",
                      f"{entry.get('repeats_vs_alertmanager', float('nan')):.2f}x")
    Console(width=120).print(table)
    return summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--senders", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--receivers", default="alertmanager,triage-state-process,"
                    "triage-state-power,triage-nostate")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--before", type=Path, metavar="SRC",
                    help="another triage's src folder (a git worktree of an older commit): "
                         "each triage receiver runs from it too, as KIND@before, in the "
                         "same run")
    args = ap.parse_args()
    global BEFORE
    BEFORE = args.before
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    kinds = [k for k in args.receivers.split(",") if k != "alertmanager" or binary]
    if BEFORE is not None:
        kinds += [f"{k}@before" for k in kinds if k.startswith("triage")]
    if binary is None:
        console.print("[yellow]Alertmanager not installed (apt-get install "
                      "prometheus-alertmanager): no peer in this run[/]")
    results = measure(kinds, binary, args.alerts, args.batch, args.senders, args.repeats)
    print(f"machine: {machine()}\ncommand: python {' '.join(sys.argv)}")
    summary = report(results, args.alerts, args.batch, args.senders, args.repeats)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_bytes(orjson.dumps(summary, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
