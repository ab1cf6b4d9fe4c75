"""The faust ceiling for ``bench_streaming``: one agent that takes batches and does nothing.

    python benchmarks/faust_noop.py --bootstrap HOST:PORT --topic T --messages N [--app-id ID]

The app is built exactly as the worker's (``triage.streams.app.build_app``) and the agent
takes batches as the worker's agents do (``take_events(500, within=0.02)``), so the rate it
prints is what faust itself can feed one agent on this machine: no decoding, no stage, no
output. Prints one JSON line ``{"rate": alerts/s}`` (first batch to the N-th message) and
exits.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any

import orjson


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--bootstrap", required=True)
    ap.add_argument("--topic", required=True)
    ap.add_argument("--messages", type=int, required=True)
    ap.add_argument("--app-id", default=f"faust-noop-{os.getpid()}")
    args = ap.parse_args(argv)

    from faust import Worker

    from triage.app.settings import KafkaSettings, Settings
    from triage.streams.agents import BATCH_MAX, BATCH_WITHIN
    from triage.streams.app import build_app

    app = build_app(Settings(kafka=KafkaSettings(bootstrap=args.bootstrap,
                                                 app_id=args.app_id)))
    topic = app.topic(args.topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                      value_serializer="raw")
    seen = {"n": 0, "first": 0.0}

    async def agent(stream: Any) -> None:
        async for events in stream.take_events(BATCH_MAX, within=BATCH_WITHIN):
            if not seen["n"]:
                seen["first"] = time.perf_counter()
            seen["n"] += len(events)
            if seen["n"] >= args.messages:
                rate = seen["n"] / (time.perf_counter() - seen["first"])
                sys.stdout.write(orjson.dumps({"rate": rate}).decode() + "\n")
                sys.stdout.flush()
                os._exit(0)  # a benchmark probe: no graceful leave needed (own group id)

    app.agent(topic, name="noop", concurrency=1)(agent)
    worker = Worker(app, loglevel="warning", quiet=True, redirect_stdouts=False)
    worker.spinner = None
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
