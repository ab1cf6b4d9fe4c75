"""The embedded runtime behind ``triage run``: JSON Lines in; incident events out; the stage-1
outcome stream and dead letters beside them; state checkpointed crash-safely. All I/O of the
embedded path is here; the decisions are the core's (``Pipeline``, ``IncidentEngine``).
"""

from __future__ import annotations

import hashlib
import itertools
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.render import render_failure, render_outcome
from triage.core.triage import Triage
from triage.core.types import Failed
from triage.errors import OutputConflict, StorageError
from triage.state.sinks import JsonLinesSink, check_outputs
from triage.state.statefile import Checkpoint, Durability, StateFile

ProgressFn = Callable[[int], None]  # called with the bytes read so far


@dataclass(frozen=True, slots=True)
class RunResult:
    lines: int
    lines_skipped: int  # already covered by a checkpoint (resumed run)
    alerts: int  # alerts (and bad payloads) that came in during this run
    events: int  # incident events written during this run
    failures: int
    counts: dict[str, int]
    incident_counts: dict[str, int]
    seconds: float


def input_key(path: Path) -> str:
    """Identity of an input file, to tell a resumed run from a run on other input."""
    st = path.stat()
    with path.open("rb") as fh:
        head = fh.read(4096)
    return f"{path.resolve()}:{st.st_ino}:{hashlib.sha1(head).hexdigest()[:16]}"


class _Reader:
    """The input's lines, numbered from 1, with a hash chain over every line read so far
    (``digest``): a checkpoint keeps it, so a run resumed from stdin can tell whether the
    input it is sent again starts with exactly the lines it already triaged."""

    def __init__(self, fh: BinaryIO, progress: ProgressFn | None) -> None:
        self._it = enumerate(fh, start=1)
        self._progress = progress
        self.read = 0
        self.digest = b""

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        return self

    def __next__(self) -> tuple[int, bytes]:
        try:
            number, line = next(self._it)
        except StopIteration:
            if self._progress is not None:
                self._progress(self.read)
            raise
        self.read += len(line)
        self.digest = hashlib.blake2b(self.digest + line, digest_size=16).digest()
        if self._progress is not None and number % 2048 == 0:
            self._progress(self.read)
        return number, line


def _resume_lines(reader: _Reader, checkpoint: Checkpoint | None, key: str | None,
                  spool_dir: Path) -> tuple[Iterator[tuple[int, bytes]], int]:
    """The lines to triage, and how many were skipped as covered by ``checkpoint``.

    A file is recognised by ``key``. Stdin cannot be: its first ``lines_done`` lines are
    read into a spool, and skipped only if their hash chain is the checkpoint's (the input
    was sent again from its start); otherwise they are triaged like the rest, where dedup
    takes what was already triaged as repeats.
    """
    if checkpoint is None or not checkpoint.lines_done:
        return reader, 0
    done = checkpoint.lines_done
    if key is not None:
        if checkpoint.input_key != key:
            return reader, 0
        for number, _ in reader:
            if number >= done:
                break
        return reader, done
    if checkpoint.input_key is not None or not checkpoint.input_hash:
        return reader, 0
    spool = tempfile.TemporaryFile(dir=spool_dir, prefix="triage-replay-")  # noqa: SIM115 (closed by _spooled)
    number = 0
    for number, line in reader:
        spool.write(line)
        if number >= done:
            break
    if number == done and reader.digest.hex() == checkpoint.input_hash:
        spool.close()
        return reader, done
    spool.seek(0)
    return itertools.chain(enumerate(_spooled(spool), start=1), reader), 0


def _spooled(spool: BinaryIO) -> Iterator[bytes]:
    with spool:
        yield from spool


def run_embedded(
    pipeline: Pipeline,
    *,
    engine: IncidentEngine | None = None,
    input_path: str,
    output: str,
    outcomes: str | None = None,
    dead_letter: str | None = None,
    state_path: Path | None = None,
    progress: ProgressFn | None = None,
    checkpoint_every: int = 10_000,
    checkpoint_seconds: float = 1.0,
    force: bool = False,
    durability: Durability = "power",
) -> RunResult:
    """Replay ``input_path`` (JSON Lines, ``-`` for stdin) through stage 1 and, with an
    ``engine``, stage 2.

    ``output`` gets incident events (the stage-1 outcome stream if there is no engine);
    ``outcomes``, if given, the stage-1 stream; ``dead_letter`` every failure with its raw
    line (without it, failures go to stderr as JSON Lines: nothing is dropped).

    With ``state_path``, state is restored first and checkpointed every
    ``checkpoint_every`` lines or ``checkpoint_seconds``, whichever comes first. A run killed
    at any point and started again with the same arguments resumes after its last
    checkpoint and truncates output written after it, so every record is written exactly
    once. Input from stdin cannot be skipped: send it again from any earlier point and what
    was already triaged is recognised as repeats (dedup is idempotent under replay).

    Outputs only grow: an existing output that the state's checkpoint does not account for
    (no state, another state, a moved folder) makes the run refuse with ``OutputConflict``
    naming the files, unless ``force`` starts them over. A write or commit that fails (disk
    full) ends the run with ``StorageError``; with ``state_path`` the same command resumes
    after the last checkpoint once the disk has room.
    """
    started = time.perf_counter()
    with ExitStack() as stack:
        state = (stack.enter_context(StateFile(state_path, durability=durability))
                 if state_path else None)
        checkpoint: Checkpoint | None = state.restore(pipeline, engine) if state else None
        triage = Triage(pipeline, engine)

        key = input_key(Path(input_path)) if input_path != "-" else None
        resume: dict[str, tuple[str | None, int]] = {}
        if checkpoint is not None:
            resume = checkpoint.sinks

        targets = {"output": output, "outcomes": outcomes or "-",
                   "dead_letter": dead_letter or "-"}
        if not force:
            problems = check_outputs(targets, resume)
            if problems:
                raise OutputConflict(
                    "refusing to overwrite outputs: " + "; ".join(problems)
                    + ". Move them away, or pass --force to start them over")

        def sink(target: str, name: str, std: BinaryIO) -> JsonLinesSink:
            return stack.enter_context(JsonLinesSink(target, resume=resume.get(name), std=std))

        out = sink(output, "output", sys.stdout.buffer)
        sinks = {"output": out}
        stage1 = out if engine is None else None
        if outcomes is not None:
            stage1 = sinks["outcomes"] = sink(outcomes, "outcomes", sys.stdout.buffer)
        dlq = sink(dead_letter or "-", "dead_letter", sys.stderr.buffer)
        sinks["dead_letter"] = dlq
        fh: BinaryIO = (sys.stdin.buffer if input_path == "-"
                        else stack.enter_context(open(input_path, "rb")))
        reader = _Reader(fh, progress)
        lines_in, skip = _resume_lines(
            reader, checkpoint, key,
            state_path.resolve().parent if state_path else Path(tempfile.gettempdir()))

        sync = durability == "power"

        def save(lines_done: int) -> None:
            try:
                for each in sinks.values():
                    each.flush(sync=sync)
                if state is not None:
                    state.commit(pipeline, Checkpoint(
                        input_key=key, lines_done=lines_done,
                        sinks={name: (s.path, s.size) for name, s in sinks.items()},
                        input_hash=reader.digest.hex()), engine)
            except (OSError, sqlite3.Error) as exc:
                where = (f"; the state holds everything up to line {state_line[0]:,}: run "
                         "the same command again to resume from there" if state is not None
                         else "; without --state the outputs are incomplete: run again")
                raise StorageError(f"could not write the outputs or the state: {exc}"
                                   f"{where}") from None
            state_line[0] = lines_done

        state_line = [checkpoint.lines_done if checkpoint is not None else 0]

        process = triage.process
        alerts_before = pipeline.counts["in"]
        events = failures = lines = 0
        last_line = saved_line = skip
        saved_at = time.monotonic()
        for number, line in lines_in:
            last_line = number
            lines += 1
            line = line.rstrip(b"\r\n")  # the raw payload kept for dead letters is the line
            if not line.strip():
                continue
            step = process(line)
            now = triage.clock
            for outcome in step.outcomes:
                if isinstance(outcome, Failed):
                    failures += 1
                    record = render_outcome(outcome, now, number)
                    assert record is not None
                    dlq.write(record)
                    if stage1 is not None and stage1 is not dlq:
                        stage1.write(record)
                elif stage1 is not None:
                    record = render_outcome(outcome, now, number)
                    if record is not None:
                        stage1.write(record)
            if step.failure is not None:  # a bug in stage 2 must not end a long replay
                failures += 1
                dlq.write(render_failure(step.failure, now, number))
            for event in step.events:
                out.write(event)
                events += 1
            if state is not None and (
                number - saved_line >= checkpoint_every
                or (number & 255 == 0 and time.monotonic() - saved_at >= checkpoint_seconds)
            ):
                save(number)
                saved_line, saved_at = number, time.monotonic()
        # the input has ended: pages still inside their delay are decided now
        for event in triage.flush():
            out.write(event)
            events += 1
        save(last_line)
    return RunResult(lines=lines, lines_skipped=skip,
                     alerts=pipeline.counts["in"] - alerts_before, events=events,
                     failures=failures, counts=dict(pipeline.counts),
                     incident_counts=dict(engine.counts) if engine else {},
                     seconds=time.perf_counter() - started)
