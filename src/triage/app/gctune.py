"""Python's cyclic garbage collector, set for a process that holds a large, long-lived state.

Each active alert is a few container objects that live as long as the alert does (about
three on the way through: the dedup state, the incident's record of it and the sweep heap
entry). CPython's collector looks at young objects every 700 net allocations and, after
ten young and ten middle collections, walks *every* tracked object, once the heap has grown
by a quarter since the last full walk. With a million active alerts a full walk takes
about 0.3 s, and the default thresholds run one every few hundred thousand alerts: 17 walks
and about 10% of the time of a 1M-alert storm (``benchmarks/bench_state_memory.py``).

``tune_gc`` does two things, for the long-running entry points only (``triage serve``,
``triage run``; never in ``triage.core`` or in a library user's process):

* ``gc.freeze()`` after start-up: the modules, settings, topology and models loaded so far
  live as long as the process, so no collection needs to walk them again;
* a young-generation threshold of ``YOUNG_THRESHOLD`` instead of 700 allocations: 2 full
  walks instead of 17 over the same storm, and GC time from about 4 s to about 1 s. Garbage
  in reference cycles waits a little longer to be found (at most that many allocations);
  everything else is freed by reference counting as before.

Freezing is safe because it only exempts the objects alive now from the cycle collector:
they are still freed when their last reference goes.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 20_000


def tune_gc() -> None:
    """Freeze what start-up built and raise the young-generation threshold (process-wide:
    call it from an entry point only, once its start-up is done)."""
    gc.collect()
    gc.freeze()
    young, middle, old = gc.get_threshold()
    gc.set_threshold(max(young, YOUNG_THRESHOLD), middle, old)
