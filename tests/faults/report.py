"""Where the fault tests write what they lost: one file per session, so the losses of every
xdist worker reach the summary that ``tests/conftest.py`` prints."""

from __future__ import annotations

import os
from pathlib import Path

import orjson

REPORT = Path(os.environ.get("TRIAGE_FAULTS_REPORT",
                             Path(__file__).resolve().parents[2] / "out" / "faults.jsonl"))


class Losses:
    """What each fault test lost."""

    def record(self, fault: str, expected: int, kept: int) -> int:
        """Note it; returns the loss (``expected - kept``), which the test asserts is 0."""
        REPORT.parent.mkdir(parents=True, exist_ok=True)
        with REPORT.open("ab") as fh:
            fh.write(orjson.dumps([fault, expected, kept]) + b"\n")
        return expected - kept


def read() -> list[tuple[str, int, int]]:
    """Every loss recorded this session."""
    if not REPORT.is_file():
        return []
    return [tuple(orjson.loads(line)) for line in REPORT.read_bytes().splitlines()]  # type: ignore[misc]
