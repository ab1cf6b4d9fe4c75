"""triage beside Prometheus Alertmanager, in one run: ingest rate, memory, and what each pages.

    python benchmarks/bench_alertmanager.py [--alerts 100000] [--repeats 3] [--json FILE]

1. **Ingest**: a simulated storm (``triage.simulate``, 1,000-service graph, Alertmanager API v2
   bodies, timestamps shifted to now) is POSTed, body by body (the same batches), over one
   keep-alive ``http.client`` connection to a real Alertmanager's ``/api/v2/alerts``
   (Debian ``prometheus-alertmanager``, started here on 127.0.0.1 with a throwaway config), and
   the same bytes go through triage's full path, intake and incidents (``Pipeline.process`` +
   ``IncidentEngine.observe``), and, over HTTP like Alertmanager, to ``triage serve``'s
   ``/api/v2/alerts`` (embedded mode, no ``--state``) with the same client. Both ratios are
   printed, each labelled.
2. **Memory per active alert**: ``--memory-alerts`` distinct firing alerts in batches of 10;
   RSS growth of Alertmanager against RSS growth of a fresh triage process holding them in
   dedup state *and* in incidents.
3. **Quality**: on the same simulated storms (Online Boutique, 120 min; 1,000-service graph,
   120 min), the notifications Alertmanager's grouping would send (``group_by: [alertname,
   service]``, default timers 30s / 5m / 4h, the storm's silences and maintenance windows
   applied), emulated offline with ``triage.simulate.deliver.dispatch``, against the incidents
   triage pages, and how many true incidents each surfaces.
"""

from __future__ import annotations

import argparse
import gc
import http.client
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from bench_intake import free_port, machine, rss_bytes
from triage.app.bootstrap import build_triage
from triage.app.settings import load_settings
from triage.simulate import (
    DeliveryOptions,
    ScenarioOptions,
    SimulationResult,
    default_rules_dir,
    simulate,
)
from triage.simulate.deliver import dispatch
from triage.simulate.score import score

REPO = Path(__file__).resolve().parents[1]
BOUTIQUE = REPO.parent / "shared" / "data" / "topologies" / "online-boutique" / \
    "kubernetes-manifests.yaml"
CATALOG = REPO / "src" / "triage" / "demo_assets" / "boutique-services.yaml"


class Alertmanager:
    """A throwaway Alertmanager on a free 127.0.0.1 port."""

    def __init__(self, binary: str, tmp: Path) -> None:
        self.port = free_port()
        cfg = tmp / "am.yml"
        cfg.write_text("route:\n  receiver: 'null'\n  group_by: [alertname, service]\n"
                       "receivers:\n  - name: 'null'\n")
        self.proc = subprocess.Popen(
            [binary, f"--config.file={cfg}", f"--storage.path={tmp}",
             f"--web.listen-address=127.0.0.1:{self.port}", "--cluster.listen-address="],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conn = self._ready()

    def _ready(self) -> http.client.HTTPConnection:
        deadline = time.monotonic() + 30
        while True:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                conn.request("GET", "/-/ready")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    return conn
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("Alertmanager did not become ready")
            time.sleep(0.1)

    def post(self, body: bytes) -> None:
        self.conn.request("POST", "/api/v2/alerts", body=body,
                          headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        resp.read()
        if resp.status != 200:
            raise RuntimeError(f"Alertmanager answered {resp.status}")

    def active(self) -> int:
        self.conn.request("GET", "/api/v2/alerts?active=true&silenced=false&inhibited=false")
        return len(orjson.loads(self.conn.getresponse().read()))

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


class TriageServe(Alertmanager):
    """``triage serve`` (embedded mode) on a free 127.0.0.1 port, posted to like Alertmanager."""

    def __init__(self, config: Path, tmp: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "triage.cli", "serve", "--config", str(config),
             "--port", str(self.port), "--output", str(tmp / "incidents.jsonl"),
             "--dead-letter", str(tmp / "dead.jsonl")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.conn = self._ready()


def post_rates(start: Callable[[Path], Alertmanager], bodies: list[bytes], n: int,
               repeats: int) -> list[float]:
    """alerts/s posting ``bodies`` to a fresh server (``start(tmp)``), ``repeats`` times."""
    rates = []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            server = start(Path(tmp))
            try:
                began = time.perf_counter()
                for body in bodies:
                    server.post(body)
                rates.append(n / (time.perf_counter() - began))
            finally:
                server.stop()
    return rates


def shifted_bodies(folder: Path, batch: int) -> list[bytes]:
    """The storm's alerts, in delivery order, as API v2 bodies of ``batch`` alerts (as
    Prometheus batches its POSTs), every timestamp moved so the storm ends now."""
    from triage.core.timeutil import format_timestamp, parse_timestamp

    truth = orjson.loads((folder / "truth.json").read_bytes())
    offset = time.time() - truth["end"] - 60
    flat = []
    for line in (folder / "alerts.jsonl").read_bytes().splitlines():
        for a in orjson.loads(line)["payload"]:
            for key in ("startsAt", "endsAt"):
                a[key] = format_timestamp(parse_timestamp(a[key]) + offset)
            flat.append(a)
    return [orjson.dumps(flat[i:i + batch]) for i in range(0, len(flat), batch)]


def ingest(folder: Path, binary: str | None, repeats: int, batch: int) -> dict[str, Any]:
    bodies = shifted_bodies(folder, batch)
    n = sum(len(orjson.loads(b)) for b in bodies)
    triage_rates = []
    settings = load_settings(folder / "triage.yaml")
    pages = 0
    for _ in range(repeats):
        triage = build_triage(settings)
        gc.collect()
        start = time.perf_counter()
        for body in bodies:
            triage.process(body)
        triage_rates.append(n / (time.perf_counter() - start))
        pages = triage.engine.counts.get("incident.created", 0) if triage.engine else 0
    out: dict[str, Any] = {"alerts": n, "batches": len(bodies),
                           "triage_embedded_alerts_per_s": statistics.median(triage_rates),
                           "triage_pages": pages}
    print(f"  triage, embedded (in process, no HTTP), full triage: "
          f"{out['triage_embedded_alerts_per_s']:>10,.0f} alerts/s "
          f"({n:,} alerts in {len(bodies):,} bodies, median of {repeats})")
    if binary is None:
        print("  Alertmanager not installed (apt-get install prometheus-alertmanager): skipped")
        return out
    am_rates = post_rates(lambda tmp: Alertmanager(binary, tmp), bodies, n, repeats)
    serve_rates = post_rates(lambda tmp: TriageServe(folder / "triage.yaml", tmp), bodies, n,
                             repeats)
    out["alertmanager_alerts_per_s"] = statistics.median(am_rates)
    out["triage_serve_alerts_per_s"] = statistics.median(serve_rates)
    out["ratio"] = out["triage_embedded_alerts_per_s"] / out["alertmanager_alerts_per_s"]
    out["ratio_http"] = out["triage_serve_alerts_per_s"] / out["alertmanager_alerts_per_s"]
    print(f"  Alertmanager 0.25, POST /api/v2/alerts, one keep-alive client:  "
          f"{out['alertmanager_alerts_per_s']:>10,.0f} alerts/s")
    print(f"  triage serve (embedded, full triage), POST /api/v2/alerts, same client: "
          f"{out['triage_serve_alerts_per_s']:>10,.0f} alerts/s")
    print(f"  ratio triage (embedded, in process) / Alertmanager (HTTP): {out['ratio']:.2f}x")
    print(f"  ratio triage serve (HTTP) / Alertmanager (HTTP): {out['ratio_http']:.2f}x")
    return out


_TRIAGE_MEMORY = """
import gc, sys
from pathlib import Path
import orjson
from triage.app.bootstrap import build_triage
from triage.app.settings import load_settings

def rss():
    with open("/proc/self/status") as fh:
        return next(int(l.split()[1]) * 1024 for l in fh if l.startswith("VmRSS"))

settings = load_settings(Path(sys.argv[1]))
triage = build_triage(settings)
pipeline, engine = triage.pipeline, triage.engine
bodies = open(sys.argv[2], "rb").read().splitlines()
for b in bodies[:50]:  # warm up code paths and topology caches before the first reading
    triage.process(b)
gc.collect()
before, held = rss(), len(pipeline.dedup)
for b in bodies[50:]:
    triage.process(b)
gc.collect()
incidents = sum(1 for i in engine.incidents.values())
print(rss() - before, len(pipeline.dedup) - held, incidents)
"""


def memory(folder: Path, binary: str | None, n: int) -> dict[str, Any]:
    """``n`` distinct firing alerts on the storm's services, batches of 10."""
    from triage.core.timeutil import format_timestamp

    services = [s for s in orjson.loads((folder / "truth.json").read_bytes())["alerts"]
                .values() if s["service"]]
    names = sorted({s["alertname"] for s in services})
    svc = sorted({s["service"] for s in services})
    now = time.time()
    bodies = []
    for b in range(n // 10):
        batch = []
        for k in range(10):
            i = b * 10 + k
            labels = {"alertname": names[i % len(names)], "service": svc[(i // 7) % len(svc)],
                      "severity": ("critical", "warning", "info")[i % 3],
                      "instance": f"10.{i // 65536 % 256}.{i // 256 % 256}.{i % 256}:9100",
                      "job": "node", "namespace": "prod"}
            batch.append({"labels": labels, "annotations": {"summary": f"alert {i}"},
                          "startsAt": format_timestamp(now - 60 + i * 0.001),
                          "endsAt": format_timestamp(now + 3600)})
        bodies.append(orjson.dumps(batch))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bodies.jsonl"
        path.write_bytes(b"\n".join(bodies))
        delta, held, incidents = map(int, subprocess.run(
            [sys.executable, "-c", _TRIAGE_MEMORY, str(folder / "triage.yaml"), str(path)],
            check=True, capture_output=True, text=True).stdout.split())
    out: dict[str, Any] = {"alerts": n, "triage_rss_per_alert": delta / max(held, 1),
                           "triage_incidents": incidents}
    print(f"  triage (dedup + incidents, {incidents:,} incidents): "
          f"{out['triage_rss_per_alert']:6,.0f} B/active alert (RSS growth, fresh process)")
    if binary is None:
        return out
    with tempfile.TemporaryDirectory() as tmp:
        am = Alertmanager(binary, Path(tmp))
        try:
            am.post(bodies[0])
            time.sleep(1.0)
            before = rss_bytes(am.proc.pid)
            for body in bodies[1:]:
                am.post(body)
            time.sleep(2.0)
            after = rss_bytes(am.proc.pid)
            active = am.active()
        finally:
            am.stop()
    out["alertmanager_rss_per_alert"] = (after - before) / max(active - 10, 1)
    out["ratio"] = out["triage_rss_per_alert"] / out["alertmanager_rss_per_alert"]
    print(f"  Alertmanager 0.25:                          "
          f"{out['alertmanager_rss_per_alert']:6,.0f} B/active alert ({active:,} active)")
    print(f"  triage / Alertmanager memory per active alert: {out['ratio']:.2f}")
    return out


def quality(result: SimulationResult) -> dict[str, Any]:
    """Alertmanager's notifications (offline, default timers) against triage's pages."""
    sc = result.scenario
    truth = result.truth
    muted_kinds = ("noise:maintenance", "noise:watchdog")
    notes = dispatch(sc.series, group_wait=30, group_interval=300, repeat_interval=14400,
                     muted=lambda s: s.truth in muted_kinds)
    firing_notes = [n for n in notes if n.firing]
    surfaced = {sc.series[i].truth for n in firing_notes for i in n.firing}
    true_ids = {i["id"] for i in truth["incidents"]}
    noise_notes = sum(1 for n in firing_notes
                      if all(sc.series[i].truth.startswith("noise:") for i in n.firing))
    settings = load_settings(result.config)
    triage = build_triage(settings)
    events = []
    for line in (result.out / "alerts.jsonl").read_bytes().splitlines():
        events += triage.process(line).events
    s = score(truth, events)
    return {"alerts_in": truth["counts"]["alerts_in"], "true_incidents": len(true_ids),
            "am_notifications": len(notes), "am_firing_notifications": len(firing_notes),
            "am_noise_notifications": noise_notes,
            "am_groups_notified": len({n.group for n in firing_notes}),
            "am_incidents_surfaced": len(true_ids & surfaced),
            "triage_pages": s["pages"], "triage_noise_pages": s["noise_pages"],
            "triage_incidents_surfaced": round(s["incident_recall"] * len(true_ids)),
            "triage_scores": {k: v for k, v in s.items() if k != "incidents"}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--alerts", type=int, default=100_000, help="ingest storm size (about)")
    ap.add_argument("--memory-alerts", type=int, default=100_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch", type=int, default=10, help="alerts per POST / per body")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    binary = shutil.which("prometheus-alertmanager") or shutil.which("alertmanager")
    print(f"machine: {machine()}")
    results: dict[str, Any] = {"machine": machine()}
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        # dense storm, API v2 bodies (what Prometheus POSTs to Alertmanager)
        minutes = max(10.0, args.alerts / 1150)
        storm = tmp / "ingest"
        simulate(storm, services=1000, rules_dir=default_rules_dir(),
                 scenario=ScenarioOptions(minutes=minutes, seed=1, incidents_per_hour=60,
                                          noise_per_hour=3000),
                 delivery=DeliveryOptions(group_interval=60, seed=1,
                                          format="alertmanager-api-v2"))
        print("\n1. ingest, the same bodies to both, in one run:")
        results["ingest"] = ingest(storm, binary, args.repeats, args.batch)
        print("\n1b. a storm of new alerts, then repeats, 4 senders, batch 100, crash-safe "
              "triage serve (bench_receiver.py):")
        import bench_receiver
        kinds = [k for k in ("alertmanager", "triage-state-process", "triage-state-power",
                             "triage-nostate") if k != "alertmanager" or binary]
        results["receiver"] = bench_receiver.report(
            bench_receiver.measure(kinds, binary, args.alerts, 100, 4, args.repeats),
            args.alerts, 100, 4, args.repeats)
        print(f"\n2. memory per active alert, {args.memory_alerts:,} distinct firing alerts:")
        results["memory"] = memory(storm, binary, args.memory_alerts)
        print("\n3. what gets paged, Alertmanager grouping (emulated, default timers) vs "
              "triage:")
        print(f"  {'storm':<28} {'alerts in':>9} {'true':>5} {'AM notif.':>9} "
              f"{'(noise)':>8} {'AM surf.':>8} {'triage pages':>12} {'(noise)':>8} "
              f"{'triage surf.':>12}")
        results["quality"] = {}
        runs: list[tuple[str, dict[str, Any]]] = [("boutique-120min", {
            "topology": BOUTIQUE, "catalog": CATALOG})] if BOUTIQUE.is_file() else []
        runs.append(("generated-1000-120min", {"services": 1000}))
        for name, source in runs:
            res = simulate(tmp / name, rules_dir=default_rules_dir(),
                           scenario=ScenarioOptions(minutes=120, seed=1), **source)
            q = quality(res)
            results["quality"][name] = q
            print(f"  {name:<28} {q['alerts_in']:>9,} {q['true_incidents']:>5} "
                  f"{q['am_firing_notifications']:>9,} {q['am_noise_notifications']:>8,} "
                  f"{q['am_incidents_surfaced']:>8} {q['triage_pages']:>12,} "
                  f"{q['triage_noise_pages']:>8,} {q['triage_incidents_surfaced']:>12}")
    if args.json:
        args.json.write_bytes(orjson.dumps(results, option=orjson.OPT_INDENT_2))


if __name__ == "__main__":
    main()
