"""The embedded runtime behind ``triage run``: JSON Lines in, outcome records out, failures
to the dead-letter file, state checkpointed crash-safely. All I/O of the embedded path is
here; the decisions are the core ``Pipeline``'s.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import orjson

from triage.core.pipeline import Pipeline
from triage.core.render import render_outcome
from triage.core.types import Failed
from triage.statefile import Checkpoint, StateFile

ProgressFn = Callable[[int], None]  # called with the bytes read so far


@dataclass(frozen=True, slots=True)
class RunResult:
    lines: int
    lines_skipped: int  # already covered by a checkpoint (resumed run)
    alerts: int  # alerts (and bad payloads) that came in during this run
    records_written: int
    failures: int
    counts: dict[str, int]
    seconds: float


def input_key(path: Path) -> str:
    """Identity of an input file, to tell a resumed run from a run on other input."""
    st = path.stat()
    with path.open("rb") as fh:
        head = fh.read(4096)
    return f"{path.resolve()}:{st.st_ino}:{hash_bytes(head)}"


def hash_bytes(data: bytes) -> str:
    import hashlib

    return hashlib.sha1(data).hexdigest()[:16]


class _Sink:
    """An append-only JSON Lines output that knows its size, for checkpoints."""

    def __init__(self, fh: BinaryIO, path: str | None, size: int) -> None:
        self.fh = fh
        self.path = path
        self.size = size

    def write(self, record: dict[str, object]) -> None:
        data = orjson.dumps(record) + b"\n"
        self.fh.write(data)
        self.size += len(data)

    def sync(self) -> None:
        self.fh.flush()
        if self.path is not None:
            os.fsync(self.fh.fileno())


def _open_sink(stack: ExitStack, target: str | None, resume_bytes: int | None) -> _Sink | None:
    if target is None:
        return None
    if target == "-":
        return _Sink(sys.stdout.buffer, None, 0)
    path = Path(target)
    path.parent.mkdir(parents=True, exist_ok=True)
    if resume_bytes is not None and path.exists():
        resumed: BinaryIO = stack.enter_context(path.open("r+b"))
        resumed.truncate(resume_bytes)  # output written after the last checkpoint is redone
        resumed.seek(resume_bytes)
        return _Sink(resumed, str(path.resolve()), resume_bytes)
    fresh: BinaryIO = stack.enter_context(path.open("wb"))
    return _Sink(fresh, str(path.resolve()), 0)


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
    input_path: str,
    output: str,
    dead_letter: str | None = None,
    state_path: Path | None = None,
    progress: ProgressFn | None = None,
    checkpoint_every: int = 10_000,
    checkpoint_seconds: float = 1.0,
) -> RunResult:
    """Replay ``input_path`` (JSON Lines, ``-`` for stdin) through ``pipeline``.

    With ``state_path``, state is restored first and checkpointed every
    ``checkpoint_every`` lines or ``checkpoint_seconds``, whichever comes first. A run killed
    at any point and started again with the same arguments resumes after its last
    checkpoint, truncates output written after it, and so writes every record exactly once.
    Input from stdin cannot be skipped: send it again from any earlier point and the alerts
    already triaged are recognised as repeats (dedup is idempotent under replay).
    """
    started = time.perf_counter()
    with ExitStack() as stack:
        state = stack.enter_context(StateFile(state_path)) if state_path else None
        checkpoint = state.restore(pipeline) if state else None

        key = input_key(Path(input_path)) if input_path != "-" else None
        skip = 0
        out_resume = dlq_resume = None
        if checkpoint is not None:
            if key is not None and checkpoint.input_key == key:
                skip = checkpoint.lines_done
            out_abs = str(Path(output).resolve()) if output != "-" else None
            if out_abs is not None and checkpoint.output_path == out_abs:
                out_resume = checkpoint.output_bytes
            dlq_abs = str(Path(dead_letter).resolve()) if dead_letter not in (None, "-") else None
            if dlq_abs is not None and checkpoint.dead_letter_path == dlq_abs:
                dlq_resume = checkpoint.dead_letter_bytes

        out = _open_sink(stack, output, out_resume)
        dlq = _open_sink(stack, dead_letter, dlq_resume)
        assert out is not None
        fh: BinaryIO = (sys.stdin.buffer if input_path == "-"
                        else stack.enter_context(open(input_path, "rb")))

        def save(lines_done: int) -> None:
            out.sync()
            if dlq is not None:
                dlq.sync()
            if state is not None:
                state.commit(pipeline, Checkpoint(
                    input_key=key, lines_done=lines_done, output_path=out.path,
                    output_bytes=out.size, dead_letter_path=dlq.path if dlq else None,
                    dead_letter_bytes=dlq.size if dlq else 0))

        process = pipeline.process
        alerts_before = pipeline.counts["in"]
        written = failures = lines = 0
        last_line = saved_line = skip
        saved_at = time.monotonic()
        for number, line in _lines(fh, skip, progress):
            last_line = number
            lines += 1
            line = line.rstrip(b"\r\n")  # the raw payload kept for dead letters is the line
            if line.strip():
                outcomes = process(line)
                now = pipeline.watermark
                for outcome in outcomes:
                    record = render_outcome(outcome, now, number)
                    if record is None:
                        continue
                    out.write(record)
                    written += 1
                    if isinstance(outcome, Failed):
                        failures += 1
                        if dlq is not None:
                            dlq.write(record)
            if state is not None and (
                number - saved_line >= checkpoint_every
                or (number & 255 == 0 and time.monotonic() - saved_at >= checkpoint_seconds)
            ):
                save(number)
                saved_line, saved_at = number, time.monotonic()
        save(last_line)
    return RunResult(lines=lines, lines_skipped=skip, alerts=pipeline.counts["in"] - alerts_before,
                     records_written=written, failures=failures,
                     counts=dict(pipeline.counts), seconds=time.perf_counter() - started)
