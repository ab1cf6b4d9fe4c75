"""Silences, maintenance windows and the indexed ``SilenceSet``."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.core.matchers import Matcher, parse_matchers
from triage.core.silences import Silence, SilenceSet, silence_from_alertmanager
from triage.errors import SchemaError, TimestampError

HOUR = 3600.0
WEEK = 7 * 86400.0
T0 = 1_704_067_200.0  # 2024-01-01T00:00:00Z, a Monday


@pytest.fixture
def make_silence() -> Callable[..., Silence]:
    """Factory: a valid silence with overridable fields; matchers may be given as text."""

    def make(
        id: str = "s1",
        matchers: str | tuple[Matcher, ...] = 'alertname="DiskFull"',
        starts_at: float = T0,
        ends_at: float = T0 + HOUR,
        **kwargs: Any,
    ) -> Silence:
        parsed = parse_matchers(matchers) if isinstance(matchers, str) else matchers
        return Silence(id, parsed, starts_at, ends_at, **kwargs)

    return make


def am_silence(**overrides: Any) -> dict[str, Any]:
    """An Alertmanager API v2 PostableSilence, as amtool sends it."""
    obj: dict[str, Any] = {
        "matchers": [
            {"name": "alertname", "value": "DiskFull", "isRegex": False, "isEqual": True},
            {"name": "instance", "value": "db-.*", "isRegex": True},
        ],
        "startsAt": "2024-01-01T00:00:00.000Z",
        "endsAt": "2024-01-01T02:00:00.000Z",
        "createdBy": "alice",
        "comment": "db failover",
    }
    obj.update(overrides)
    return obj


# --- Silence -------------------------------------------------------------------------------


def test_active_window_half_open(make_silence: Callable[..., Silence]) -> None:
    s = make_silence()
    assert not s.active(T0 - 0.001)
    assert s.active(T0)
    assert s.active(T0 + HOUR - 0.001)
    assert not s.active(T0 + HOUR)
    assert not s.expired(T0 + HOUR - 0.001)
    assert s.expired(T0 + HOUR)


def test_matches_needs_active_and_all_matchers(make_silence: Callable[..., Silence]) -> None:
    s = make_silence(matchers='{alertname="DiskFull", env!="dev"}')
    labels = {"alertname": "DiskFull", "env": "prod"}
    assert s.matches(labels, T0 + 1)
    assert not s.matches(labels, T0 + HOUR)
    assert not s.matches({**labels, "env": "dev"}, T0 + 1)
    assert s.matches({"alertname": "DiskFull"}, T0 + 1)  # missing env is "" != "dev"


def test_weekly_maintenance_window(make_silence: Callable[..., Silence]) -> None:
    # Tuesdays 02:00-04:00 UTC, starting 2024-01-02.
    start = T0 + 86400 + 2 * HOUR
    w = make_silence(id="weekly-db-patching", matchers="team=db", starts_at=start,
                     ends_at=start + 2 * HOUR, kind="maintenance", repeat_every=WEEK)
    labels = {"team": "db"}
    assert not w.matches(labels, start - 1)  # before the first occurrence
    assert w.matches(labels, start + HOUR)
    assert not w.matches(labels, start + 2 * HOUR)  # end is exclusive
    assert not w.matches(labels, start + 3 * 86400)  # between occurrences
    assert w.matches(labels, start + WEEK)  # next week
    assert w.matches(labels, start + WEEK + 2 * HOUR - 1)
    assert not w.matches(labels, start + WEEK + 2 * HOUR)
    assert w.matches(labels, start + 52 * WEEK + 30)  # a year on
    assert not w.matches(labels, start + 52 * WEEK - 30)
    assert not w.expired(start + 100 * WEEK)


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"ends_at": T0}, "must be after starts_at"),
        ({"ends_at": T0 - 1}, "must be after starts_at"),
        ({"matchers": ()}, "at least one matcher"),
        ({"matchers": 'foo=""'}, "must not match the empty string"),
        ({"matchers": '{foo=~".*", bar!="x"}'}, "must not match the empty string"),
        ({"repeat_every": HOUR}, "repeat_every"),
        ({"repeat_every": 30.0}, "repeat_every"),
        ({"id": ""}, "empty id"),
        ({"kind": "mute"}, "kind"),
        ({"starts_at": float("nan")}, "finite"),
    ],
)
def test_validation(
    make_silence: Callable[..., Silence], kwargs: dict[str, Any], fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment):
        make_silence(**kwargs)


def test_matchers_list_becomes_tuple(make_silence: Callable[..., Silence]) -> None:
    s = make_silence(matchers=list(parse_matchers("a=b")))
    assert isinstance(s.matchers, tuple)
    hash(s)


def test_describe(make_silence: Callable[..., Silence]) -> None:
    uuid = "4f2a9c1e-0b7d-4c55-9e1a-2f1d7c3b9a10"
    assert (make_silence(id=uuid, created_by="alice", comment="db failover").describe()
            == 'silenced by 4f2a9c1e… (alice: "db failover")')
    assert (make_silence(id="weekly-db-patching", created_by="ops", comment="patch tuesday",
                         kind="maintenance").describe()
            == 'maintenance window weekly-db-patching (ops: "patch tuesday")')
    assert make_silence(id="s1").describe() == "silenced by s1"
    assert make_silence(id="s1", created_by="bob").describe() == "silenced by s1 (bob)"
    assert make_silence(id="s1", comment="x").describe() == 'silenced by s1 ("x")'
    long = make_silence(id="s1", comment="y" * 500).describe()
    assert len(long) < 120 and long.endswith('…")')


def test_record_round_trip(make_silence: Callable[..., Silence]) -> None:
    silences = [
        make_silence(),
        make_silence(id="w", matchers='{team="db", "service.name"=~"pg|my\\"sql", x!~"a\\\\b"}',
                     starts_at=T0 + 0.125, ends_at=T0 + 7200.5, created_by="ops",
                     comment='line1\nline2 "quoted"', kind="maintenance", repeat_every=WEEK),
    ]
    for s in silences:
        record = s.to_record()
        again = Silence.from_record(orjson.loads(orjson.dumps(record)))
        assert again == s
        assert again.to_record() == record
    assert silences[1].to_record()["matchers"][0] == 'team="db"'


def test_from_record_accepts_config_forms() -> None:
    s = Silence.from_record({
        "id": "w", "matchers": ["team=db", '{env="prod", tier=~"1|2"}'],
        "starts_at": "2024-01-02T02:00:00Z", "ends_at": "2024-01-02T04:00:00Z",
        "kind": "maintenance", "repeat_every": "1w",
    })
    assert [str(m) for m in s.matchers] == ['team="db"', 'env="prod"', 'tier=~"1|2"']
    assert s.starts_at == T0 + 86400 + 2 * HOUR
    assert s.repeat_every == WEEK
    assert s.created_by == "" and s.comment == ""


@pytest.mark.parametrize(
    ("record", "field", "error"),
    [
        ({"matchers": ["a=b"]}, "id", SchemaError),
        ({"id": "x", "matchers": "a=b"}, "matchers", SchemaError),
        ({"id": "x", "matchers": [3]}, "matchers[0]", SchemaError),
        ({"id": "x", "matchers": ["a=b", "a~b"]}, "matchers[1]", SchemaError),
        ({"id": "x", "matchers": []}, "matchers", SchemaError),
        ({"id": "x", "matchers": ["a=b"], "starts_at": "soon"}, "starts_at", TimestampError),
        ({"id": "x", "matchers": ["a=b"], "ends_at": None}, "ends_at", SchemaError),
        ({"id": "x", "matchers": ["a=b"], "ends_at": 50.0}, "ends_at", SchemaError),
        ({"id": "x", "matchers": ["a=b"], "kind": "mute"}, "kind", SchemaError),
        ({"id": "x", "matchers": ["a=b"], "repeat_every": "often"}, "repeat_every", SchemaError),
        ({"id": "x", "matchers": ["a=b"], "repeat_every": 10}, "repeat_every", SchemaError),
        ({"id": "x", "matchers": ["a=b"], "comment": 7}, "comment", SchemaError),
    ],
)
def test_from_record_errors(record: dict[str, Any], field: str, error: type[Exception]) -> None:
    full = {"starts_at": 100.0, "ends_at": 200.0, **record}
    full = {k: v for k, v in full.items() if v is not None}
    with pytest.raises(error) as info:
        Silence.from_record(full)
    assert getattr(info.value, "field", None) == field


# --- Alertmanager API v2 -------------------------------------------------------------------


def test_silence_from_alertmanager() -> None:
    s = silence_from_alertmanager(am_silence(id="4f2a9c1e-0b7d-4c55-9e1a-2f1d7c3b9a10"))
    assert s.id == "4f2a9c1e-0b7d-4c55-9e1a-2f1d7c3b9a10"
    assert [str(m) for m in s.matchers] == ['alertname="DiskFull"', 'instance=~"db-.*"']
    assert (s.starts_at, s.ends_at) == (T0, T0 + 2 * HOUR)
    assert (s.created_by, s.comment, s.kind, s.repeat_every) == (
        "alice", "db failover", "silence", None)
    assert s.matches({"alertname": "DiskFull", "instance": "db-1"}, T0 + 60)
    assert not s.matches({"alertname": "DiskFull", "instance": "web-1"}, T0 + 60)
    assert s.describe() == 'silenced by 4f2a9c1e… (alice: "db failover")'


def test_gettable_silence_with_status_and_epoch() -> None:
    s = silence_from_alertmanager(am_silence(
        id="abc", status={"state": "expired"}, updatedAt="2024-01-01T00:00:00Z",
        startsAt=T0, endsAt=T0 + 60))
    # State follows from the times and `now`, not from the sender's status.
    assert s.active(T0 + 1)


def test_derived_id_is_deterministic_and_content_based() -> None:
    a = silence_from_alertmanager(am_silence())
    b = silence_from_alertmanager(am_silence())
    reordered = am_silence()
    reordered["matchers"] = list(reversed(reordered["matchers"]))
    c = silence_from_alertmanager(reordered)
    d = silence_from_alertmanager(am_silence(comment="other"))
    assert len(a.id) == 16 and int(a.id, 16) >= 0
    assert a.id == b.id == c.id
    assert d.id != a.id
    assert silence_from_alertmanager(am_silence(id="")).id == a.id


def test_alertmanager_json_round_trip_via_record() -> None:
    s = silence_from_alertmanager(am_silence())
    assert Silence.from_record(orjson.loads(orjson.dumps(s.to_record()))) == s


@pytest.mark.parametrize(
    ("overrides", "field", "error"),
    [
        ({"matchers": None}, "matchers", SchemaError),
        ({"matchers": []}, "matchers", SchemaError),
        ({"matchers": ["a=b"]}, "matchers[0]", SchemaError),
        ({"matchers": [{"value": "x", "isRegex": False}]}, "matchers[0].name", SchemaError),
        ({"matchers": [{"name": "a", "value": "x", "isRegex": False},
                       {"name": "b", "value": "(", "isRegex": True}]},
         "matchers[1].value", SchemaError),
        ({"matchers": [{"name": "a", "value": "", "isRegex": False}]}, "matchers", SchemaError),
        ({"startsAt": None}, "startsAt", SchemaError),
        ({"startsAt": "yesterday"}, "startsAt", TimestampError),
        ({"endsAt": "0001-01-01T00:00:00Z"}, "endsAt", TimestampError),
        ({"endsAt": "2023-12-31T00:00:00Z"}, "endsAt", SchemaError),
        ({"createdBy": 5}, "createdBy", SchemaError),
        ({"id": 5}, "id", SchemaError),
    ],
)
def test_silence_from_alertmanager_errors(
    overrides: dict[str, Any], field: str, error: type[Exception]
) -> None:
    with pytest.raises(error) as info:
        silence_from_alertmanager(am_silence(**overrides))
    assert getattr(info.value, "field", None) == field


def test_silence_from_alertmanager_not_an_object() -> None:
    with pytest.raises(SchemaError):
        silence_from_alertmanager(["nope"])  # type: ignore[arg-type]


# --- SilenceSet ----------------------------------------------------------------------------


def test_empty_set_matches_nothing() -> None:
    assert SilenceSet().match({"alertname": "X"}, T0) is None
    assert len(SilenceSet()) == 0


def test_match_returns_first_in_start_then_id_order(
    make_silence: Callable[..., Silence],
) -> None:
    late = make_silence(id="a-late", matchers='alertname="X"', starts_at=T0 + 10)
    early_b = make_silence(id="b", matchers='severity=~"crit.*"', starts_at=T0)
    early_a = make_silence(id="a", matchers="env=prod", starts_at=T0)
    fallback = make_silence(id="0", matchers='alertname=~"X|Z"', starts_at=T0 + 5)
    silences = SilenceSet([late, early_b, fallback, early_a])
    assert [s.id for s in silences] == ["a", "b", "0", "a-late"]
    labels = {"alertname": "X", "severity": "critical", "env": "prod"}
    assert silences.match(labels, T0 + 20) is early_a
    assert silences.match({**labels, "env": "dev"}, T0 + 20) is early_b
    assert silences.match({"alertname": "X"}, T0 + 20) is fallback
    assert silences.match({"alertname": "X"}, T0 + 1) is None  # fallback not yet active
    assert silences.match({"alertname": "Y"}, T0 + 20) is None


def test_match_skips_inactive(make_silence: Callable[..., Silence]) -> None:
    first = make_silence(id="a", starts_at=T0, ends_at=T0 + 10)
    second = make_silence(id="b", starts_at=T0 + 5, ends_at=T0 + 100)
    silences = SilenceSet([first, second])
    labels = {"alertname": "DiskFull"}
    assert silences.match(labels, T0 + 6) is first
    assert silences.match(labels, T0 + 50) is second
    assert silences.match(labels, T0 + 100) is None


def test_add_replaces_by_id_and_remove(make_silence: Callable[..., Silence]) -> None:
    silences = SilenceSet([make_silence(id="a", matchers='alertname="X"')])
    replacement = make_silence(id="a", matchers='alertname="Y"')
    silences.add(replacement)
    assert len(silences) == 1 and "a" in silences and silences.get("a") is replacement
    assert silences.match({"alertname": "X"}, T0 + 1) is None
    assert silences.match({"alertname": "Y"}, T0 + 1) is replacement
    assert silences.remove("a") is replacement
    assert silences.remove("a") is None
    assert len(silences) == 0
    assert silences.match({"alertname": "Y"}, T0 + 1) is None


def test_index_on_empty_value_equality(make_silence: Callable[..., Silence]) -> None:
    # Only `=` matcher has value "": the alert must lack `owner`, so the missing label must
    # find the "" bucket.
    s = make_silence(id="orphans", matchers='{owner="", severity=~"crit.*"}')
    silences = SilenceSet([s])
    assert silences.match({"severity": "critical"}, T0 + 1) is s
    assert silences.match({"severity": "critical", "owner": "x"}, T0 + 1) is None


def test_expire(make_silence: Callable[..., Silence]) -> None:
    old = make_silence(id="old", starts_at=T0, ends_at=T0 + 10)
    older = make_silence(id="older", starts_at=T0 - 100, ends_at=T0 + 5)
    live = make_silence(id="live", starts_at=T0, ends_at=T0 + 1000)
    weekly = make_silence(id="weekly", starts_at=T0 - WEEK, ends_at=T0 - WEEK + 10,
                          kind="maintenance", repeat_every=WEEK)
    silences = SilenceSet([old, older, live, weekly])
    assert silences.expire(T0 + 60, retention=60) == []
    assert silences.expire(T0 + 70.5, retention=60) == [older, old]
    assert [s.id for s in silences] == ["weekly", "live"]
    assert silences.expire(T0 + 100 * WEEK, retention=60) == [live]
    assert [s.id for s in silences] == ["weekly"]
    assert silences.match({"alertname": "DiskFull"}, T0 + 100 * WEEK + 1) is weekly


# A small alphabet so that random silences and label sets actually collide.
_NAMES = ["alertname", "env", "team", "x"]
_VALUES = ["", "a", "b", "prod"]
_REGEXES = ["", ".*", ".+", "a|b", "pro.*", "b"]


@st.composite
def _matcher(draw: st.DrawFn) -> Matcher:
    name = draw(st.sampled_from(_NAMES))
    op = draw(st.sampled_from(["=", "!=", "=~", "!~"]))
    pool = _REGEXES if op in ("=~", "!~") else _VALUES
    return Matcher(name, op, draw(st.sampled_from(pool)))  # type: ignore[arg-type]


@st.composite
def _silence(draw: st.DrawFn) -> Silence:
    matchers = draw(
        st.lists(_matcher(), min_size=1, max_size=3).filter(
            lambda ms: not all(m.matches_empty for m in ms)
        )
    )
    starts = float(draw(st.integers(0, 20)))
    length = float(draw(st.integers(1, 10)))
    repeat = draw(st.one_of(st.none(), st.integers(int(length) + 1, 25).map(float)))
    return Silence(
        id=draw(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"])),
        matchers=tuple(matchers),
        starts_at=starts,
        ends_at=starts + length,
        kind="maintenance" if repeat is not None else "silence",
        repeat_every=repeat,
    )


_labels = st.dictionaries(st.sampled_from(_NAMES), st.sampled_from(_VALUES), max_size=4)


def _naive(
    silences: Mapping[str, Silence], labels: Mapping[str, str], now: float
) -> Silence | None:
    for s in sorted(silences.values(), key=lambda s: (s.starts_at, s.id)):
        if s.matches(labels, now):
            return s
    return None


@settings(max_examples=200)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("add"), _silence()),
            st.tuples(st.just("remove"), st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"])),
        ),
        max_size=25,
    ),
    queries=st.lists(st.tuples(_labels, st.integers(0, 60).map(float)), min_size=1, max_size=10),
    expire_at=st.one_of(st.none(), st.integers(0, 60).map(float)),
)
def test_match_equals_linear_scan(
    ops: list[tuple[str, Any]],
    queries: list[tuple[dict[str, str], float]],
    expire_at: float | None,
) -> None:
    silences = SilenceSet()
    model: dict[str, Silence] = {}
    for op, arg in ops:
        if op == "add":
            silences.add(arg)
            model[arg.id] = arg
        else:
            assert silences.remove(arg) is model.pop(arg, None)
    if expire_at is not None:
        gone = silences.expire(expire_at, retention=2.0)
        assert all(s.repeat_every is None and expire_at - s.ends_at > 2.0 for s in gone)
        for s in gone:
            del model[s.id]
        assert not [s for s in model.values() if s.repeat_every is None
                    and expire_at - s.ends_at > 2.0]
    assert len(silences) == len(model)
    assert list(silences) == sorted(model.values(), key=lambda s: (s.starts_at, s.id))
    for labels, now in queries:
        assert silences.match(labels, now) is _naive(model, labels, now)
