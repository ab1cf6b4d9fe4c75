"""``triage.streams.feedback`` without a broker: validation, dead letters, commit order and
idempotence, against a fake source and a real ``FeedbackStore`` in ``tmp_path``. The broker
itself is exercised in ``tests/integration/test_feedback.py``."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import orjson
import pytest

from triage.models.feedback import FeedbackStore, feedback_from_dict, latest_labels
from triage.streams.feedback import IngestCounts, ingest_batch, parse_feedback, run_ingest
from triage.streams.topics import Record

NOW = 1_800_000_000.0


def judgement(n: int, **overrides: Any) -> dict[str, Any]:
    return {"at": f"2027-01-15T08:{n % 60:02d}:00Z", "label": "noise" if n % 2 else "actionable",
            "alertname": "HighCPU", "service": f"svc{n}", "value": 0.8 + n / 1000,
            "threshold": 0.8, "fingerprint": f"{n:016x}", "responder": "ana", **overrides}


class FakeSource:
    """A ``FeedbackSource`` over fixed messages: one partition per list, a committed offset
    per partition, an event log (``polled``, ``committed``, ``rewound``)."""

    def __init__(self, *partitions: list[bytes | None], batch: int = 3,
                 committed: Mapping[int, int] | None = None) -> None:
        self.messages = [[Record(p, o, None, v, 0) for o, v in enumerate(values)]
                         for p, values in enumerate(partitions)]
        self.committed = dict(committed or {})
        self.position = {p: self.committed.get(p, 0) for p in range(len(partitions))}
        self.batch = batch
        self.log: list[tuple[str, Any]] = []

    def poll(self, timeout: float) -> list[Record]:
        for p, msgs in enumerate(self.messages):
            start = self.position[p]
            if start < len(msgs):
                got = msgs[start:start + self.batch]
                self.position[p] = start + len(got)
                self.log.append(("polled", (p, got[0].offset, got[-1].offset)))
                return got
        return []

    def commit(self, offsets: Mapping[int, int]) -> None:
        self.log.append(("committed", dict(offsets)))
        self.committed.update(offsets)

    def rewind(self, offsets: Mapping[int, int]) -> None:
        self.log.append(("rewound", dict(offsets)))
        self.position.update(offsets)

    def backlog(self) -> int | None:
        return sum(len(m) - self.position[p] for p, m in enumerate(self.messages))

    def drained(self) -> bool:
        return self.backlog() == 0


class Letters:
    """A dead-letter sink that keeps what it was given (``fail``: raise instead)."""

    def __init__(self, fail: int = 0) -> None:
        self.sent: list[dict[str, Any]] = []
        self.fail = fail

    def __call__(self, letters: list[bytes]) -> None:
        if self.fail:
            self.fail -= 1
            raise ConnectionError("broker away")
        self.sent.extend(orjson.loads(v) for v in letters)


def ingest(source: FakeSource, store: FeedbackStore, letters: Letters, **kw: Any
           ) -> IngestCounts:
    return run_ingest(source, store=store, send_dead_letters=letters, topic="feedback",
                      clock=lambda: NOW, once=True, **kw)


GOOD = [orjson.dumps(judgement(n)) for n in range(5)]
BAD = [
    (b'{"at": 0, "label": "maybe", "alertname": "X"}', "SchemaError", "label"),
    (b'{"at": 0, "label": "noise"}', "SchemaError", "alertname"),
    (b'{"at": "yesterday", "label": "noise", "alertname": "X"}', "TimestampError", "at"),
    (b'{"at": 0, "label": "noise", "alertname": "X", "value": "high"}', "SchemaError", "value"),
    (b'{"at": 0, "label": "noise", "alertname": "X", "labels": {"a": 1}}', "SchemaError",
     "labels"),
    (b'[{"at": 0, "label": "noise", "alertname": "X"}]', "SchemaError", None),
    (b'{"at": 0,', "DecodeError", None),
    (b"\xff\xfe not utf-8", "DecodeError", None),
]


@pytest.mark.parametrize(("raw", "error", "field"), BAD)
def test_a_bad_record_is_dead_lettered_naming_the_field_and_the_rest_is_stored(
        tmp_path: Path, raw: bytes, error: str, field: str | None) -> None:
    store, letters = FeedbackStore(tmp_path / "fb.db"), Letters()
    source = FakeSource([GOOD[0], raw, GOOD[1]])
    counts = ingest(source, store, letters)
    assert (counts.read, counts.stored, counts.dead_lettered) == (3, 2, 1)
    [letter] = letters.sent
    assert letter["error"] == error and letter["field"] == field
    assert letter["reason"]
    assert letter["raw"] == raw.decode("utf-8", "backslashreplace")
    assert (letter["topic"], letter["partition"], letter["offset"]) == ("feedback", 0, 1)
    assert letter["kind"] == "failed" and letter["at"] == "2027-01-15T08:00:00.000Z"
    assert source.committed == {0: 3}
    assert list(store.read()["service"]) == ["svc0", "svc1"]


def test_a_tombstone_is_dead_lettered_not_a_crash(tmp_path: Path) -> None:
    store, letters = FeedbackStore(tmp_path / "fb.db"), Letters()
    counts = ingest(FakeSource([None, GOOD[0]]), store, letters)
    assert (counts.stored, counts.dead_lettered) == (1, 1)
    assert letters.sent[0]["error"] == "DecodeError" and letters.sent[0]["raw"] == ""


def test_offsets_are_committed_only_after_each_batch_is_stored(tmp_path: Path) -> None:
    store, letters = FeedbackStore(tmp_path / "fb.db"), Letters()
    source = FakeSource(GOOD[:4], [*GOOD[4:], BAD[0][0]], batch=3)
    seen_by_commit: list[int] = []
    commit = source.commit

    def checked_commit(offsets: Mapping[int, int]) -> None:
        seen_by_commit.append(len(store.read()))  # what the store held at commit time
        commit(offsets)

    source.commit = checked_commit  # type: ignore[method-assign]
    counts = ingest(source, store, letters)
    assert counts == IngestCounts(read=6, stored=5, repeats=0, dead_lettered=1)
    assert [e for e in source.log if e[0] == "committed"] == [
        ("committed", {0: 3}), ("committed", {0: 4}), ("committed", {1: 2})]
    assert seen_by_commit == [3, 4, 5]


def test_a_store_failure_commits_nothing_with_once(tmp_path: Path) -> None:
    (tmp_path / "fb.db").mkdir()  # sqlite cannot open a directory
    source = FakeSource(GOOD)
    with pytest.raises(Exception, match="unable to open"):
        ingest(source, FeedbackStore(tmp_path / "fb.db"), Letters())
    assert source.committed == {}


def test_following_retries_a_failed_batch_from_its_first_offset(tmp_path: Path) -> None:
    store, letters = FeedbackStore(tmp_path / "fb.db"), Letters(fail=2)
    source = FakeSource([GOOD[0], BAD[0][0], GOOD[1]], batch=10)
    sleeps: list[float] = []
    counts = run_ingest(source, store=store, send_dead_letters=letters, topic="feedback",
                        clock=lambda: NOW, stop=source.drained, sleep=sleeps.append,
                        retry_after=7.0)
    assert sleeps == [7.0, 7.0]
    assert [e for e in source.log if e[0] != "polled"] == [
        ("rewound", {0: 0}), ("rewound", {0: 0}), ("committed", {0: 3})]
    assert (counts.read, counts.stored, counts.dead_lettered) == (3, 2, 1)
    assert len(store.read()) == 2 and len(letters.sent) == 1


def test_a_replay_after_a_crash_is_not_doubled(tmp_path: Path) -> None:
    """The crash window: stored, not committed. The next run reads the batch again."""
    store = FeedbackStore(tmp_path / "fb.db")
    first = FakeSource(GOOD, batch=2)
    batch = first.poll(0.1)
    ingest_batch(batch, store=store, send_dead_letters=Letters(), topic="feedback", now=NOW)
    # ... killed here: nothing committed. The restart begins at the committed offset (0).
    again = FakeSource(GOOD, batch=2, committed=first.committed)
    counts = ingest(again, store, Letters())
    assert counts == IngestCounts(read=5, stored=3, repeats=2, dead_lettered=0)
    history = store.read()
    assert sorted(history["service"]) == [f"svc{n}" for n in range(5)]
    assert len(latest_labels(history)) == 5


def test_the_same_judgement_sent_twice_in_two_spellings_is_stored_once(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    rfc = judgement(1, fingerprint="", duration="2m")
    epoch = dict(rfc, at=feedback_from_dict(rfc).at, duration=120)
    later = dict(rfc, at="2027-01-15T09:00:00Z")  # a newer judgement: a record of its own
    counts = ingest(FakeSource([orjson.dumps(rfc), orjson.dumps(epoch), orjson.dumps(later)]),
                    store, Letters())
    assert (counts.stored, counts.repeats) == (2, 1)


def test_judgements_added_by_hand_are_known_to_the_ingest(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    store.append([feedback_from_dict(judgement(0))])  # `triage feedback add` / `import`
    counts = ingest(FakeSource(GOOD[:2]), store, Letters())
    assert (counts.stored, counts.repeats) == (1, 1)


def test_stop_ends_the_loop_between_batches(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "fb.db")
    source = FakeSource(GOOD, batch=2)
    batches: list[int] = []
    counts = run_ingest(source, store=store, send_dead_letters=Letters(), topic="feedback",
                        stop=lambda: len(batches) >= 1, on_batch=lambda c: batches.append(c.read))
    assert counts.read == 2 and source.committed == {0: 2}


def test_parse_feedback_accepts_what_feedback_from_dict_does() -> None:
    fb = parse_feedback(orjson.dumps(judgement(3, duration="90s", hint="too_low")))
    assert (fb.label, fb.duration, fb.hint, fb.service) == ("noise", 90.0, "too_low", "svc3")


def test_the_cli_wants_a_store(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from triage.cli import app

    result = CliRunner().invoke(app, ["feedback", "ingest", "--once"])
    assert result.exit_code == 2 and "--store" in result.output


def test_metrics_count_each_durable_batch_once_and_show_the_backlog(tmp_path: Path) -> None:
    """``--metrics-port``: the counters add each batch's own counts (``run_ingest`` reports
    running totals), a replayed judgement counts as a repeat, and the backlog falls to 0."""
    from prometheus_client import CollectorRegistry

    from triage.metrics import FeedbackMetrics
    from triage.streams.feedback import metered

    registry = CollectorRegistry()
    store = FeedbackStore(tmp_path / "fb.sqlite")
    # 5 good (one of them sent twice) and 2 bad, 3 per batch: 3 batches
    source = FakeSource([*GOOD, GOOD[0], BAD[0][0], BAD[6][0]])
    shown: list[int] = []
    counts = ingest(source, store, Letters(), on_batch=metered(
        FeedbackMetrics.create(registry), source, lambda c: shown.append(c.read),
        clock=lambda: 1234.0))

    def sample(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert shown == [3, 6, 8]  # the display callback still runs, after the metrics
    assert sample("triage_feedback_messages_total", outcome="stored") == counts.stored == 5
    assert sample("triage_feedback_messages_total", outcome="repeat") == 1
    assert sample("triage_feedback_messages_total", outcome="dead_lettered") == 2
    assert sample("triage_feedback_backlog") == 0
    assert sample("triage_feedback_last_batch_timestamp_seconds") == 1234.0
