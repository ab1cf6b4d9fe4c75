"""``triage serve --desk``: the incident events serve writes, applied to the incident desk as
they come.

A follower of serve's incident output (a file): every ``interval`` seconds it reads the
complete lines written since its position and applies them to the desk's store
(``DeskStore.ingest``: each event once, by ``event_id``), in a worker thread, so database
calls never hold the event loop. The position is kept beside the output, in
``<output>.desk`` (the file's device and inode, and the offset), written after the desk has
committed: a crash reads at most one batch again, which the desk recognises.

Reading a little past serve's last commit is safe: after a crash serve cuts its output back
to that commit and writes the same events again (its input journal replays to the same
result), so the desk sees the same ``event_id`` twice, once applied. A file that is no longer
the one the position was taken on (another inode: moved, or started over with ``--force``)
is read from its start. A desk that cannot be reached is retried each interval, with one
log line when it fails and one when it is back; serve goes on triaging meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from pathlib import Path

import orjson

from triage.desk.store import DeskStore

log = logging.getLogger("triage.desk")

BATCH_BYTES = 4 << 20  # read at most this much per step: one desk transaction


class DeskFeed:
    """Follows ``path`` (serve's ``--output``) into ``store``."""

    def __init__(self, store: DeskStore, path: Path) -> None:
        self.store = store
        self.path = path
        self.cursor_path = path.with_name(path.name + ".desk")
        self.position = 0
        self.applied = 0
        self.failing: str | None = None
        self._file: tuple[int, int] | None = None  # (device, inode) the position is on
        self._load_cursor()

    def _load_cursor(self) -> None:
        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
            cur = orjson.loads(self.cursor_path.read_bytes())
            self._file, self.position = (int(cur["dev"]), int(cur["ino"])), int(cur["offset"])

    def _save_cursor(self) -> None:
        assert self._file is not None
        tmp = self.cursor_path.with_name(self.cursor_path.name + ".tmp")
        tmp.write_bytes(orjson.dumps({"dev": self._file[0], "ino": self._file[1],
                                      "offset": self.position}))
        os.replace(tmp, self.cursor_path)

    def step(self) -> int:
        """Apply the complete lines written since the last step (up to ``BATCH_BYTES``);
        returns the events newly applied. Raises what the desk raises."""
        try:
            fh = self.path.open("rb")
        except FileNotFoundError:
            return 0
        with fh:
            st = os.fstat(fh.fileno())
            ident = (st.st_dev, st.st_ino)
            if ident != self._file or st.st_size < self.position:
                # another file, or this one cut back past where we were: from its start
                # (the desk applies each event once)
                self._file, self.position = ident, 0
            fh.seek(self.position)
            data = fh.read(BATCH_BYTES)
        end = data.rfind(b"\n") + 1
        if end == 0:
            return 0
        lines = [line for line in data[:end].splitlines() if line.strip()]
        done = self.store.ingest(lines)
        for index, problem in done.rejected:
            log.warning("desk: an incident event of %s was refused (%s): %s", self.path,
                        problem, lines[index][:200].decode("utf-8", "replace"))
        self.position += end
        self.applied += done.added
        self._save_cursor()
        return done.added

    async def run(self, interval: float = 1.0) -> None:
        """Step every ``interval`` seconds until cancelled; never raises for the desk."""
        while True:
            await asyncio.sleep(interval)
            await self.step_logged()

    async def step_logged(self) -> None:
        """One step in a worker thread; keep going whatever the desk does (logged)."""
        try:
            while True:  # a storm, or a file read again from its start: batch by batch
                before = (self._file, self.position)
                await asyncio.to_thread(self.step)
                if (self._file, self.position) == before:
                    break
        except Exception as exc:  # the desk is down or refuses: serve goes on
            if self.failing is None:
                log.error("desk %s: cannot apply incident events (%s); retrying every "
                          "second, triage goes on", self.store.url, exc)
            self.failing = str(exc)
            return
        if self.failing is not None:
            log.warning("desk %s: applying incident events again", self.store.url)
            self.failing = None
