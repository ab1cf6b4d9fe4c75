"""The desk's store (issue 14): how fast triage's incident events go in, and how fast the
incident list and one incident with its log come out, on SQLite and on PostgreSQL.

    python benchmarks/bench_desk.py [--incidents 10000] [--updates 20] [--batch 500]
                                    [--pg-url URL] [--http-seconds 20] [--json out.json]

Events are a real triage event (the demo's P1) copied over ``--incidents`` incidents with
``--updates`` events each (created, updates, resolved), interleaved as a storm interleaves
them. Beside the desk's ingest in the same run, on the same database server: the floor,
a plain multi-row INSERT of the same log rows with no duplicate check and no projection.

Reads, once the store is full: the newest-first incident list (50 rows, and filtered by
status and priority) and one incident with its whole log, 200 times each at random; p50
and p99. Then over HTTP, the desk's app on a real port: 50 requests a second for
``--http-seconds`` (open loop), half the list API and half an incident's console page.
Without ``--pg-url``, a throwaway server is started with deploy/postgres/pg-local
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


def http_load(url: str, incidents: int, seconds: float, rate: float = 50.0
              ) -> dict[str, dict[str, float]]:
    """The desk's app on a real port over the full store; an open-loop client sends
    ``rate`` requests a second for ``seconds``, alternating the list API (50 newest) and an
    incident's console page (random incident, its whole timeline); p50 and p99 of each."""
    import asyncio
    import socket

    import aiohttp
    from aiohttp import web

    from triage.desk.api import Token, create_desk_app
    token = Token("bench", "bench-token-000000001", "viewer")
    store = DeskStore(url, upgrade=False)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    rng = random.Random(3)
    times: dict[str, list[float]] = {"list API (50 newest)": [], "incident page (HTML)": []}

    async def main() -> None:
        runner = web.AppRunner(create_desk_app(store, [token], clock=time.time))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        base = f"http://127.0.0.1:{port}"
        headers = {"Authorization": f"Bearer {token.secret}"}
        cookies = {"desk_token": token.secret}
        async with aiohttp.ClientSession(cookies=cookies) as session:
            async def one(i: int) -> None:
                if i % 2 == 0:
                    name, target = "list API (50 newest)", base + "/api/v1/incidents?limit=50"
                else:
                    name = "incident page (HTML)"
                    target = f"{base}/incidents/inc-{rng.randrange(incidents):08x}"
                t = time.perf_counter()
                async with session.get(target, headers=headers) as r:
                    await r.read()
                    assert r.status == 200, (target, r.status)
                times[name].append((time.perf_counter() - t) * 1000)

            tasks = []
            start = time.perf_counter()
            for i in range(int(seconds * rate)):
                delay = start + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i)))
            await asyncio.gather(*tasks)
        await runner.cleanup()

    try:
        asyncio.run(main())
    finally:
        store.close()
    out = {}
    for name, ts in times.items():
        ts.sort()
        out[name] = {"p50_ms": statistics.median(ts), "p99_ms": ts[int(0.99 * len(ts)) - 1],
                     "requests": len(ts)}
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
    ap.add_argument("--http-seconds", type=float, default=20.0)
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
                h = http_load(url, args.incidents, args.http_seconds)
                results[backend] = {"ingest_events_per_s": rate, "replay_events_per_s": again,
                                    "plain_insert_events_per_s": floor_rate, "reads": r,
                                    "http_at_50_per_s": h}
                print(f"{backend}: ingest {rate:,.0f} events/s (replay of a tenth "
                      f"{again:,.0f}/s; plain INSERT floor {floor_rate:,.0f}/s, ratio "
                      f"{rate / floor_rate:.2f})", file=sys.stderr)
                for name, v in r.items():
                    print(f"  {name}: p50 {v['p50_ms']:.1f} ms, p99 {v['p99_ms']:.1f} ms",
                          file=sys.stderr)
                for name, v in h.items():
                    print(f"  HTTP at 50 requests/s, {name}: p50 {v['p50_ms']:.1f} ms, "
                          f"p99 {v['p99_ms']:.1f} ms ({v['requests']:.0f} requests)",
                          file=sys.stderr)
    finally:
        if stop is not None:
            stop()
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
