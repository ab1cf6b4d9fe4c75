"""Embedded mode of ``triage serve``: the same ``Pipeline`` and ``IncidentEngine`` as
``triage run``, in process, fed by HTTP bodies instead of lines.

Each body is wrapped in an envelope stamped with the server's wall clock, so the pipeline's
event time is the receive time and the outputs can be replayed exactly with ``triage run``.
Incident events go to ``output``, failures to ``dead_letter`` (stderr by default: nothing is
dropped). A timer task advances the clock once a second, so pages fire after their delay and
alerts time out even when nothing is being posted.

Durability (``--state``): the outputs are fsynced and the state committed (one SQLite
transaction) **before** the request is answered, for every request. A 2xx therefore means
"durably triaged", the same promise as Kafka mode's "acknowledged by the broker", and a
crash can only lose requests that were never answered, which the sender retries. The cost is
an fsync per request (milliseconds; Alertmanager batches alerts per webhook, so this is far
below its send rate); committing per interval would be faster but could lose answered
alerts, which Alertmanager would not resend before its ``repeat_interval`` (hours). On
restart the outputs are truncated to the last commit, as with ``triage run --state``.

Everything runs on the event loop thread, without awaits between reading and committing the
state, so requests are triaged one at a time in arrival order and need no locks.

Feedback (``POST /api/v1/feedback``) is appended to the feedback history
(``feedback.store``) in one SQLite transaction before the answer; judgements the history
holds already (a client's retry) are counted as ``repeats`` and not appended again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson

from triage.core.incidents import Event, IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.render import render_outcome
from triage.core.types import Failed, Outcome
from triage.http.intake import Accepted, Rejected, envelope
from triage.metrics import TriageMetrics, track_embedded_state
from triage.models.feedback import Feedback, FeedbackStore
from triage.sinks import JsonLinesSink
from triage.statefile import Checkpoint, StateFile

log = logging.getLogger("triage.http")

INPUT_KEY = "triage serve"  # the checkpoint's input: HTTP requests, not a file
MAX_ERRORS_SHOWN = 10


class EmbeddedBackend:
    """Runs stage 1 and stage 2 in process for each accepted body."""

    mode = "embedded"

    def __init__(
        self,
        pipeline: Pipeline,
        engine: IncidentEngine,
        metrics: TriageMetrics,
        *,
        output: str = "-",
        dead_letter: str | None = None,
        state_path: Path | None = None,
        tick_interval: float = 1.0,
        clock: Callable[[], float] = time.time,
        feedback_store: Path | None = None,
    ) -> None:
        self.pipeline = pipeline
        self.engine = engine
        self.metrics = metrics
        self.output_target = output
        self.dead_letter_target = dead_letter or "-"
        self.state_path = state_path
        self.tick_interval = tick_interval
        self.clock = clock
        self.feedback_store = FeedbackStore(feedback_store) if feedback_store else None
        self.state: StateFile | None = None
        self.requests = 0
        self._sinks: dict[str, JsonLinesSink] = {}
        self._timer: asyncio.Task[None] | None = None
        self._started = False

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Restore state (with ``--state``), open the outputs, start the clock."""
        checkpoint: Checkpoint | None = None
        if self.state_path is not None:
            self.state = StateFile(self.state_path)
            checkpoint = self.state.restore(self.pipeline, self.engine)
        self.pipeline.on_change = self.engine.add_change
        sinks = checkpoint.sinks if checkpoint is not None else {}
        if checkpoint is not None and checkpoint.input_key == INPUT_KEY:
            self.requests = checkpoint.lines_done
        self._sinks = {
            "output": JsonLinesSink(self.output_target, resume=sinks.get("output"),
                                    std=sys.stdout.buffer),
            "dead_letter": JsonLinesSink(self.dead_letter_target,
                                         resume=sinks.get("dead_letter"),
                                         std=sys.stderr.buffer),
        }
        track_embedded_state(self.metrics, self.pipeline, self.engine)
        self._update_model_version()
        if self.tick_interval > 0:
            self._timer = asyncio.create_task(self._run_timers(), name="triage-serve-timers")
        self._started = True

    async def stop(self) -> None:
        """Stop the clock, write and commit what is pending, close the files.

        Pages still inside their delay stay pending in the state file (their timers are
        saved) and fire after a restart; without ``--state`` they would be lost, so they
        are decided now, as ``triage run`` does at the end of its input.
        """
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        if not self._started:
            return
        if self.state is None:
            events = self.engine.flush_pages(max(self.clock(), self.pipeline.watermark))
            self.metrics.observe_events(events)
            self._write(events, [])
        self._commit()
        for sink in self._sinks.values():
            sink.close()
        if self.state is not None:
            self.state.close()
        self._started = False

    async def ready(self) -> bool:
        return self._started

    # -- requests ------------------------------------------------------------------------

    async def accept(self, body: bytes, *, received_at: float) -> Accepted | Rejected:
        """Triage one body now; answer only after its results are written (and, with
        ``--state``, committed)."""
        try:
            orjson.loads(body)
            raw = envelope(body, received_at)
        except orjson.JSONDecodeError:
            # Not JSON, so it cannot be wrapped: the pipeline still takes it as it is, since
            # it is the one boundary that dead-letters bad input with its exact bytes and
            # counts it.
            raw = body
        outcomes, events = self._triage(raw)
        whole = _whole_payload_failure(outcomes, raw)
        if whole is not None:
            status = 413 if whole.error == "OversizeError" else 400
            return Rejected(status, whole.error, whole.reason, field=whole.field or None)
        counts: dict[str, int] = {"triaged": 0, "deduplicated": 0, "suppressed": 0,
                                  "failed": 0}
        errors: list[dict[str, Any]] = []
        for o in outcomes:
            counts[o.kind] += 1
            if isinstance(o, Failed) and len(errors) < MAX_ERRORS_SHOWN:
                errors.append({"error": o.error, "field": o.field or None, "reason": o.reason})
        return Accepted(alerts=len(outcomes), counts=counts, events=events, errors=errors)

    async def accept_feedback(self, records: list[Any], feedback: list[Feedback]
                              ) -> Accepted | Rejected:
        """Append validated feedback to the history; answer after the transaction."""
        if self.feedback_store is None:
            return Rejected(501, "NotConfigured",
                            "this server keeps no feedback history: set feedback.store "
                            "(TRIAGE_FEEDBACK__STORE) or serve --feedback-store")
        try:
            stored = self.feedback_store.append_new(feedback)
        except sqlite3.Error as exc:  # locked by another writer for too long, disk full
            log.warning("feedback not stored in %s: %s", self.feedback_store.path, exc)
            return Rejected(503, "StoreUnavailable", f"feedback history unavailable: {exc}; "
                            "retry later", retry_after=5.0)
        return Accepted(counts={"records": len(feedback), "stored": stored,
                                "repeats": len(feedback) - stored})

    def _triage(self, raw: bytes) -> tuple[list[Outcome], int]:
        """Run both stages on ``raw``, write and commit. Returns the outcomes of the input
        (without the changes the pipeline's clock made on the way) and the events written."""
        pipeline = self.pipeline
        swept_before = pipeline.counts["swept"]
        started = time.perf_counter()
        results = pipeline.process(raw)
        intake_done = time.perf_counter()
        events = self.engine.observe(results, pipeline.watermark)
        done = time.perf_counter()
        swept = pipeline.counts["swept"] - swept_before
        self.metrics.observe(results, swept=swept, events=events,
                             seconds={"intake": intake_done - started,
                                      "incidents": done - intake_done})
        self.requests += 1
        self._write(events, results)
        self._commit()
        return results[swept:], len(events)

    # -- the clock -----------------------------------------------------------------------

    def tick(self, now: float) -> int:
        """Advance both stages to wall-clock ``now`` with no input: alerts time out, holds
        are released, pages whose delay has passed are decided. Returns events written."""
        pipeline = self.pipeline
        swept: list[Outcome] = pipeline.tick(now) if now >= pipeline.next_sweep else []
        at = max(now, pipeline.watermark)
        events = self.engine.observe(swept, at)
        if swept or events:
            self.metrics.observe(swept, swept=len(swept), events=events)
            self._write(events, swept)
            self._commit()
        return len(events)

    async def _run_timers(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                self.tick(self.clock())
                self._update_model_version()
            except Exception:  # the clock must keep running whatever one tick hit
                log.exception("timer tick failed")

    def _update_model_version(self) -> None:
        version = getattr(self.pipeline.noise_scorer, "version", None)
        self.metrics.set_model_version(version if isinstance(version, str) else None)

    # -- output --------------------------------------------------------------------------

    def _write(self, events: list[Event], outcomes: list[Outcome]) -> None:
        now = self.pipeline.watermark
        dlq = self._sinks["dead_letter"]
        for o in outcomes:
            if isinstance(o, Failed):
                record = render_outcome(o, now)
                assert record is not None
                dlq.write(record)
        out = self._sinks["output"]
        for event in events:
            out.write(event)

    def _commit(self) -> None:
        durable = self.state is not None
        for sink in self._sinks.values():
            sink.flush(sync=durable)
        if self.state is not None:
            self.state.commit(self.pipeline, Checkpoint(
                input_key=INPUT_KEY, lines_done=self.requests,
                sinks={name: (s.path, s.size) for name, s in self._sinks.items()}),
                self.engine)


def _whole_payload_failure(outcomes: list[Outcome], raw: bytes) -> Failed | None:
    # A payload that failed as a whole comes back as one Failed whose raw is the input
    # itself; a bad alert inside a good payload carries only that alert.
    if len(outcomes) == 1 and isinstance(outcomes[0], Failed):
        failed = outcomes[0]
        if failed.raw == raw.decode("utf-8", "backslashreplace"):
            return failed
    return None
