"""``tune_gc`` (serve and run call it at start): start-up objects frozen out of the cyclic
collector's walks, and a higher young threshold; in a process of its own, as it is
process-wide."""

from __future__ import annotations

import subprocess
import sys


def test_tune_gc_freezes_start_up_and_raises_the_young_threshold() -> None:
    code = ("import gc; from triage.app.gctune import tune_gc, YOUNG_THRESHOLD; "
            "assert gc.get_freeze_count() == 0; tune_gc(); "
            "print(gc.get_freeze_count() > 1000, gc.get_threshold()[0] == YOUNG_THRESHOLD)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["True", "True"]
