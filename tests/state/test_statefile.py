"""The state file: what is restored is what was committed, whether it sits in the commit log
or was folded into the base, and a failed write is carried to the next commit."""

from __future__ import annotations

import sqlite3
import zlib
from pathlib import Path
from typing import Any

import pytest

from triage.core.pipeline import Pipeline
from triage.state.statefile import FORMAT_VERSION, StateFile


def feed(p: Pipeline, start: int, n: int) -> None:
    for i in range(start, start + n):
        p.process(f'{{"alertname": "A{i % 50}", "service": "s{i % 7}", "at": {i}}}'.encode())
        if i % 3 == 0:
            p.process(f'{{"alertname": "A{i % 50}", "service": "s{i % 7}", "at": {i}, '
                      f'"status": "resolved"}}'.encode())


def restored(path: Path) -> Any:
    q = Pipeline()
    with StateFile(path) as sf:  # closing it folds the log
        sf.restore(q)
    return sorted(q.dedup.records()), q.watermark, dict(q.counts)


def rows(path: Path, table: str) -> int:
    with sqlite3.connect(path) as db:
        return int(db.execute(f"SELECT count(*) FROM {table}").fetchone()[0])


def test_log_and_folded_base_restore_the_same(tmp_path: Path) -> None:
    path = tmp_path / "s.db"
    p = Pipeline()
    sf = StateFile(path)
    for k in range(5):
        feed(p, k * 100, 100)
        sf.commit(p, None)
    assert sf.logged == 5
    expected = sorted(p.dedup.records()), p.watermark, dict(p.counts)
    # as after kill -9: only the log holds the commits
    assert rows(path, "alerts") == 0 and rows(path, "log") == 5
    assert restored(path) == expected  # from the log (then folded by the reader's close)
    assert rows(path, "log") == 0 and rows(path, "alerts") == len(expected[0])
    assert restored(path) == expected  # from the base
    feed(p, 500, 50)
    sf.commit(p, None)
    sf.close()
    assert rows(path, "log") == 0
    assert restored(path) == (sorted(p.dedup.records()), p.watermark, dict(p.counts))


def test_a_failed_write_is_carried_to_the_next_commit(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "s.db"
    p = Pipeline()
    with StateFile(path) as sf:
        feed(p, 0, 60)
        real = sf._transaction

        def full(work: Any) -> None:
            raise sqlite3.OperationalError("database or disk is full")

        monkeypatch.setattr(sf, "_transaction", full)
        with pytest.raises(sqlite3.OperationalError):
            sf.commit(p, None)
        monkeypatch.setattr(sf, "_transaction", real)
        feed(p, 60, 60)
        sf.commit(p, None)  # carries the first batch's changes, which memory marked taken
        expected = sorted(p.dedup.records()), p.watermark, dict(p.counts)
    assert restored(path) == expected


def test_format_1_files_are_upgraded_with_checksums(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as db:
        db.executescript(
            "CREATE TABLE meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);"
            "CREATE TABLE alerts (fp TEXT PRIMARY KEY, rec BLOB NOT NULL);"
            "CREATE TABLE silences (id TEXT PRIMARY KEY, rec BLOB NOT NULL);"
            "CREATE TABLE incidents (id TEXT PRIMARY KEY, rec BLOB NOT NULL);"
            "CREATE TABLE changes (id TEXT PRIMARY KEY, rec BLOB NOT NULL);"
            "INSERT INTO meta VALUES ('format_version', '1');"
            "INSERT INTO meta VALUES ('clock', '[42.0, 57.0]');")
    q = Pipeline()
    with StateFile(path) as sf:
        sf.restore(q)
    assert q.watermark == 42.0
    with sqlite3.connect(path) as db:
        version = db.execute("SELECT rec FROM meta WHERE key = 'format_version'").fetchone()
    assert int(version[0]) == FORMAT_VERSION


def test_a_fold_in_steps_keeps_the_newer_batches_on_top(tmp_path: Path) -> None:
    # a storm folds the oldest batches a step at a time (the writer is held for one step):
    # what is left in the log is newer than the base, and restore reads it on top
    path = tmp_path / "s.db"
    p = Pipeline()
    sf = StateFile(path)
    for k in range(6):
        feed(p, k * 100, 100)
        sf.commit(p, None)
        feed(p, k * 100 + 7, 50)  # the same fingerprints again, changed (50 names x 7)
        sf.commit(p, None)
    assert sf.fold(5) == 5 and sf.logged == 7 and rows(path, "log") == 7
    assert rows(path, "alerts") > 0
    expected = sorted(p.dedup.records()), p.watermark, dict(p.counts)
    assert restored(path) == expected


def test_a_format_2_file_opens_as_3_and_keeps_its_state(tmp_path: Path) -> None:
    """A state file from before serve's input journal is upgraded in place; an older triage
    then refuses it rather than ignore the journal."""
    path = tmp_path / "state.db"
    p = Pipeline()
    p.process(b'{"alertname": "Up", "service": "db", "at": 10}')
    with StateFile(path) as sf:
        sf.commit(p, None)
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE journal")
        db.execute("UPDATE meta SET rec = ?, crc = ? WHERE key = 'format_version'",
                   (b"2", zlib.crc32(b"2", zlib.crc32(b"format_version"))))
    q = Pipeline()
    with StateFile(path) as sf:
        sf.restore(q)
        assert sf._meta("format_version") == FORMAT_VERSION == 3
        assert list(sf.journal(0)) == []
    assert len(q.dedup) == 1 and q.watermark == 10.0
