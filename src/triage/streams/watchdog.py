"""A watchdog for faust's table recovery.

After every rebalance faust restores the table partitions a worker was given by reading
their changelog partitions from the start (the store is in memory), and holds the streams
until each one has been read to its high watermark. faust-streaming sometimes never gets
there: in CI a worker that kept partitions 2 and 3 across a rebalance logged "No event
received for active tp ... since recovery start" for a minute and triaged nothing, while
aiokafka went on sending fetch requests. Stalls of this kind are known upstream in several
forms (robinhood/faust issue 218; faust-streaming issue 74 and pull request 40). Kept
partitions are no longer read back (``triage.streams.agents.StateTable``), which removes
that case; a partition newly assigned is still read in full, and that read is watched.

:class:`StallWatch` decides, from what the recovery reports once a second, when it has made
no progress for ``stall_after`` seconds. The worker then

1. asks the broker for the high watermarks of the changelog partitions still to read: if
   it does not answer, the recovery is waiting for the broker, not stalled, and the count
   starts again (a broker outage must not stop the worker; it resumes by itself when the
   broker is back);
2. logs, for each of those partitions, what faust and aiokafka say about it (recovery
   offset, high watermark, fetch position, paused or not, records buffered), the evidence
   a fix of the cause needs;
3. restarts the recovery, through faust's own path for a rebalance that arrives during a
   recovery: it seeks every changelog partition to where its recovery stands and resumes
   fetching them. What was read is kept. (faust-streaming first reports the interrupted
   recovery "complete", with the changelogs unread, then runs it again: the stages restore
   their partitions only after a completion no restart is pending on, see
   ``triage.streams.agents.wire``);
4. after ``max_restarts`` restarts in a row without progress, stops the worker with an
   error (exit code 1) for its supervisor to start again: a new process restores from the
   changelog from scratch, and its partitions' input resumes where their state ends.

Each restart is counted in ``triage_recovery_restarts_total``.
"""

from __future__ import annotations

import asyncio
import enum
import logging
from collections.abc import Awaitable, Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any

log = logging.getLogger("triage.streams")

STALL_AFTER = 15.0  # seconds without progress; faust itself warns after 30 s
MAX_RESTARTS = 3
PROBE_TIMEOUT = 5.0  # seconds the broker has to answer before a stall is put down to it


class Action(enum.Enum):
    WAIT = "wait"
    RESTART = "restart"
    GIVE_UP = "give up"


@dataclass
class StallWatch:
    """When a recovery has stalled: no change of its ``progress`` for ``stall_after``
    seconds while it runs. Progress resets the count of restarts; a recovery that ends
    resets everything.

    >>> w = StallWatch(stall_after=10, max_restarts=1)
    >>> [w.observe(t, True, 0).value for t in (0, 5, 10, 15, 20)]
    ['wait', 'wait', 'restart', 'wait', 'give up']
    >>> w = StallWatch(stall_after=10, max_restarts=1)
    >>> [w.observe(t, True, t // 8).value for t in (0, 8, 16, 24, 32)]  # slow, not stalled
    ['wait', 'wait', 'wait', 'wait', 'wait']
    """

    stall_after: float = STALL_AFTER
    max_restarts: int = MAX_RESTARTS
    restarts: int = 0
    _progress: Hashable = None
    _since: float | None = None

    def observe(self, now: float, recovering: bool, progress: Hashable) -> Action:
        if not recovering:
            self._since, self._progress, self.restarts = None, None, 0
            return Action.WAIT
        if self._since is None or progress != self._progress:
            if self._since is not None:
                self.restarts = 0  # it moves again
            self._since, self._progress = now, progress
            return Action.WAIT
        if now - self._since < self.stall_after:
            return Action.WAIT
        self._since = now  # the next decision is another stall_after away
        if self.restarts >= self.max_restarts:
            return Action.GIVE_UP
        self.restarts += 1
        return Action.RESTART

    def excuse(self, now: float, action: Action) -> None:
        """Take ``action`` back: the stall has a reason outside faust (the broker does not
        answer), so the restarts count as before and the wait starts again at ``now``."""
        if action is Action.RESTART:
            self.restarts -= 1
        self._since = now


class RecoveryStalled(RuntimeError):
    """faust's table recovery made no progress through every restart."""


def progress_of(recovery: Any) -> Hashable:
    """What moves while a recovery works: the offset read so far and the high watermark of
    each active changelog partition (faust's ``Recovery``)."""
    return (tuple(sorted((str(tp), off) for tp, off in recovery.active_offsets.items())),
            tuple(sorted((str(tp), hw) for tp, hw in recovery.active_highwaters.items())))


def describe(app: Any) -> str:
    """One line per changelog partition the recovery still has to read: faust's view and
    aiokafka's. Best effort (reads internals of both, for a log line only)."""
    recovery = app.tables.recovery
    remaining = {tp: n for tp, n in recovery.active_remaining().items() if n > 0}
    consumer = app.consumer
    paused: set[Any] = getattr(consumer, "_paused_partitions", set())
    read_offset = getattr(consumer, "_read_offset", {})
    try:
        aio = consumer._thread._consumer
        fetcher = aio._fetcher
        assignment = fetcher._subscriptions.subscription.assignment
    except AttributeError:
        fetcher = assignment = None
    lines = []
    for tp, n in sorted(remaining.items(), key=lambda kv: str(kv[0])):
        parts = [f"{tp.topic}[{tp.partition}]: read to {recovery.active_offsets.get(tp)}",
                 f"high watermark {recovery.active_highwaters.get(tp)} ({n} to go)",
                 f"faust paused {tp in paused}",
                 f"read offset {read_offset.get(tp) if hasattr(read_offset, 'get') else '?'}"]
        if assignment is not None and fetcher is not None:
            from aiokafka.structs import TopicPartition
            aiotp = TopicPartition(tp.topic, tp.partition)
            try:
                state = assignment.state_value(aiotp)
            except Exception:  # a log line must not raise
                state = None
            if state is None:
                parts.append("not in aiokafka's assignment")
            else:
                parts.append(f"aiokafka {state!r} paused {state.paused}")
            parts.append(f"buffered {type(fetcher._records.get(aiotp)).__name__}")
        lines.append(", ".join(parts))
    flow = getattr(consumer, "flow_active", "?")
    return f"flow active {flow}; " + "; ".join(lines) if lines else f"flow active {flow}"


async def broker_answers(app: Any, tps: Iterable[Any], timeout: float = PROBE_TIMEOUT
                         ) -> bool:
    """Whether the broker tells the consumer the high watermarks of ``tps`` in time: a
    recovery that waits on a broker that is away has not stalled, it waits."""
    try:
        await asyncio.wait_for(app.consumer.highwaters(*tps), timeout)
    except asyncio.CancelledError:
        raise
    except Exception:
        return False
    return True


def restart(app: Any) -> None:
    """Restart faust's recovery as a rebalance during recovery does: the recovery loop sees
    the start signal, abandons the wait and begins again (highwaters, seek, resume)."""
    app.tables.recovery.signal_recovery_start.set()


async def keep_watching(check: Callable[[], Awaitable[None]], *, interval: float,
                        stop: Callable[[], bool]) -> None:
    """Call ``check`` every ``interval`` seconds until ``stop()``; an error in one check is
    logged and the next one runs (the watchdog must outlive what it watches)."""
    while not stop():
        await asyncio.sleep(interval)
        try:
            await check()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("recovery watchdog check failed")


def recovery_watchdog(app: Any, *, stall_after: float = STALL_AFTER,
                      max_restarts: int = MAX_RESTARTS,
                      clock: Callable[[], float],
                      on_restart: Callable[[], None] | None = None,
                      ) -> Callable[[], Awaitable[None]]:
    """The coroutine function to call once a second on ``app`` (a faust app)."""
    watch = StallWatch(stall_after=stall_after, max_restarts=max_restarts)
    broken: list[bool] = []

    async def check() -> None:
        if broken:
            return
        try:
            recovery = app.tables.recovery
            recovering = bool(recovery.in_recovery)
            progress = progress_of(recovery) if recovering else None
        except AttributeError as exc:  # a faust without these: no watchdog, said once
            broken.append(True)
            log.warning("recovery watchdog off: faust's Recovery has no %s", exc)
            return
        action = watch.observe(clock(), recovering, progress)
        if action is Action.WAIT:
            return
        probe = [tp for tp, n in recovery.active_remaining().items() if n > 0]
        if not await broker_answers(app, probe or list(recovery.active_tps)):
            watch.excuse(clock(), action)
            log.info("table recovery has made no progress in %.0fs, but the broker does not "
                     "answer: waiting for it, not restarting", stall_after)
            return
        try:
            state = describe(app)
        except Exception as exc:  # diagnostics are best effort
            state = f"(state unavailable: {exc!r})"
        if action is Action.RESTART:
            log.warning("table recovery made no progress in %.0fs; restarting it "
                        "(%d of %d): %s", stall_after, watch.restarts, max_restarts, state)
            if on_restart is not None:
                on_restart()
            restart(app)
            return
        message = (f"table recovery made no progress through {max_restarts} restarts "
                   f"({stall_after:.0f}s each); stopping so that a new worker process "
                   f"restores the state from the changelog: {state}")
        log.critical(message)
        await app.crash(RecoveryStalled(message))

    return check
