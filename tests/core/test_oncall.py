"""On-call rotations, overrides and coverage: handoffs, DST, restrictions, config errors."""

from __future__ import annotations

import doctest
import itertools
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import triage.core.oncall as oncall_module
from triage.core.oncall import (
    Gap,
    OnCall,
    OnCallSchedule,
    Overlap,
    Override,
    Rotation,
    parse_oncall,
)
from triage.errors import ConfigError

DAY = 86400.0
WEEK = 7 * DAY
DEMO = Path(__file__).resolve().parents[2] / "src" / "triage" / "demo_assets" / "oncall.yaml"


def utc(text: str) -> float:
    """Epoch seconds of an ISO time given in UTC."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def rotation(team: str = "cart", members: tuple[str, ...] = ("ana", "bo", "cy"), *,
             length: float = WEEK, handoff: str = "09:00", timezone: str = "Europe/Berlin",
             start: date = date(2026, 11, 2), days: tuple[int, ...] | None = None,
             hours: tuple[time, time] | None = None) -> Rotation:
    return Rotation(team, members, length=length, handoff=handoff, timezone=timezone,
                    start=start, days=days, hours=hours)


def config(**overrides: Any) -> dict[str, Any]:
    """One valid raw rotation entry; keyword arguments replace (None: remove) keys."""
    entry: dict[str, Any] = {"team": "cart", "members": ["ana", "bo"], "length": "7d",
                             "handoff": "09:00", "timezone": "Europe/Berlin",
                             "start": "2026-11-02"}
    for key, value in overrides.items():
        if value is None:
            entry.pop(key, None)
        else:
            entry[key] = value
    return entry


def who(schedule: OnCallSchedule, team: str, at: str) -> str | None:
    found = schedule.on_call(team, utc(at))
    return found.person if found else None


def test_doctests() -> None:
    result = doctest.testmod(oncall_module)
    assert result.attempted > 10
    assert result.failed == 0


# --- rotations ------------------------------------------------------------------------------


def test_members_take_turns_at_the_local_handoff() -> None:
    s = OnCallSchedule([rotation()])
    # Berlin is UTC+1 in November: handoff 09:00 local is 08:00 UTC.
    assert who(s, "cart", "2026-11-02T07:59:59") is None  # before the first handoff
    assert who(s, "cart", "2026-11-02T08:00:00") == "ana"
    assert who(s, "cart", "2026-11-09T07:59:59") == "ana"
    assert who(s, "cart", "2026-11-09T08:00:00") == "bo"
    assert who(s, "cart", "2026-11-16T08:00:00") == "cy"
    assert who(s, "cart", "2026-11-23T08:00:00") == "ana"  # and round again
    assert who(s, "cart", "2027-11-01T08:00:00") == "bo"  # 52 weeks: 17 full turns + 1


def test_on_call_reports_the_shift_and_the_layer() -> None:
    s = OnCallSchedule([rotation(team="web"), rotation()])
    assert s.on_call("cart", utc("2026-11-10T12:00:00")) == OnCall(
        "bo", "cart", "rotation", 1, utc("2026-11-09T08:00:00"), utc("2026-11-16T08:00:00"))
    assert s.on_call("billing", utc("2026-11-10T12:00:00")) is None
    assert s.teams == ("cart", "web")


def test_spring_forward_keeps_the_handoff_at_nine_local() -> None:
    # 2026-03-29 02:00 CET -> 03:00 CEST. The shift over that Sunday is an hour short.
    r = rotation(start=date(2026, 3, 23))
    s = OnCallSchedule([r])
    assert who(s, "cart", "2026-03-23T08:00:00") == "ana"  # 09:00 CET
    assert who(s, "cart", "2026-03-30T06:59:59") == "ana"
    assert who(s, "cart", "2026-03-30T07:00:00") == "bo"  # 09:00 CEST
    assert r.boundary(1) - r.boundary(0) == WEEK - 3600


def test_fall_back_keeps_the_handoff_at_nine_local() -> None:
    # 2026-10-25 03:00 CEST -> 02:00 CET. The shift over that Sunday is an hour long.
    r = rotation(start=date(2026, 10, 19))
    s = OnCallSchedule([r])
    assert who(s, "cart", "2026-10-19T07:00:00") == "ana"  # 09:00 CEST
    assert who(s, "cart", "2026-10-26T07:59:59") == "ana"
    assert who(s, "cart", "2026-10-26T08:00:00") == "bo"  # 09:00 CET
    assert r.boundary(1) - r.boundary(0) == WEEK + 3600


def test_handoff_in_the_skipped_hour_happens_when_the_clocks_jump() -> None:
    r = rotation(members=("ana", "bo"), length=DAY, handoff="02:30", start=date(2026, 3, 28))
    # 02:30 on 29 March never happens in Berlin; the handoff is at the jump, 01:00 UTC.
    assert r.boundary(1) == utc("2026-03-29T01:00:00")
    assert r.boundary(2) == utc("2026-03-30T00:30:00")  # 02:30 CEST
    s = OnCallSchedule([r])
    assert who(s, "cart", "2026-03-29T00:59:59") == "ana"
    assert who(s, "cart", "2026-03-29T01:00:00") == "bo"


def test_handoff_in_the_repeated_hour_happens_the_first_time() -> None:
    r = rotation(members=("ana", "bo"), length=DAY, handoff="02:30", start=date(2026, 10, 24))
    assert r.boundary(1) == utc("2026-10-25T00:30:00")  # the first 02:30, still CEST
    assert r.boundary(2) - r.boundary(1) == DAY + 3600
    s = OnCallSchedule([r])
    # 01:30 UTC is 02:30 again on the wall (CET); bo's shift runs on until the next day.
    assert who(s, "cart", "2026-10-25T01:30:00") == "bo"
    assert who(s, "cart", "2026-10-26T01:29:59") == "bo"
    assert who(s, "cart", "2026-10-26T01:30:00") == "ana"


def test_sub_day_rotation_steps_through_the_repeated_hour() -> None:
    # 30-minute shifts: the wall clock runs back an hour on 25 October, so the estimate of
    # the shift number is two shifts ahead there and must be corrected.
    r = rotation(members=("a", "b", "c"), length=1800.0, handoff="00:00",
                 start=date(2026, 10, 25))
    for at in range(int(utc("2026-10-24T23:00:00")), int(utc("2026-10-25T03:00:00")), 600):
        k = r.shift_index(at)
        assert r.boundary(k) <= at < r.boundary(k + 1)


def test_restricted_hours_follow_local_time_across_dst() -> None:
    day_shift = rotation(length=DAY, start=date(2026, 3, 23), hours=(time(9), time(17)))
    s = OnCallSchedule([day_shift])
    assert who(s, "cart", "2026-03-27T07:59:59") is None
    assert who(s, "cart", "2026-03-27T08:00:00") is not None  # 09:00 CET
    assert who(s, "cart", "2026-03-27T15:59:59") is not None
    assert who(s, "cart", "2026-03-27T16:00:00") is None  # 17:00 CET
    assert who(s, "cart", "2026-03-30T07:00:00") is not None  # 09:00 CEST
    assert who(s, "cart", "2026-03-30T15:00:00") is None  # 17:00 CEST
    found = s.on_call("cart", utc("2026-03-30T10:00:00"))
    assert found is not None
    assert (found.shift_start, found.shift_end) == (utc("2026-03-30T07:00:00"),
                                                    utc("2026-03-30T15:00:00"))


def test_restricted_days_and_an_overnight_window_belong_to_the_day_they_start() -> None:
    nights = rotation(timezone="UTC", days=(4,), hours=(time(21), time(9)))  # Friday nights
    s = OnCallSchedule([nights])
    assert who(s, "cart", "2026-11-06T20:59:59") is None  # Friday
    assert who(s, "cart", "2026-11-06T21:00:00") == "ana"
    assert who(s, "cart", "2026-11-07T08:59:59") == "ana"  # Saturday morning: still Friday's
    assert who(s, "cart", "2026-11-07T09:00:00") is None
    assert who(s, "cart", "2026-11-07T21:00:00") is None  # Saturday night: not Friday
    assert who(s, "cart", "2026-11-05T21:00:00") is None  # Thursday night


def test_weekdays_only_merge_into_one_stretch() -> None:
    weekdays = rotation(timezone="UTC", handoff="00:00", days=(0, 1, 2, 3, 4))
    found = OnCallSchedule([weekdays]).on_call("cart", utc("2026-11-04T12:00:00"))
    assert found is not None
    assert (found.shift_start, found.shift_end) == (utc("2026-11-02T00:00:00"),
                                                    utc("2026-11-07T00:00:00"))


def test_shift_boundaries_cut_restricted_windows() -> None:
    # Daily handoff at 12:00 inside a 09:00-17:00 window: two people share the day.
    r = rotation(members=("ana", "bo"), length=DAY, handoff="12:00", timezone="UTC",
                 hours=(time(9), time(17)))
    got = [(x.person, x.start, x.end) for x in r.shifts(start=utc("2026-11-03T00:00:00"),
                                                        end=utc("2026-11-04T00:00:00"))]
    assert got == [("ana", utc("2026-11-03T09:00:00"), utc("2026-11-03T12:00:00")),
                   ("bo", utc("2026-11-03T12:00:00"), utc("2026-11-03T17:00:00"))]


# --- overrides and layers -------------------------------------------------------------------


def test_overrides_win_for_their_window_only() -> None:
    cover = Override("cart", "dee", utc("2026-11-10T12:00:00"), utc("2026-11-11T12:00:00"))
    s = OnCallSchedule([rotation()], [cover])
    assert who(s, "cart", "2026-11-10T11:59:59") == "bo"
    found = s.on_call("cart", utc("2026-11-10T12:00:00"))
    assert found == OnCall("dee", "cart", "override", None, cover.starts_at, cover.ends_at)
    assert who(s, "cart", "2026-11-11T12:00:00") == "bo"
    # An override also covers a team's time outside its rotations.
    assert who(s, "cart", "2026-11-01T00:00:00") is None
    early = Override("cart", "dee", utc("2026-11-01T00:00:00"), utc("2026-11-01T01:00:00"))
    assert who(OnCallSchedule([rotation()], [early]), "cart", "2026-11-01T00:00:00") == "dee"


def test_first_rotation_wins_where_layers_overlap() -> None:
    first = rotation(members=("ana",), timezone="UTC", hours=(time(8), time(18)))
    second = rotation(members=("zed",), timezone="UTC")
    s = OnCallSchedule([first, second])
    assert who(s, "cart", "2026-11-03T12:00:00") == "ana"
    assert who(s, "cart", "2026-11-03T20:00:00") == "zed"
    assert s.on_call("cart", utc("2026-11-03T20:00:00")).rotation_index == 1  # type: ignore[union-attr]
    assert who(OnCallSchedule([second, first]), "cart", "2026-11-03T12:00:00") == "zed"


# --- coverage -------------------------------------------------------------------------------


def test_coverage_finds_exact_gaps_of_a_business_hours_team() -> None:
    office = rotation(timezone="UTC", handoff="00:00", days=(0, 1, 2, 3, 4),
                      hours=(time(9), time(17)))
    report = OnCallSchedule([office]).coverage(start=utc("2026-11-06T00:00:00"),
                                               end=utc("2026-11-10T00:00:00"))
    assert report.gaps == [
        Gap("cart", utc("2026-11-06T00:00:00"), utc("2026-11-06T09:00:00")),
        Gap("cart", utc("2026-11-06T17:00:00"), utc("2026-11-09T09:00:00")),  # week-end merged
        Gap("cart", utc("2026-11-09T17:00:00"), utc("2026-11-10T00:00:00")),
    ]
    assert report.overlaps == []
    assert not report.ok


def test_coverage_before_the_first_handoff_is_a_gap() -> None:
    report = OnCallSchedule([rotation()]).coverage(start=utc("2026-11-01T00:00:00"),
                                                  end=utc("2026-11-30T00:00:00"))
    assert report.gaps == [Gap("cart", utc("2026-11-01T00:00:00"), utc("2026-11-02T08:00:00"))]


def test_overrides_fill_gaps_and_are_not_overlaps() -> None:
    office = rotation(timezone="UTC", handoff="00:00", hours=(time(9), time(17)))
    evening = Override("cart", "dee", utc("2026-11-03T17:00:00"), utc("2026-11-03T20:00:00"))
    report = OnCallSchedule([office], [evening]).coverage(start=utc("2026-11-03T09:00:00"),
                                                          end=utc("2026-11-03T21:00:00"))
    assert report.gaps == [Gap("cart", utc("2026-11-03T20:00:00"), utc("2026-11-03T21:00:00"))]
    assert report.overlaps == []


def test_coverage_reports_overlaps_with_the_people_per_handoff() -> None:
    # Two daily layers, 08-18 and 16-10 UTC: they overlap 16-18 and 08-10 every day.
    day = rotation(members=("ana", "bo"), length=DAY, timezone="UTC", handoff="08:00",
                   hours=(time(8), time(18)))
    night = rotation(members=("zed",), length=DAY, timezone="UTC", handoff="08:00",
                     hours=(time(16), time(10)))
    report = OnCallSchedule([day, night]).coverage(start=utc("2026-11-02T08:00:00"),
                                                   end=utc("2026-11-03T12:00:00"))
    assert report.gaps == []
    assert report.overlaps == [
        # Sunday night's window runs on into Monday's first shift.
        Overlap("cart", utc("2026-11-02T08:00:00"), utc("2026-11-02T10:00:00"), ("ana", "zed")),
        Overlap("cart", utc("2026-11-02T16:00:00"), utc("2026-11-02T18:00:00"), ("ana", "zed")),
        Overlap("cart", utc("2026-11-03T08:00:00"), utc("2026-11-03T10:00:00"), ("bo", "zed")),
    ]
    assert report.ok  # overlaps are resolved (first layer wins), so they are warnings


def test_coverage_merges_across_handoffs_and_sorts_by_team() -> None:
    # Two identical unrestricted layers overlap all the time; people change at each handoff.
    a = rotation(team="web", members=("ana",), timezone="UTC")
    b = rotation(team="web", members=("bo",), timezone="UTC")
    gap_team = rotation(team="api", start=date(2026, 11, 4), timezone="UTC")
    report = OnCallSchedule([a, b, gap_team]).coverage(start=utc("2026-11-02T09:00:00"),
                                                       end=utc("2026-11-30T09:00:00"))
    assert report.overlaps == [
        Overlap("web", utc("2026-11-02T09:00:00"), utc("2026-11-30T09:00:00"), ("ana", "bo"))]
    assert report.gaps == [Gap("api", utc("2026-11-02T09:00:00"), utc("2026-11-04T09:00:00"))]


def test_coverage_of_an_empty_range_is_empty() -> None:
    report = OnCallSchedule([rotation()]).coverage(start=5.0, end=5.0)
    assert report.gaps == [] and report.overlaps == []


def test_demo_rotations_cover_every_team_for_a_year() -> None:
    schedule = parse_oncall(yaml.safe_load(DEMO.read_text())["oncall"])
    assert schedule.teams == ("cart", "catalog", "checkout", "platform", "storefront")
    report = schedule.coverage(start=utc("2026-11-01T00:00:00"), end=utc("2027-11-01T00:00:00"))
    assert report.gaps == []
    assert report.overlaps == []
    # The override wins during Thanksgiving.
    assert who(schedule, "cart", "2026-11-27T12:00:00") == "zoe.martin"
    # Follow the sun: the two platform layers hand the pager over at 07:00 and 19:00 UTC.
    assert schedule.on_call("platform", utc("2026-11-03T18:59:59")).rotation_index == 4  # type: ignore[union-attr]
    assert schedule.on_call("platform", utc("2026-11-03T19:00:00")).rotation_index == 5  # type: ignore[union-attr]


# --- property: coverage agrees with on_call -------------------------------------------------

ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe", "Asia/Kolkata"]
# Three weeks from each origin span DST changes: Berlin forward and Lord Howe back by half an
# hour (April 5) in spring, Berlin and New York back in autumn.
ORIGINS = [date(2026, 3, 20), date(2026, 10, 20)]
SPAN = 21 * DAY


@st.composite
def rotations(draw: st.DrawFn, team: str, origin: date) -> Rotation:
    hours = draw(st.none() | st.tuples(st.integers(0, 23), st.sampled_from([0, 30]),
                                        st.integers(0, 23), st.sampled_from([0, 30])))
    return Rotation(
        team, tuple(draw(st.lists(st.sampled_from("abcd"), min_size=1, max_size=3))),
        length=draw(st.sampled_from([1800.0, 3600.0, 8 * 3600.0, 12 * 3600.0, DAY, 2.5 * DAY,
                                     WEEK])),
        handoff=f"{draw(st.integers(0, 23)):02d}:{draw(st.sampled_from([0, 15, 30])):02d}",
        timezone=draw(st.sampled_from(ZONES)),
        start=origin + timedelta(days=draw(st.integers(-5, 10))),
        days=draw(st.none() | st.lists(st.integers(0, 6), min_size=1, max_size=7,
                                       unique=True).map(tuple)),
        hours=None if hours is None else (time(hours[0], hours[1]), time(hours[2], hours[3])),
    )


@st.composite
def schedules(draw: st.DrawFn) -> tuple[OnCallSchedule, float]:
    origin = draw(st.sampled_from(ORIGINS))
    start = datetime.combine(origin, time(), UTC).timestamp()
    teams = ["x", "y"]
    rots = [draw(rotations(team, origin)) for team in teams
            for _ in range(draw(st.integers(0, 3)))]
    overrides = []
    for _ in range(draw(st.integers(0, 3))):
        s = start + draw(st.integers(0, 20 * 86400))
        overrides.append(Override(draw(st.sampled_from(teams)), "o", s,
                                  s + draw(st.integers(1, 3 * 86400))))
    return OnCallSchedule(rots, overrides), start


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drawn=schedules(), samples=st.lists(st.integers(0, int(SPAN) - 1), max_size=40))
def test_coverage_gaps_and_overlaps_agree_with_sampling(drawn: tuple[OnCallSchedule, float],
                                                         samples: list[int]) -> None:
    schedule, start = drawn
    end = start + SPAN
    report = schedule.coverage(start=start, end=end)
    for team in schedule.teams:
        gaps = [g for g in report.gaps if g.team == team]
        overlaps = [o for o in report.overlaps if o.team == team]
        for g, nxt in itertools.pairwise(gaps):
            assert g.start < g.end < nxt.start  # sorted, non-empty, merged
        times = [start + t for t in samples]
        times += [g.start for g in gaps] + [g.end - 1e-3 for g in gaps]
        times += [g.end for g in gaps if g.end < end]
        times += [o.start for o in overlaps]
        for at in times:
            in_gap = any(g.start <= at < g.end for g in gaps)
            assert (schedule.on_call(team, at) is None) == in_gap, (team, at)
            layers = [r.shift_at(at) for r in schedule.rotations if r.team == team]
            people = tuple(x.person for x in layers if x is not None)
            in_overlap = [o for o in overlaps if o.start <= at < o.end]
            assert (len(people) >= 2) == bool(in_overlap), (team, at)
            if in_overlap:
                assert in_overlap[0].people == people


# --- config ---------------------------------------------------------------------------------


def test_parse_oncall_accepts_strings_yaml_objects_names_and_ranges() -> None:
    schedule = parse_oncall(yaml.safe_load("""
rotations:
  - team: cart
    members: [ana, bo]
    length: 1w
    handoff: "09:00"
    timezone: Europe/Berlin
    start: 2026-11-02           # YAML date object
    days: [Mon, tuesday, 2, fri-sun]
    hours: "22:00-06:00"
overrides:
  - team: cart
    person: cy
    starts_at: 2026-12-24T18:00:00+01:00   # YAML datetime object
    ends_at: "2026-12-26T00:00:00Z"
"""))
    r = schedule.rotations[0]
    assert r.start == date(2026, 11, 2)
    assert r.length == WEEK
    assert r.days == (0, 1, 2, 4, 5, 6)
    assert r.hours == (time(22), time(6))
    assert schedule.overrides[0].starts_at == utc("2026-12-24T17:00:00")
    assert schedule.overrides[0].ends_at == utc("2026-12-26T00:00:00")
    assert parse_oncall({}).teams == ()
    assert parse_oncall(None).teams == ()
    assert parse_oncall({"rotations": [config(hours="09:00-24:00")]}).rotations[0].hours == (
        time(9), time(0))


@pytest.mark.parametrize(("entry", "key", "words"), [
    (config(timezone="Europe/Atlantis"), "oncall.rotations[1].timezone", "unknown IANA"),
    (config(members=[]), "oncall.rotations[1].members", "at least one"),
    (config(members=None), "oncall.rotations[1].members", "required"),
    (config(members=["ana", ""]), "oncall.rotations[1].members[1]", "non-empty"),
    (config(members="ana"), "oncall.rotations[1].members", "list"),
    (config(length="7 days"), "oncall.rotations[1].length", "duration"),
    (config(length="30s"), "oncall.rotations[1].length", "at least 1m"),
    (config(handoff="25:00"), "oncall.rotations[1].handoff", "time of day"),
    (config(handoff=540), "oncall.rotations[1].handoff", "quote it"),
    (config(start="next monday"), "oncall.rotations[1].start", "date"),
    (config(start=datetime(2026, 11, 2, 9)), "oncall.rotations[1].start", "handoff"),
    (config(days=["mon", "funday"]), "oncall.rotations[1].days[1]", "weekday"),
    (config(days=[7]), "oncall.rotations[1].days[0]", "weekday"),
    (config(days=[]), "oncall.rotations[1].days", "at least one"),
    (config(hours="9-5"), "oncall.rotations[1].hours", "09:00-17:00"),
    (config(team=None), "oncall.rotations[1].team", "required"),
    (config(lenght="7d"), "oncall.rotations[1].lenght", "unknown key"),
])
def test_rotation_errors_name_the_key(entry: dict[str, Any], key: str, words: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_oncall({"rotations": [config(), entry]})
    assert info.value.key == key
    assert words in info.value.message


@pytest.mark.parametrize(("entry", "key"), [
    ({"team": "cart", "person": "cy", "starts_at": "tomorrow", "ends_at": 10},
     "oncall.overrides[0].starts_at"),
    ({"team": "cart", "person": "cy", "starts_at": 20, "ends_at": 10},
     "oncall.overrides[0].ends_at"),
    ({"team": "cart", "starts_at": 1, "ends_at": 10}, "oncall.overrides[0].person"),
    ({"team": "cart", "person": "cy", "starts_at": 1, "ends_at": 10, "why": "x"},
     "oncall.overrides[0].why"),
])
def test_override_errors_name_the_key(entry: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_oncall({"overrides": [entry]})
    assert info.value.key == key


def test_section_shape_errors_name_the_key() -> None:
    with pytest.raises(ConfigError) as info:
        parse_oncall({"rotation": []})
    assert info.value.key == "oncall.rotation"
    with pytest.raises(ConfigError) as info:
        parse_oncall({"rotations": {"team": "cart"}})
    assert info.value.key == "oncall.rotations"
    with pytest.raises(ConfigError) as info:
        parse_oncall(["not", "a", "mapping"])
    assert info.value.key == "oncall"


def test_direct_construction_validates_too() -> None:
    with pytest.raises(ValueError, match="timezone"):
        rotation(timezone="Mars/Olympus")
    with pytest.raises(ValueError, match="ends_at"):
        Override("cart", "cy", 10.0, 10.0)
