"""Loading change records from JSON Lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from triage.errors import ConfigError
from triage.loaders.changes import load_changes


def record(**overrides: object) -> str:
    obj: dict[str, object] = {"id": "d1", "service": "cartservice", "kind": "deploy",
                              "at": "2026-11-27T10:00:00Z", "author": "alice",
                              "description": "cartservice v1.4.2"}
    obj.update(overrides)
    return json.dumps({k: v for k, v in obj.items() if v is not None})


def write(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "changes.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_loads_and_indexes_records(tmp_path: Path) -> None:
    path = write(tmp_path, record(),
                 record(id="c1", kind="config", at="2026-11-27T09:00:00Z"),
                 record(id="f1", service="frontend", kind="feature_flag", at=1795773000))
    index, problems = load_changes(path)
    assert problems == []
    assert len(index) == 3
    cart = index.between("cartservice", 0.0, 2e9)
    assert [c.id for c in cart] == ["c1", "d1"]  # oldest first
    assert cart[1].author == "alice" and cart[1].description == "cartservice v1.4.2"
    assert [c.id for c in index.between("frontend", 0.0, 2e9)] == ["f1"]


def test_bad_lines_are_reported_with_line_and_field_and_skipped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        record(),
        "",  # blank lines are ignored, but still counted
        record(id="x1", service=None),
        record(id="x2", kind="rollback"),
        "{not json",
        record(id="x3", at="yesterday"),
        "[1, 2]",
        "   ",
        record(id="d2", at="2026-11-27T11:00:00Z"),
    )
    index, problems = load_changes(path)
    assert sorted(c.id for c in index) == ["d1", "d2"]
    assert len(problems) == 5
    assert problems[0] == "line 3: service: missing"
    assert problems[1].startswith("line 4: kind: unknown kind 'rollback'")
    assert problems[2].startswith("line 5: not JSON")
    assert problems[3].startswith("line 6: at: ")
    assert problems[4] == "line 7: a change record must be an object"


def test_duplicate_ids_keep_the_first(tmp_path: Path) -> None:
    path = write(tmp_path, record(), record(service="frontend"))
    index, problems = load_changes(path)
    assert [c.service for c in index] == ["cartservice"]
    assert problems == ["line 2: id: duplicate change id 'd1' (first kept)"]


def test_empty_file_is_an_empty_index(tmp_path: Path) -> None:
    index, problems = load_changes(write(tmp_path, ""))
    assert len(index) == 0 and problems == []


def test_missing_file_is_a_config_error_naming_the_key(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_changes(tmp_path / "nope.jsonl")
    assert info.value.key == "changes_file"
    assert "nope.jsonl" in info.value.message
