"""What machine a benchmark ran on, printed with every result (scripts here import it as
``machine``: the script's own folder is on ``sys.path`` when run as
``python benchmarks/bench_x.py``)."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def describe(*extra: str, memory: bool = False) -> str:
    """CPU model, cores (and with ``memory`` the RAM), OS and Python, plus ``extra``
    (library versions)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    if memory:
        try:
            kib = int(Path("/proc/meminfo").read_text().split()[1])
            mem = f", {kib / 2**20:.0f} GiB"
        except (OSError, ValueError, IndexError):
            pass
    parts = [f"{cpu}, {os.cpu_count()} cores{mem}", f"{platform.system()} {platform.release()}",
             f"CPython {platform.python_version()}", *extra]
    return ", ".join(parts)
