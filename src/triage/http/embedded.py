"""Embedded mode of ``triage serve``: the same ``Pipeline`` and ``IncidentEngine`` as
``triage run``, in process, fed by HTTP bodies instead of lines.

Each body is wrapped in an envelope stamped with the server's wall clock, so the pipeline's
event time is the receive time and the outputs can be replayed exactly with ``triage run``.
Incident events go to ``output``, failures to ``dead_letter`` (stderr by default: nothing is
dropped). A timer task advances the clock once a second, so pages fire after their delay and
alerts time out even when nothing is being posted.

Durability (``--state``): a request is answered only once its outputs are written and the
state that covers them committed (one SQLite transaction). A 2xx therefore means "durably
triaged", the same promise as Kafka mode's "acknowledged by the broker", and a crash can only
lose requests that were never answered, which the sender retries. **Group commit**: requests
are triaged one at a time on the event loop as they arrive; a committer writes the outputs
and commits the state of every request triaged since its last commit in one go, in a worker
thread, while the loop goes on triaging the next ones. Concurrent senders share one fsync
instead of paying one each. ``state.durability`` says what a commit survives: ``power``
(fsync, ``synchronous=FULL``) or ``process`` (a killed process: ``kill -9``, OOM).

A write or commit that fails (disk full) loses nothing: the outputs are cut back, the state
changes are kept for the next commit, and the requests waiting on it get 503 with
Retry-After. While storage fails, each new request first retries the pending commit and is
refused with 503 before it is triaged if that fails too; one log line says storage failed and
one that it recovered. On restart the outputs are cut to the last commit, as with
``triage run --state``. Outputs only grow: a restart without state appends; with state, an
output its checkpoint does not account for stops the start unless ``--force``.

Triage itself runs on the event loop thread, without awaits inside it, so requests are
triaged one at a time in arrival order and need no locks; the committer only touches what
``StateFile.take`` and ``JsonLinesSink.take_staged`` handed it.

Feedback (``POST /api/v1/feedback``) is appended to the feedback history
(``feedback.store``) in one SQLite transaction before the answer; judgements the history
holds already (a client's retry) are counted as ``repeats`` and not appended again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import sqlite3
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from triage.core.incidents import Event, IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.render import render_outcome
from triage.core.triage import Triage
from triage.core.types import Failed, Outcome, Suppressed
from triage.errors import OutputConflict
from triage.http.intake import Accepted, Rejected, envelope
from triage.metrics import TriageMetrics, track_embedded_state
from triage.models.feedback import Feedback, FeedbackStore
from triage.state.sinks import JsonLinesSink, check_outputs
from triage.state.statefile import FOLD_STEP, Checkpoint, Durability, Pending, StateFile

log = logging.getLogger("triage.http")

INPUT_KEY = "triage serve"  # the checkpoint's input: HTTP requests, not a file
MAX_ERRORS_SHOWN = 10
RETRY_AFTER = 5.0  # seconds, in the 503 answered while storage fails
_ANSWER = {"triaged": "accepted", "deduplicated": "deduplicated", "suppressed": "suppressed"}


@dataclass(slots=True)
class _Batch:
    """What one group commit writes: per output the bytes staged, then the state."""

    data: dict[str, bytes]
    state: Pending | None
    written: set[str]


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
        outcomes: str | None = None,
        durability: Durability = "power",
        force: bool = False,
    ) -> None:
        self.pipeline = pipeline
        self.engine = engine
        self.metrics = metrics
        self.output_target = output
        self.dead_letter_target = dead_letter or "-"
        self.outcomes_target = outcomes
        self.durability = durability
        self.force = force
        self.state_path = state_path
        self.tick_interval = tick_interval
        self.clock = clock
        self.feedback_store = FeedbackStore(feedback_store) if feedback_store else None
        self.state: StateFile | None = None
        self.requests = 0
        self._sinks: dict[str, JsonLinesSink] = {}
        self._timer: asyncio.Task[None] | None = None
        self._started = False
        self._waiters: list[asyncio.Future[BaseException | None]] = []
        self._committer: asyncio.Task[None] | None = None
        self._io: ThreadPoolExecutor | None = None
        self.storage_error: BaseException | None = None  # set while commits fail
        self._last_commit = 0.0

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Restore state (with ``--state``), open the outputs, start the clock."""
        checkpoint: Checkpoint | None = None
        if self.state_path is not None:
            self.state = StateFile(self.state_path, durability=self.durability)
            checkpoint = self.state.restore(self.pipeline, self.engine)
        self.triage = Triage(self.pipeline, self.engine)
        sinks = checkpoint.sinks if checkpoint is not None else {}
        if checkpoint is not None and checkpoint.input_key == INPUT_KEY:
            self.requests = checkpoint.lines_done
        targets = {"output": self.output_target, "dead_letter": self.dead_letter_target}
        if self.outcomes_target is not None:
            targets["outcomes"] = self.outcomes_target
        # without state there is no checkpoint to cut back to: append to what is there
        append = self.state is None
        problems = [] if self.force else check_outputs(targets, sinks, append=append)
        if problems:
            if self.state is not None:
                self.state.close()
            raise OutputConflict("refusing to start: " + "; ".join(problems)
                                 + ". Move them away, or pass --force to start them over")
        std = {"output": sys.stdout.buffer, "outcomes": sys.stdout.buffer,
               "dead_letter": sys.stderr.buffer}
        self._sinks = {name: JsonLinesSink(target, resume=sinks.get(name), std=std[name],
                                           append=append and not self.force)
                       for name, target in targets.items()}
        self._io = ThreadPoolExecutor(1, thread_name_prefix="triage-commit")
        track_embedded_state(self.metrics, self.pipeline, self.engine)
        scorer = self.pipeline.noise_scorer
        if scorer is not None and hasattr(scorer, "on_failure"):
            scorer.on_failure = self.metrics.noise_model_failed  # a model that cannot be used
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
        if self._committer is not None:
            await self._committer
        if self.state is None:
            events = self.engine.flush_pages(max(self.clock(), self.pipeline.watermark))
            self.metrics.observe_events(events)
            self._write(events, [])
        try:
            self._apply(self._take())
        except (OSError, sqlite3.Error) as exc:
            log.error("stopping with output or state not written (%s): what was answered "
                      "2xx is durable, the rest is retried by its senders", exc)
        for sink in self._sinks.values():
            sink.close()
        if self.state is not None:
            self.state.close()
        if self._io is not None:
            self._io.shutdown()
        self._started = False

    async def ready(self) -> bool:
        return self._started

    # -- requests ------------------------------------------------------------------------

    async def accept(self, body: bytes, *, received_at: float) -> Accepted | Rejected:
        """Triage one body now; answer only after its results are written (and, with
        ``--state``, committed)."""
        if self.storage_error is not None:  # try what is pending first; refuse if it fails
            failed = await self.durable()
            if failed is not None:
                return self._unavailable(failed)
        payload: Any = None
        raw = body
        if len(body) <= self.pipeline.limits.max_payload_bytes:  # else the pipeline refuses it
            try:
                payload = orjson.loads(body)  # parsed once: the pipeline takes it decoded
                raw = envelope(body, received_at)
                if not isinstance(payload, dict | list):  # a bare string is read as text
                    payload = None
            except orjson.JSONDecodeError:
                # Not JSON, so it cannot be wrapped: the pipeline still takes it as it is,
                # since it is the one boundary that dead-letters bad input with its exact
                # bytes and counts it.
                payload = None
        outcomes, events = self._triage(raw, payload, received_at)
        failed = await self.durable()
        if failed is not None:
            return self._unavailable(failed)
        whole = _whole_payload_failure(outcomes, raw)
        if whole is not None:
            status = 413 if whole.error == "OversizeError" else 400
            return Rejected(status, whole.error, whole.reason, field=whole.field or None)
        counts: dict[str, int] = {"triaged": 0, "deduplicated": 0, "suppressed": 0,
                                  "failed": 0}
        errors: list[dict[str, Any]] = []
        results: list[dict[str, Any]] = []
        for i, o in enumerate(outcomes):
            counts[o.kind] += 1
            if isinstance(o, Failed):
                if len(errors) < MAX_ERRORS_SHOWN:
                    errors.append({"error": o.error, "field": o.field or None,
                                   "reason": o.reason})
                results.append({"index": i, "outcome": "refused", "error": o.error,
                                "field": o.field or None, "reason": o.reason})
                continue
            entry: dict[str, Any] = {"index": i, "fingerprint": o.alert.fingerprint,
                                     "outcome": _ANSWER[o.kind]}
            if isinstance(o, Suppressed):
                entry["reason"] = o.reason
                entry["detail"] = o.detail
            results.append(entry)
        return Accepted(alerts=len(outcomes), counts=counts, events=events, errors=errors,
                        results=results)

    async def dead_letter(self, raw: bytes, error: str, reason: str) -> None:
        """Dead-letter a body refused at the door (too large), durably before the answer."""
        record = render_outcome(Failed(error, "", reason,
                                       raw.decode("utf-8", "backslashreplace")),
                                max(self.clock(), self.pipeline.watermark))
        assert record is not None
        self._sinks["dead_letter"].write(record)
        await self.durable()

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

    def _triage(self, raw: bytes, payload: Any = None, received_at: float | None = None
                ) -> tuple[list[Outcome], int]:
        """Run both stages on ``raw`` (the envelope; or ``payload``, the body already
        decoded, received at ``received_at``), and stage the writes. Returns the outcomes of
        the input (without the changes the pipeline's clock made on the way) and the events
        written."""
        pipeline = self.pipeline
        swept_before = pipeline.counts["swept"]
        step = self.triage.process(raw if payload is None else payload, received_at)
        results = step.outcomes
        if payload is not None and len(results) == 1 and isinstance(results[0], Failed):
            # a body that failed as a whole is dead-lettered as its envelope, its exact
            # bytes and receive time, like one read from a file
            text = raw.decode("utf-8", "backslashreplace")
            if results[0].raw == orjson.dumps(payload).decode():
                results = [dataclasses.replace(results[0], raw=text)]
        swept = pipeline.counts["swept"] - swept_before
        self.metrics.observe(results, swept=swept, events=step.events,
                             seconds={"intake": step.seconds[0], "incidents": step.seconds[1]})
        self.requests += 1
        # a bug in stage 2 is dead-lettered with the body, never an error to the sender
        self._write(step.events, results if step.failure is None else [*results, step.failure])
        return results[swept:], len(step.events)

    # -- the clock -----------------------------------------------------------------------

    def tick(self, now: float) -> int:
        """Advance both stages to wall-clock ``now`` with no input: alerts time out, holds
        are released, pages whose delay has passed are decided. Returns events written."""
        step = self.triage.tick(now)
        swept, events = step.outcomes, step.events
        if swept or events or step.failure is not None:
            self.metrics.observe(swept, swept=len(swept), events=events)
            self._write(events, swept if step.failure is None else [*swept, step.failure])
            self._schedule_commit()
        return len(events)

    async def _run_timers(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                self.tick(self.clock())
                self._update_model_version()
                await self._fold_when_idle()
            except Exception:  # the clock must keep running whatever one tick hit
                log.exception("timer tick failed")

    async def _fold_when_idle(self) -> None:
        """Fold the state's commit log into its base while no request is being committed:
        a storm pays one insert per commit, the quiet after it pays the rows."""
        state = self.state
        if (state is None or not state.logged or self._waiters
                or (self._committer is not None and not self._committer.done())
                or time.monotonic() - self._last_commit < self.tick_interval):
            return
        loop = asyncio.get_running_loop()
        with contextlib.suppress(OSError, sqlite3.Error):  # the next quiet tick tries again
            # a step at a time: a request arriving meanwhile waits for one step at most
            await loop.run_in_executor(self._io, state.fold, FOLD_STEP)

    def _update_model_version(self) -> None:
        version = getattr(self.pipeline.noise_scorer, "version", None)
        self.metrics.set_model_version(version if isinstance(version, str) else None)

    # -- output --------------------------------------------------------------------------

    def _write(self, events: list[Event], outcomes: list[Outcome]) -> None:
        now = self.pipeline.watermark
        dlq = self._sinks["dead_letter"]
        stage1 = self._sinks.get("outcomes")
        for o in outcomes:
            if isinstance(o, Failed):
                record = render_outcome(o, now)
                assert record is not None
                dlq.write(record)
                if stage1 is not None:
                    stage1.write(record)
            elif stage1 is not None:
                record = render_outcome(o, now)
                if record is not None:
                    stage1.write(record)
        out = self._sinks["output"]
        for event in events:
            out.write(event)

    # -- group commit ----------------------------------------------------------------------

    async def durable(self) -> BaseException | None:
        """Wait until everything triaged so far is written (and committed, with state).
        None if it is; else the error that kept it from being (it stays pending, and the
        next commit retries it)."""
        future: asyncio.Future[BaseException | None] = (
            asyncio.get_running_loop().create_future())
        self._waiters.append(future)
        self._schedule_commit()
        return await future

    def _schedule_commit(self) -> None:
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_loop(), name="triage-commit")

    async def _commit_loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            waiters, self._waiters = self._waiters, []
            batch = self._take()
            error: BaseException | None = None
            try:
                await loop.run_in_executor(self._io, self._apply, batch)
            except (OSError, sqlite3.Error) as exc:
                self._give_back(batch)
                error = exc
            self._storage(error)
            self._last_commit = time.monotonic()
            for waiter in waiters:
                if not waiter.done():
                    waiter.set_result(error)
            if not self._waiters:
                return

    def _take(self) -> _Batch:
        """On the loop: what the next commit writes, moved out of memory."""
        data = {name: sink.take_staged() for name, sink in self._sinks.items()}
        state = None
        if self.state is not None:
            sizes = {name: (s.path, s.size + len(data[name])) for name, s in self._sinks.items()}
            state = self.state.take(self.pipeline, Checkpoint(
                input_key=INPUT_KEY, lines_done=self.requests, sinks=sizes), self.engine)
        return _Batch(data, state, set())

    def _apply(self, batch: _Batch) -> None:
        """In the committer thread (or at stop): outputs first, then the state."""
        sync = self.state is not None and self.durability == "power"
        for name, data in batch.data.items():
            self._sinks[name].append(data, sync=sync)
            batch.written.add(name)
        if batch.state is not None and self.state is not None:
            self.state.write(batch.state)

    def _give_back(self, batch: _Batch) -> None:
        for name, data in batch.data.items():
            if name not in batch.written:
                self._sinks[name].restage(data)
        if batch.state is not None and self.state is not None:
            self.state.give_back(batch.state)

    def _storage(self, error: BaseException | None) -> None:
        if error is not None and self.storage_error is None:
            log.error("cannot write the outputs or the state (%s): answering 503 with "
                      "Retry-After until a commit succeeds; nothing answered 2xx is lost",
                      error)
        elif error is None and self.storage_error is not None:
            log.warning("storage recovered: outputs and state written again")
        self.storage_error = error

    def _unavailable(self, error: BaseException) -> Rejected:
        return Rejected(503, "StorageUnavailable",
                        f"triage cannot write its outputs or state ({error}); nothing of this "
                        "request is durable: retry", retry_after=RETRY_AFTER)


def _whole_payload_failure(outcomes: list[Outcome], raw: bytes) -> Failed | None:
    # A payload that failed as a whole comes back as one Failed whose raw is the input
    # itself; a bad alert inside a good payload carries only that alert.
    if len(outcomes) == 1 and isinstance(outcomes[0], Failed):
        failed = outcomes[0]
        if failed.raw == raw.decode("utf-8", "backslashreplace"):
            return failed
    return None
