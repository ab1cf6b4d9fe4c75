"""Append-only JSON Lines outputs that know their size, so a checkpoint can record it and a
restart can cut what was written after it (``triage run`` and ``triage serve`` both use it).

Writes are staged: ``write`` only encodes a record; ``flush`` appends what is staged at the
end of what is already in the file and counts it in ``size`` only once the write (and, with
``sync``, the fsync) succeeded. A flush that fails (disk full, I/O error) cuts the file back to
``size`` and keeps the staged records for the next flush, so a failure never leaves half a
line behind and never loses a record that was staged: the caller answers "retry later" and
nothing it reported written is missing.

An output is never emptied by accident. ``check_outputs`` tells, before anything is opened,
which existing files do not match the checkpoint they would be resumed from; the runtimes
refuse to start on them unless told to start over (``--force``).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

import orjson

Resume = tuple[str | None, int]  # (absolute path, size) of an output at a checkpoint


def check_outputs(targets: Mapping[str, str], resume: Mapping[str, Resume], *,
                  append: bool = False) -> list[str]:
    """The problems that keep ``targets`` (name -> path, ``-`` for a standard stream) from
    being opened without losing what they hold, one line per file; empty when all is well.

    A file is fine when it is missing or empty, or when the checkpoint names it and it holds
    at least what the checkpoint says was written (what is after that is cut: it was written
    after the checkpoint and is written again). With ``append`` (a server without state), an
    existing file is appended to.

    >>> import tempfile; d = Path(tempfile.mkdtemp()); f = d / "out.jsonl"
    >>> _ = f.write_bytes(b'{"a": 1}\\n')
    >>> check_outputs({"output": str(f)}, {})  # doctest: +ELLIPSIS
    ['output .../out.jsonl holds 9 bytes that no checkpoint of this state accounts for']
    >>> check_outputs({"output": str(f)}, {"output": (str(f.resolve()), 9)})
    []
    """
    problems = []
    for name, target in targets.items():
        if target == "-":
            continue
        path = Path(target)
        if not path.is_file():
            continue
        size = path.stat().st_size
        saved = resume.get(name)
        if saved is not None and saved[0] == str(path.resolve()):
            if size < saved[1]:
                problems.append(f"{name} {target} holds {size:,} bytes, fewer than the "
                                f"{saved[1]:,} the state's checkpoint says were written "
                                "(was it replaced or cut?)")
            continue
        if size == 0 or append:
            continue
        elsewhere = f" (the checkpoint names {saved[0]})" if saved and saved[0] else ""
        problems.append(f"{name} {target} holds {size:,} bytes that no checkpoint of this "
                        f"state accounts for{elsewhere}")
    return problems


class JsonLinesSink:
    """One output file (or a standard stream for ``-``).

    ``resume`` is the (path, size) a checkpoint recorded: if it names this file, the file is
    cut back to that size and appended to. Otherwise the file is started empty (``force`` or
    a new file; ``check_outputs`` says first whether that loses anything), or with ``append``
    (a server restarting without state) appended to.
    """

    def __init__(self, target: str, *, resume: Resume | None, std: IO[bytes],
                 append: bool = False) -> None:
        self._own = target != "-"
        self._staged: list[bytes] = []
        self.staged_bytes = 0
        self._tail = False  # a failed write may have left bytes after ``size``
        self.fh: IO[bytes]
        self.path: str | None
        if not self._own:
            self.fh, self.path, self.size = std, None, 0
        else:
            path = Path(target)
            path.parent.mkdir(parents=True, exist_ok=True)
            self.path = str(path.resolve())
            if resume is not None and resume[0] == self.path and path.is_file():
                self.fh = path.open("r+b", buffering=0)
                self.fh.truncate(resume[1])  # written after the last checkpoint: redone
                self.fh.seek(resume[1])
                self.size = resume[1]
            else:
                self.fh = path.open("ab" if append else "wb", buffering=0)
                self.size = self.fh.seek(0, os.SEEK_END)
        # fsync only makes sense (and only works) on regular files, not /dev/null or a FIFO
        self.durable = self._own and stat.S_ISREG(os.fstat(self.fh.fileno()).st_mode)

    @property
    def pending(self) -> int:
        """Records staged and not written yet."""
        return len(self._staged)

    def write(self, record: dict[str, Any]) -> None:
        """Stage one record; it reaches the file at the next ``flush``."""
        data = orjson.dumps(record) + b"\n"
        self._staged.append(data)
        self.staged_bytes += len(data)

    def flush(self, *, sync: bool) -> None:
        """Append what is staged; with ``sync``, also fsync regular files (before a
        checkpoint commits). On ``OSError`` the file is cut back to what was there before
        and the records stay staged; the error is raised for the caller to report."""
        data = self.take_staged()
        try:
            self.append(data, sync=sync)
        except OSError:
            self.restage(data)
            raise

    def take_staged(self) -> bytes:
        """What is staged, now unstaged (for ``append`` elsewhere, e.g. a writer thread)."""
        data = b"".join(self._staged)
        self._staged.clear()
        self.staged_bytes = 0
        return data

    def restage(self, data: bytes) -> None:
        """Put back data whose ``append`` failed, before anything staged since."""
        if data:
            self._staged.insert(0, data)
            self.staged_bytes += len(data)

    def append(self, data: bytes, *, sync: bool) -> None:
        """Append ``data`` at ``size`` (and fsync with ``sync``); ``size`` grows only if all
        of it got there. On ``OSError`` the file is cut back to ``size`` and it is raised."""
        if data:
            try:
                self._write_all(data)
                if sync and self.durable:
                    os.fsync(self.fh.fileno())
            except OSError:
                self._cut_back()
                raise
            self.size += len(data)
        elif sync and self.durable:
            os.fsync(self.fh.fileno())
        if not self._own:
            self.fh.flush()

    def _write_all(self, data: bytes) -> None:
        if not self._own:  # a standard stream (buffered): its own flush reports errors
            self.fh.write(data)
            self.fh.flush()
            return
        if self._tail:
            self.fh.truncate(self.size)
            self.fh.seek(self.size)
            self._tail = False
        view = memoryview(data)
        while view:
            written = self.fh.write(view)
            if not written:
                raise OSError(errno.EIO, f"{self.path}: short write")
            view = view[written:]

    def _cut_back(self) -> None:
        if not self.durable:
            return
        try:
            self.fh.truncate(self.size)
            self.fh.seek(self.size)
        except OSError:  # the next flush cuts again before it writes
            self._tail = True

    def close(self) -> None:
        """Close a file (standard streams are only flushed). Staged records that were never
        flushed are dropped: a runtime flushes before it commits, and what it did not commit
        is redone after a restart."""
        if self._own:
            self.fh.close()
        else:
            self.fh.flush()

    def __enter__(self) -> JsonLinesSink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
