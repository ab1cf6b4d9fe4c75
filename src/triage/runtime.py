"""The embedded runtime behind ``triage run``: JSON Lines in; incident events out; the stage-1
outcome stream and dead letters beside them; state checkpointed crash-safely. All I/O of the
embedded path is here; the decisions are the core's (``Pipeline``, ``IncidentEngine``).
"""

from __future__ import annotations

import hashlib
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from triage.core.incidents import IncidentEngine
from triage.core.pipeline import Pipeline
from triage.core.render import render_failure, render_outcome
from triage.core.types import Failed
from triage.errors import OutputConflict, StorageError
from triage.sinks import JsonLinesSink, check_outputs
from triage.statefile import Checkpoint, Durability, StateFile

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


def _lines(fh: BinaryIO, skip: int, progress: ProgressFn | None) -> Iterator[tuple[int, bytes]]:
    read = 0
    for number, line in enumerate(fh, start=1):
        read += len(line)
        if number <= skip:
            continue
        if progress is not None and number % 2048 == 0:
            progress(read)
        yield number, line
    if progress is not None:
        progress(read)


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
        if engine is not None:
            pipeline.on_change = engine.add_change

        key = input_key(Path(input_path)) if input_path != "-" else None
        skip = 0
        resume: dict[str, tuple[str | None, int]] = {}
        if checkpoint is not None:
            if key is not None and checkpoint.input_key == key:
                skip = checkpoint.lines_done
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

        sync = durability == "power"

        def save(lines_done: int) -> None:
            try:
                for each in sinks.values():
                    each.flush(sync=sync)
                if state is not None:
                    state.commit(pipeline, Checkpoint(
                        input_key=key, lines_done=lines_done,
                        sinks={name: (s.path, s.size) for name, s in sinks.items()}), engine)
            except (OSError, sqlite3.Error) as exc:
                where = (f"; the state holds everything up to line {state_line[0]:,}: run "
                         "the same command again to resume from there" if state is not None
                         else "; without --state the outputs are incomplete: run again")
                raise StorageError(f"could not write the outputs or the state: {exc}"
                                   f"{where}") from None
            state_line[0] = lines_done

        state_line = [checkpoint.lines_done if checkpoint is not None else 0]

        process = pipeline.process
        alerts_before = pipeline.counts["in"]
        events = failures = lines = 0
        last_line = saved_line = skip
        saved_at = time.monotonic()
        for number, line in _lines(fh, skip, progress):
            last_line = number
            lines += 1
            line = line.rstrip(b"\r\n")  # the raw payload kept for dead letters is the line
            if not line.strip():
                continue
            results = process(line)
            now = pipeline.watermark
            for outcome in results:
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
            if engine is not None:
                try:
                    produced = engine.observe(results, now)
                except Exception as exc:  # a bug in stage 2 must not end a long replay
                    failures += 1
                    dlq.write(render_failure(Failed(
                        type(exc).__name__, "", f"internal error in the incident stage: "
                        f"{exc!r}", line.decode("utf-8", "backslashreplace")), now, number))
                    produced = []
                for event in produced:
                    out.write(event)
                    events += 1
            if state is not None and (
                number - saved_line >= checkpoint_every
                or (number & 255 == 0 and time.monotonic() - saved_at >= checkpoint_seconds)
            ):
                save(number)
                saved_line, saved_at = number, time.monotonic()
        if engine is not None:
            # the input has ended: pages still inside their delay are decided now
            for event in engine.flush_pages(pipeline.watermark):
                out.write(event)
                events += 1
        save(last_line)
    return RunResult(lines=lines, lines_skipped=skip,
                     alerts=pipeline.counts["in"] - alerts_before, events=events,
                     failures=failures, counts=dict(pipeline.counts),
                     incident_counts=dict(engine.counts) if engine else {},
                     seconds=time.perf_counter() - started)
