"""The desk's store (issue 14): how fast triage's incident events go in, and how fast the
incident list and one incident with its log come out, on SQLite and on PostgreSQL.

    python benchmarks/bench_desk.py [--incidents 10000] [--updates 20] [--batch 500]
                                    [--pg-url URL] [--json out.json]

Events are a real triage event (the demo's P1) copied over ``--incidents`` incidents with
``--updates`` events each (created, updates, resolved), interleaved as a storm interleaves
them. Beside the desk's ingest in the same run, on the same database server: the floor,
a plain multi-row INSERT of the same log rows with no duplicate check and no projection.

Reads, once the store is full: the newest-first incident list (50 rows, and filtered by
status and priority) and one incident with its whole log, 200 times each at random; p50
and p99. Without ``--pg-url``, a throwaway server is started with deploy/postgres/pg-local
(skipped, and said, if there is none).
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
from rich.progress import Progress
from sqlalchemy import insert

from machine import describe
from triage.desk.schema import incident_event
from triage.desk.store import DeskStore

REPO = Path(__file__).resolve().parents[1]


def template() -> dict[str, Any]:
    """One of triage's incident events: the demo's first P1."""
    from rich.console import Console

    from triage.app.demo import run_demo
    with tempfile.TemporaryDirectory() as tmp:
        run_demo(Path(tmp), Console(quiet=True))
        for line in (Path(tmp) / "incidents.jsonl").read_bytes().splitlines():
            event = orjson.loads(line)
            if event["type"] == "incident.created":
                return event  # type: ignore[no-any-return]
    raise SystemExit("the demo raised no incident")


def events(base: dict[str, Any], incidents: int, updates: int, seed: int = 1
           ) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    t0 = 1_800_000_000.0
    out: list[tuple[float, dict[str, Any]]] = []
    for i in range(incidents):
        iid = f"inc-{i:08x}"
        start = t0 + i * 30.0
        for s in range(1, updates + 1):
            kind = ("incident.created" if s == 1 else "incident.resolved" if s == updates
                    else "incident.updated")
            at = start + s * 20.0 + rng.random()
            inc = {**base["incident"], "id": iid, "sequence": s,
                   "status": "resolved" if s == updates else "open",
                   "priority": rng.choice(["P1", "P2", "P3", "P4"]), "alert_count": s}
            out.append((at, {**base, "event_id": f"{iid}:{s}", "type": kind, "at": at,
                             "incident": inc}))
    out.sort(key=lambda x: x[0])
    return [e for _, e in out]


def ingest(url: str, evs: list[dict[str, Any]], batch: int, label: str) -> float:
    with DeskStore(url) as store, Progress(transient=True) as bar:
        task = bar.add_task(f"{label}: ingest", total=len(evs))
        started = time.perf_counter()
        for i in range(0, len(evs), batch):
            store.ingest(evs[i:i + batch])
            bar.advance(task, len(evs[i:i + batch]))
        return len(evs) / (time.perf_counter() - started)


def floor(url: str, evs: list[dict[str, Any]], batch: int) -> float:
    """Plain INSERTs of the same log rows: no dedup, no projection (the floor)."""
    with DeskStore(url) as store:
        started = time.perf_counter()
        for i in range(0, len(evs), batch):
            rows = [{"incident_id": e["incident"]["id"], "seq": e["incident"]["sequence"],
                     "type": "triage.x", "actor": "triage", "at": e["at"], "body": e,
                     "source_id": e["event_id"], "recorded_at": 0.0}
                    for e in evs[i:i + batch]]
            with store.engine.begin() as conn:
                conn.execute(insert(incident_event), rows)
        return len(evs) / (time.perf_counter() - started)


def reads(url: str, incidents: int, n: int = 200) -> dict[str, dict[str, float]]:
    rng = random.Random(2)
    out: dict[str, dict[str, float]] = {}
    with DeskStore(url, upgrade=False) as store:
        calls = {
            "list 50 newest": lambda: store.incidents(limit=50),
            "list filtered (resolved, P1)": lambda: store.incidents(
                status=["resolved"], priority=["P1"], limit=50),
            "one incident + its log": lambda: (
                store.incident(f"inc-{rng.randrange(incidents):08x}"),
                store.log(f"inc-{rng.randrange(incidents):08x}")),
        }
        for name, call in calls.items():
            times = []
            for _ in range(n):
                t = time.perf_counter()
                call()
                times.append((time.perf_counter() - t) * 1000)
            times.sort()
            out[name] = {"p50_ms": statistics.median(times), "p99_ms": times[int(0.99 * n) - 1]}
    return out


def local_postgres() -> tuple[str, Any]:
    port = 39500 + random.randrange(400)
    data = Path(f"/tmp/triage-pg-bench-{uuid.uuid4().hex[:8]}")
    script = REPO / "deploy" / "postgres" / "pg-local"
    proc = subprocess.run([str(script), "start", "--fresh", "--port", str(port), "--data-dir",
                           str(data)], capture_output=True, text=True)
    if proc.returncode != 0:
        return "", None

    def stop() -> None:
        subprocess.run([str(script), "stop", "--port", str(port), "--data-dir", str(data),
                        "--mode", "immediate"], capture_output=True)
        subprocess.run(["rm", "-rf", str(data)])
    return proc.stdout.strip(), stop


def new_database(server_url: str) -> str:
    import psycopg
    name = "b_" + uuid.uuid4().hex[:10]
    with psycopg.connect(server_url.replace("+psycopg", ""), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return server_url.rsplit("/", 1)[0] + "/" + name


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--incidents", type=int, default=10_000)
    ap.add_argument("--updates", type=int, default=20)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--pg-url", default="")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    evs = events(template(), args.incidents, args.updates)
    print(f"{describe()}\n{len(evs):,} events over {args.incidents:,} incidents, "
          f"batches of {args.batch}", file=sys.stderr)
    stop = None
    pg = args.pg_url
    if not pg:
        pg, stop = local_postgres()
        if not pg:
            print("no PostgreSQL server (deploy/postgres/pg-local failed): SQLite only",
                  file=sys.stderr)
    results: dict[str, Any] = {"events": len(evs), "incidents": args.incidents}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            backends = {"sqlite": lambda name: f"sqlite:///{tmp}/{name}.db"}
            if pg:
                backends["postgresql"] = lambda name: new_database(pg)
            for backend, make in backends.items():
                url = make("desk")
                rate = ingest(url, evs, args.batch, backend)
                again = ingest(url, evs[: len(evs) // 10], args.batch, backend + " replay")
                floor_rate = floor(make("floor"), evs, args.batch)
                r = reads(url, args.incidents)
                results[backend] = {"ingest_events_per_s": rate, "replay_events_per_s": again,
                                    "plain_insert_events_per_s": floor_rate, "reads": r}
                print(f"{backend}: ingest {rate:,.0f} events/s (replay of a tenth "
                      f"{again:,.0f}/s; plain INSERT floor {floor_rate:,.0f}/s, ratio "
                      f"{rate / floor_rate:.2f})", file=sys.stderr)
                for name, v in r.items():
                    print(f"  {name}: p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.1f} ms",
                          file=sys.stderr)
    finally:
        if stop is not None:
            stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
