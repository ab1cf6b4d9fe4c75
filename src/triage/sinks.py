"""Append-only JSON Lines outputs that know their size, so a checkpoint can record it and a
restart can cut what was written after it (``triage run`` and ``triage serve`` both use it)."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import IO, Any

import orjson


class JsonLinesSink:
    """One output file (or a standard stream for ``-``).

    ``resume`` is the (path, size) a checkpoint recorded: if it names this file, the file is
    cut back to that size and appended to. Otherwise a new file is started, or with
    ``append`` (a server restarting without state) the existing one is appended to.
    """

    def __init__(self, target: str, *, resume: tuple[str | None, int] | None, std: IO[bytes],
                 append: bool = False) -> None:
        self._own = target != "-"
        self.fh: IO[bytes]
        self.path: str | None
        if not self._own:
            self.fh, self.path, self.size = std, None, 0
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.path = str(path.resolve())
            if resume is not None and resume[0] == self.path and path.is_file():
                self.fh = path.open("r+b")
                self.fh.truncate(resume[1])  # written after the last checkpoint: redone
                self.fh.seek(resume[1])
                self.size = resume[1]
            else:
                self.fh = path.open("ab" if append else "wb")
                self.size = self.fh.tell()
        # fsync only makes sense (and only works) on regular files, not /dev/null or a FIFO
        self.durable = self._own and stat.S_ISREG(os.fstat(self.fh.fileno()).st_mode)

    def write(self, record: dict[str, Any]) -> None:
        """Append one record."""
        data = orjson.dumps(record) + b"\n"
        self.fh.write(data)
        self.size += len(data)

    def flush(self, *, sync: bool) -> None:
        """Flush; with ``sync``, also fsync regular files (before a checkpoint commits)."""
        self.fh.flush()
        if sync and self.durable:
            os.fsync(self.fh.fileno())

    def close(self) -> None:
        """Close a file (standard streams are only flushed)."""
        if self._own:
            self.fh.close()
        else:
            self.fh.flush()

    def __enter__(self) -> JsonLinesSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
