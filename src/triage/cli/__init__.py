"""The ``triage`` command line. Each module registers its commands on ``app``."""

from __future__ import annotations

import sys

from triage.cli import commands as commands  # registers run, demo, formats, check-config
from triage.cli import desk as desk  # registers `triage desk`, `triage incident`
from triage.cli import feedback as feedback  # registers `triage feedback ingest`
from triage.cli import learn as learn  # registers tune, train, model, feedback
from triage.cli import oncall as oncall  # registers `triage oncall`
from triage.cli import serve as serve  # registers serve
from triage.cli import sim as sim  # registers simulate, evaluate
from triage.cli import stream as stream  # registers topics, worker, produce, consume
from triage.cli.app import app


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except BrokenPipeError:  # `triage run | head` is normal use
        sys.stderr.close()
        sys.exit(0)


__all__ = ["app", "main"]
