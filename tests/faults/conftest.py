"""The fault-injection suite: real processes (``triage run``, ``triage serve``) under real
faults (a full disk, ``kill -9``, corrupt state, a bad model, slow clients), each test
counting what it lost. The losses are printed at the end of the run (``Losses`` below); every
one must be 0.

A full disk is a real one when it can be: a 2 MiB tmpfs mounted for the test (root on Linux,
as in CI), filled with a file and freed by deleting it. Without mount rights, the process
under test gets an ``RLIMIT_FSIZE`` of 0 (``prlimit``), so the kernel fails its writes with
``EFBIG`` exactly as a full disk fails them with ``ENOSPC``.
"""

from __future__ import annotations

import contextlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults.report import Losses

TRIAGE = [sys.executable, "-m", "triage.cli"]

# Pages as soon as an alert is seen, for any service: the faults are about what is written
# and kept, not about when the engine decides to page.
FAST_PAGES = """\
correlation:
  page_delay: 0s
  lone_delay: 0s
  lone_critical_delay: 0s
  page_unknown_services: true
  recurrence_window: 0s
  quiet_period: 1s
"""


@pytest.fixture
def losses() -> Losses:
    return Losses()


class Disk:
    """A directory whose disk can be filled and freed."""

    def __init__(self, path: Path, mounted: bool) -> None:
        self.path = path
        self.mounted = mounted
        self._filler = path / ".filler"
        self._limited: list[int] = []

    def fill(self, pid: int | None = None) -> None:
        """No byte more fits (for ``pid``, when the disk is a process limit)."""
        if self.mounted:
            # unbuffered: a buffered file's close would flush what did not fit, and raise
            with self._filler.open("ab", buffering=0) as fh, contextlib.suppress(OSError):
                while True:
                    fh.write(b"\0" * 65536)
            return
        assert pid is not None, "without a tmpfs, fill() needs the pid to limit"
        resource.prlimit(pid, resource.RLIMIT_FSIZE, (0, resource.RLIM_INFINITY))
        self._limited.append(pid)

    def child_limit(self, size: int) -> dict[str, object]:
        """``subprocess`` arguments that give a child at most ``size`` bytes of disk
        (without a tmpfs: at most ``size`` bytes per file, which is as good for one growing
        output)."""
        if self.mounted:
            return {}

        def limit() -> None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (size, resource.RLIM_INFINITY))

        return {"preexec_fn": limit}

    def grow(self) -> None:
        """Room again for a disk filled by what was written to it: a bigger tmpfs."""
        if self.mounted:
            subprocess.run(["mount", "-o", "remount,size=256m", str(self.path)], check=True)

    def free(self) -> None:
        """Room again."""
        if self.mounted:
            self._filler.unlink(missing_ok=True)
        for pid in self._limited:
            with contextlib.suppress(ProcessLookupError):
                resource.prlimit(pid, resource.RLIMIT_FSIZE,
                                 (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        self._limited.clear()


@pytest.fixture
def small_disk() -> Iterator[Disk]:
    """A 2 MiB tmpfs (or, without mount rights, a per-process write limit)."""
    path = Path(tempfile.mkdtemp(prefix="triage-disk-"))
    mounted = False
    if sys.platform == "linux" and os.geteuid() == 0 and shutil.which("mount"):
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs",
                                  str(path)], capture_output=True, check=False).returncode == 0
    if not mounted and not hasattr(resource, "prlimit"):
        pytest.skip("no way to fill a disk here: needs root (tmpfs) or Linux prlimit")
    disk = Disk(path, mounted)
    try:
        yield disk
    finally:
        disk.free()
        if mounted:
            subprocess.run(["umount", "-l", str(path)], check=False)
        shutil.rmtree(path, ignore_errors=True)
