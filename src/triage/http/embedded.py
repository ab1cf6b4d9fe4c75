"""Embedded mode of ``triage serve``: the same ``Pipeline`` and ``IncidentEngine`` as
``triage run``, in process, fed by HTTP bodies instead of lines.

Each body is wrapped in an envelope stamped with the server's wall clock, so the pipeline's
event time is the receive time and the outputs can be replayed exactly with ``triage run``.
Incident events go to ``output``, failures to ``dead_letter`` (stderr by default: nothing is
dropped). A timer task advances the clock once a second, so pages fire after their delay and
alerts time out even when nothing is being posted.

Durability (``--state``): a request is answered only once its outputs are written and the
request itself is committed to the state file's input journal (one SQLite transaction). A
2xx therefore means "durably triaged", the same promise as Kafka mode's "acknowledged by the
broker", and a crash can only lose requests that were never answered, which the sender
retries. **Group commit**: requests are triaged one at a time on the event loop as they
arrive; a committer writes the outputs and journals every request triaged since its last
commit in one go, in a worker thread, while the loop goes on triaging the next ones.
Concurrent senders share one fsync instead of paying one each. ``state.durability`` says
what a commit survives: ``power`` (fsync, ``synchronous=FULL``) or ``process`` (a killed
process: ``kill -9``, OOM).

**The journal, and snapshots.** A commit journals the inputs since the last one (request
bodies as received, with their receive times; clock ticks; bodies refused at the door), not
the state they made: the state is taken (``StateFile.take``, on the loop) only every
``SNAPSHOT_EVERY`` alerts, when idle, when the API changes a silence or a new noise model
scores, and at stop, in the same transaction as a commit. A restart restores the last
snapshot and runs the journaled inputs after it again, which triage, deterministic in event
time, turns into the same state and outputs (checked against the outputs' sizes). Taking the
state at every commit halved the crash-safe receiver's speed in a storm.

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
from triage.state.statefile import (
    FOLD_STEP,
    Checkpoint,
    Durability,
    Input,
    Journaled,
    Pending,
    StateFile,
)

log = logging.getLogger("triage.http")

INPUT_KEY = "triage serve"  # the checkpoint's input: HTTP requests, not a file
MAX_ERRORS_SHOWN = 10
RETRY_AFTER = 5.0  # seconds, in the 503 answered while storage fails
# The state is taken (a snapshot) at the latest after this many alerts journaled since the
# last one: what a restart replays. Taking it holds the loop about 4 us an alert (0.2 s).
SNAPSHOT_EVERY = 50_000
IDLE_SNAPSHOT_AFTER = 60.0  # seconds: clock ticks alone are snapshot this often when idle
_ANSWER = {"triaged": "accepted", "deduplicated": "deduplicated", "suppressed": "suppressed"}


@dataclass(slots=True)
class _Batch:
    """What one group commit writes: per output the bytes staged, then the state."""

    data: dict[str, bytes]
    state: Pending | None  # the state taken, when this commit is a snapshot
    journal: Journaled | None  # the inputs since the last commit (with --state)
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
        # the input journal (with --state): inputs since the last commit, their count, and
        # what the last snapshot covers
        self.inputs = 0
        self._inputs: list[Input] = []
        self._snapshot_inputs = 0  # inputs the last snapshot covers
        self._since_snapshot = 0  # alerts journaled since it
        self._snapshot_due = True  # the first commit takes the state
        self._last_snapshot = time.monotonic()
        self._model: str | None = None  # the noise model version the journal's inputs saw
        self._replaying = False

    # -- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        """Restore state (with ``--state``), open the outputs, start the clock."""
        checkpoint: Checkpoint | None = None
        journal: list[Journaled] = []
        if self.state_path is not None:
            self.state = StateFile(self.state_path, durability=self.durability)
            checkpoint = self.state.restore(self.pipeline, self.engine)
            # the inputs after the state, to run again: the outputs hold their results
            journal = list(self.state.journal(checkpoint.inputs if checkpoint else 0))
        self.triage = Triage(self.pipeline, self.engine)
        last = journal[-1].checkpoint if journal else checkpoint
        sinks = last.sinks if last is not None else {}
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
        if self.state is not None:
            self._replay(checkpoint, journal)
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
            self._apply(self._take(snapshot=True))
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
        outcomes, events, raw = self._request(body, received_at)
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
        at = max(self.clock(), self.pipeline.watermark)
        self._refuse(orjson.dumps([error, reason]) + b"\n" + raw, at)
        await self.durable()

    def _request(self, body: bytes, received_at: float) -> tuple[list[Outcome], int, bytes]:
        """Triage one request's body (an input of the journal): its outcomes, the number of
        events written, and the input as triaged (the envelope, or the body)."""
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
        self._journal("r", received_at, body, len(outcomes))
        return outcomes, events, raw

    def _refuse(self, data: bytes, at: float) -> None:
        """Dead-letter a body refused at the door: ``data`` is the error and reason as a
        JSON pair, a newline, then the body (an input of the journal)."""
        head, _, raw = data.partition(b"\n")
        error, reason = orjson.loads(head)
        record = render_outcome(Failed(error, "", reason,
                                       raw.decode("utf-8", "backslashreplace")), at)
        assert record is not None
        self._sinks["dead_letter"].write(record)
        self._journal("d", at, data, 1)

    def _journal(self, kind: str, at: float, body: bytes, alerts: int) -> None:
        self.inputs += 1
        if self.state is not None and not self._replaying:
            self._inputs.append((kind, at, body))
            self._since_snapshot += alerts

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
        if not self._replaying:
            self.metrics.observe(results, swept=swept, events=step.events,
                                 seconds={"intake": step.seconds[0],
                                          "incidents": step.seconds[1]})
        self.requests += 1
        # a bug in stage 2 is dead-lettered with the body, never an error to the sender
        self._write(step.events, results if step.failure is None else [*results, step.failure])
        return results[swept:], len(step.events)

    # -- the clock -----------------------------------------------------------------------

    def tick(self, now: float) -> int:
        """Advance both stages to wall-clock ``now`` with no input: alerts time out, holds
        are released, pages whose delay has passed are decided. Returns events written."""
        step = self.triage.tick(now)
        self._journal("t", now, b"", 0)
        swept, events = step.outcomes, step.events
        if swept or events or step.failure is not None:
            if not self._replaying:
                self.metrics.observe(swept, swept=len(swept), events=events)
            self._write(events, swept if step.failure is None else [*swept, step.failure])
            if not self._replaying:
                self._schedule_commit()
        return len(events)

    def _replay(self, checkpoint: Checkpoint | None, journal: list[Journaled]) -> None:
        """After ``restore``: run again the inputs the journal holds past the state, with
        the noise model that decided them. Their outputs are in the files already (cut
        back to the last commit): what they make again is checked against that and
        dropped."""
        after = checkpoint.inputs if checkpoint is not None else 0
        self.inputs = after
        self._snapshot_inputs = after
        before = checkpoint.sinks if checkpoint is not None else {}
        last: Checkpoint | None = None
        replayed = 0
        self._replaying = True
        try:
            for row in journal:
                with self._model_pinned(row.model):
                    for i, (kind, at, body) in enumerate(row.inputs, start=row.first):
                        if i < after:
                            continue  # in the state already
                        if kind == "r":
                            self._request(body, at)
                        elif kind == "t":
                            self.tick(at)
                        else:  # "d"
                            self._refuse(body, at)
                        replayed += 1
                last = row.checkpoint
        finally:
            self._replaying = False
        if last is None:
            return
        self.requests = last.lines_done
        differ = [name for name, sink in self._sinks.items()
                  if name in last.sinks and last.sinks[name][0] is not None
                  and before.get(name, (None, 0))[1] + sink.staged_bytes
                  != last.sinks[name][1]]
        for sink in self._sinks.values():
            sink.take_staged()  # written before the crash
        if differ:
            log.warning("replaying %d journaled inputs made output of another size than "
                        "was written for them (%s): the state may differ from the outputs",
                        replayed, ", ".join(differ))
        else:
            log.info("replayed %d inputs journaled after the last snapshot", replayed)
        self._since_snapshot = replayed
        self._snapshot_due = True  # take the state now, not after a second crash

    @contextlib.contextmanager
    def _model_pinned(self, version: str | None) -> Any:
        scorer = self.pipeline.noise_scorer
        pin = getattr(scorer, "pinned", None)
        if pin is None or getattr(scorer, "version", None) == version:
            yield
            return
        with pin(version):
            yield

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
        if (state is None or self._waiters
                or (self._committer is not None and not self._committer.done())
                or time.monotonic() - self._last_commit < self.tick_interval):
            return
        if self._since_snapshot or (
                self.inputs > self._snapshot_inputs
                and time.monotonic() - self._last_snapshot >= IDLE_SNAPSHOT_AFTER):
            self._snapshot_due = True  # so a restart replays nothing
            self._schedule_commit()
            return
        if not state.logged:
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

    def _take(self, *, snapshot: bool = False) -> _Batch:
        """On the loop: what the next commit writes, moved out of memory: the outputs, the
        inputs since the last commit, and (a snapshot) the state, when it is due."""
        data = {name: sink.take_staged() for name, sink in self._sinks.items()}
        if self.state is None:
            return _Batch(data, None, None, set())
        sizes = {name: (s.path, s.size + len(data[name])) for name, s in self._sinks.items()}
        checkpoint = Checkpoint(input_key=INPUT_KEY, lines_done=self.requests, sinks=sizes,
                                inputs=self.inputs)
        inputs, self._inputs = self._inputs, []
        journal = Journaled(self.inputs - len(inputs), inputs, checkpoint, self._model)
        state = None
        model = getattr(self.pipeline.noise_scorer, "version", None)
        if (snapshot or self._snapshot_due or self._since_snapshot >= SNAPSHOT_EVERY
                or self.pipeline.silences_changed or model != self._model):
            # a silence set through the API, or a model promoted, is not an input the
            # journal replays: the state is taken with it
            state = self.state.take(self.pipeline, checkpoint, self.engine)
            self._snapshot_due, self._since_snapshot, self._model = False, 0, model
            self._snapshot_inputs, self._last_snapshot = self.inputs, time.monotonic()
        return _Batch(data, state, journal, set())

    def _apply(self, batch: _Batch) -> None:
        """In the committer thread (or at stop): outputs first, then the journal (and the
        state, when taken)."""
        sync = self.state is not None and self.durability == "power"
        for name, data in batch.data.items():
            self._sinks[name].append(data, sync=sync)
            batch.written.add(name)
        if self.state is not None and batch.journal is not None:
            # a snapshot covers the inputs: their journal row is not needed
            self.state.write_journal(batch.journal if batch.state is None else None,
                                     batch.state)

    def _give_back(self, batch: _Batch) -> None:
        for name, data in batch.data.items():
            if name not in batch.written:
                self._sinks[name].restage(data)
        if batch.journal is not None:
            self._inputs[:0] = batch.journal.inputs
        if batch.state is not None and self.state is not None:
            self.state.give_back(batch.state)
            self._snapshot_due = True  # the next commit takes the state again

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
