"""Stage-1 intake benchmark, beside Prometheus Alertmanager in the same run.

    python benchmarks/bench_intake.py [--alerts 100000] [--repeats 5] [--json FILE]

Measures, on a storm of Alertmanager webhook deliveries (10 alerts each) that is 90% repeats:

1. in-process cost per alert of parse + normalize + fingerprint + gates + dedup, one core,
   with the demo config's silences, maintenance window and thresholds active, split by stage;
2. ``triage run`` end to end (subprocess, file in, file out), without and with ``--state``;
3. memory per active alert: triage's dedup state (tracemalloc, and RSS of a fresh process)
   against Alertmanager's RSS growth for the same number of distinct active alerts POSTed to
   its ``/api/v2/alerts`` (Debian ``prometheus-alertmanager``, started here on 127.0.0.1 with
   a throwaway config). Alertmanager's ingest rate for the same batches is printed as
   context; triage's HTTP receiver does not exist yet, so its figure is the embedded path.

Medians over ``--repeats`` runs; these machines are 2 noisy cores, so compare ratios.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import orjson

from machine import describe
from triage.app.bootstrap import build_pipeline
from triage.app.demo import demo_config_path
from triage.app.settings import load_settings
from triage.core import normalize
from triage.core.fingerprint import Fingerprinter
from triage.core.pipeline import Pipeline
from triage.simulate.storms import repeat_storm


def machine() -> str:
    return describe()


def median_time(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def in_process(lines: list[bytes], n_alerts: int, repeats: int) -> dict[str, float]:
    settings = load_settings(demo_config_path())
    fpr = Fingerprinter()

    def parse() -> None:
        for line in lines:
            orjson.loads(line)

    def parse_normalize() -> None:
        for line in lines:
            normalize.normalize(orjson.loads(line)["payload"])

    def parse_normalize_fingerprint() -> None:
        for line in lines:
            for a in normalize.normalize(orjson.loads(line)["payload"]):
                fpr.fingerprint(a.source, a.labels)  # type: ignore[union-attr,arg-type]

    def full() -> None:
        pipeline = build_pipeline(settings)
        for line in lines:
            pipeline.process(line)

    stages = {
        "parse (orjson)": parse,
        "+ normalize": parse_normalize,
        "+ fingerprint": parse_normalize_fingerprint,
        "+ gates + dedup + flap (full Pipeline.process)": full,
    }
    out = {}
    for name, fn in stages.items():
        secs = median_time(fn, repeats)
        out[name] = secs / n_alerts * 1e6
        print(f"  {name:<48} {out[name]:6.2f} us/alert  {n_alerts / secs:>10,.0f} alerts/s")
    return out


def triage_run(storm: Path, repeats: int, n_alerts: int) -> dict[str, float]:
    exe = [sys.executable, "-m", "triage.cli", "run", "-q", "-i", str(storm)]
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for label, extra in (("triage run", []), ("triage run --state", ["--state"])):
            def once(extra: list[str] = extra) -> None:
                state = Path(tmp) / "state.db"
                for p in Path(tmp).glob("state.db*"):
                    p.unlink()
                args = [*exe, "-o", str(Path(tmp) / "out.jsonl")]
                if extra:
                    args += [extra[0], str(state)]
                subprocess.run(args, check=True)

            secs = median_time(once, repeats)
            out[label] = n_alerts / secs
            print(f"  {label:<48} {secs:6.2f} s       {n_alerts / secs:>10,.0f} alerts/s "
                  "(process start included)")
    return out


def rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def triage_memory(n: int) -> dict[str, float]:
    unique = list(repeat_storm(n, repeat_fraction=0.0))
    pipeline = Pipeline()
    gc.collect()
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    for line in unique:
        pipeline.process(line)
    gc.collect()
    traced = (tracemalloc.get_traced_memory()[0] - base) / len(pipeline.dedup)
    tracemalloc.stop()
    # RSS of a fresh process, measured the way Alertmanager's is below
    code = """
import gc
from triage.core.pipeline import Pipeline
from triage.simulate.storms import repeat_storm

def rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmRSS"))

lines = list(repeat_storm(N_ALERTS, repeat_fraction=0.0))
pipeline = Pipeline()
pipeline.process(lines[0])  # warm up code paths before the first reading
gc.collect()
before = rss()
for line in lines[1:]:
    pipeline.process(line)
gc.collect()
print(rss() - before, len(pipeline.dedup) - 10)
""".replace("N_ALERTS", str(n))
    # the input lines are built before the first reading, so only state growth is counted
    delta, count = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                                  text=True).stdout.split()
    rss = int(delta) / int(count)
    print(f"  triage dedup state: {traced:6.0f} B/active alert (tracemalloc), "
          f"{rss:6.0f} B/active alert (RSS growth, fresh process)")
    return {"traced": traced, "rss": rss}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alertmanager(n: int) -> dict[str, float] | None:
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    if binary is None:
        print("  Alertmanager not installed (apt-get install prometheus-alertmanager): skipped")
        return None
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        cfg = Path(tmp) / "am.yml"
        cfg.write_text("route:\n  receiver: 'null'\n  group_by: [alertname, service]\n"
                       "receivers:\n  - name: 'null'\n")
        proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.path={tmp}",
             f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            deadline = time.monotonic() + 30
            while True:
                try:
                    conn.request("GET", "/-/ready")
                    if conn.getresponse().read() is not None:
                        break
                except OSError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.1)
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            now = time.time()
            batches = []
            for line in repeat_storm(n, repeat_fraction=0.0):
                alerts = orjson.loads(line)["payload"]["alerts"]
                batches.append(orjson.dumps([
                    {"labels": a["labels"], "annotations": a["annotations"],
                     "startsAt": _iso(now - 60), "endsAt": _iso(now + 3600)} for a in alerts]))
            time.sleep(1.0)
            before = rss_bytes(proc.pid)
            start = time.perf_counter()
            for body in batches:
                conn.request("POST", "/api/v2/alerts", body=body,
                             headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                if resp.status != 200:
                    raise RuntimeError(f"Alertmanager answered {resp.status}")
            secs = time.perf_counter() - start
            time.sleep(2.0)
            after = rss_bytes(proc.pid)
            conn.request("GET", "/api/v2/alerts?active=true&silenced=false&inhibited=false")
            active = len(orjson.loads(conn.getresponse().read()))
        finally:
            proc.terminate()
            proc.wait(timeout=10)
    per_alert = (after - before) / max(active, 1)
    print(f"  Alertmanager: {per_alert:6.0f} B/active alert (RSS growth, {active:,} active), "
          f"ingest {n / secs:,.0f} alerts/s over HTTP (batches of 10, one client)")
    return {"rss": per_alert, "ingest": n / secs, "active": active}


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + "Z"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--memory-alerts", type=int, default=100_000)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()

    print(f"machine: {machine()}")
    lines = list(repeat_storm(args.alerts))
    print(f"\n1. in-process, one core, {args.alerts:,} alerts in {len(lines):,} webhook "
          f"payloads, 90% repeats (median of {args.repeats}):")
    stages = in_process(lines, args.alerts, args.repeats)
    with tempfile.TemporaryDirectory() as tmp:
        storm = Path(tmp) / "storm.jsonl"
        storm.write_bytes(b"\n".join(lines) + b"\n")
        print(f"\n2. end to end, same storm (median of {min(args.repeats, 3)}):")
        runs = triage_run(storm, min(args.repeats, 3), args.alerts)
    print(f"\n3. memory per active alert, {args.memory_alerts:,} distinct firing alerts:")
    mem = triage_memory(args.memory_alerts)
    am = alertmanager(args.memory_alerts)
    if am:
        print(f"\n  ratio: Alertmanager holds {am['rss'] / mem['rss']:.1f}x triage's memory "
              "per active alert (RSS growth, same alerts)")
    results = {"machine": machine(), "alerts": args.alerts, "stages_us": stages,
               "run_alerts_per_s": runs, "memory": mem, "alertmanager": am}
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
