"""The layers of DESIGN.md: imports point down only, and the core does no I/O."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "triage"

# The composition root: below triage.cli, only its validated configuration (``settings``)
# may be read, never what builds or runs the stages.
APP = {"triage.app.bootstrap", "triage.app.runtime", "triage.app.server", "triage.app.demo",
       "triage.app.gctune", "triage.app.deskfeed"}

# What each layer may not import (top-level module names).
FORBIDDEN = {
    "core": {"faust", "kafka", "aiokafka", "sqlite3", "socket", "http", "urllib", "requests",
             "subprocess", "yaml", "pydantic", "pydantic_settings", "typer", "rich", "pandas",
             "sklearn", "triage.loaders", "triage.models", "triage.streams", "triage.cli",
             "triage.app", "triage.state", "triage.simulate", "triage.http"},
    "loaders": {"faust", "kafka", "aiokafka", "triage.models", "triage.streams", "triage.cli",
                "triage.state", "triage.simulate", "triage.http", *APP},
    "models": {"faust", "kafka", "aiokafka", "triage.loaders", "triage.streams", "triage.cli",
               "triage.state", "triage.simulate", "triage.http", *APP},
    "state": {"faust", "kafka", "aiokafka", "triage.streams", "triage.cli", "triage.http",
              "triage.simulate", "triage.app"},
    "simulate": {"faust", "kafka", "aiokafka", "triage.streams", "triage.cli", "triage.http",
                 "triage.state", *APP},
    "streams": {"triage.cli", "triage.http", "triage.desk", *APP},
    # the desk: core types and state; never faust, a Kafka client, or the streams
    "desk": {"faust", "kafka", "aiokafka", "triage.streams", "triage.cli", "triage.http",
             "triage.simulate", *APP},
    # the receiver reaches Kafka only through triage.streams.publisher
    "http": {"faust", "kafka", "aiokafka", "triage.cli", *APP},
}


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports_point_down_only(layer: str) -> None:
    bad = [
        f"{path.relative_to(SRC)} imports {name}"
        for path in sorted((SRC / layer).rglob("*.py"))
        for name in imported_modules(path)
        if any(name == f or name.startswith(f + ".") for f in FORBIDDEN[layer])
    ]
    assert not bad, "\n".join(bad)


def test_core_never_reads_the_clock() -> None:
    needles = re.compile(r"\bdatetime\.now\(|(?<![\w.])time\.(?:time|monotonic)\(|"
                         r"utcnow\(|(?<![\w.])open\(")
    offenders = [
        f"{path.relative_to(SRC)}: {hit.group(0)}"
        for path in sorted((SRC / "core").rglob("*.py"))
        for hit in needles.finditer(path.read_text())
    ]
    assert not offenders, offenders
