from __future__ import annotations

import doctest

import pytest

from triage.core.incidents import warroom as warroom_module
from triage.core.incidents.warroom import (
    WarRoomDecision,
    WarRoomPolicy,
    decide_war_room,
    next_check,
    parse_war_room,
)
from triage.core.timeutil import parse_timestamp
from triage.errors import ConfigError


def _at(text: str) -> float:
    ts = parse_timestamp(text)
    assert ts is not None
    return ts


T0 = _at("2026-11-27T10:02:11Z")  # reasons show it as 10:02:11
MIN = 60.0


def decide(
    priority: str,
    now: float,
    teams: list[str] | None = None,
    policy: WarRoomPolicy | None = None,
    **kwargs: object,
) -> WarRoomDecision:
    """The decision for an incident opened at T0, ``now`` seconds later."""
    return decide_war_room(priority=priority, opened_at=T0, now=T0 + now, teams=teams or ["cart"],
                           policy=policy or WarRoomPolicy(), **kwargs)  # type: ignore[arg-type]


# --- P1 --------------------------------------------------------------------------------------


def test_p1_opens_at_once() -> None:
    d = decide("P1", 30.0)
    assert d == WarRoomDecision(True, "P1: war room opens at once", T0 + 30.0)


def test_p1_opens_even_after_the_decision_window() -> None:
    d = decide("P1", 2 * 3600.0)
    assert d.open and d.at == T0 + 7200.0


def test_p1_reports_when_it_became_p1() -> None:
    d = decide("P1", 20 * MIN, priority_since=T0 + 3 * MIN)
    assert d.at == T0 + 3 * MIN


def test_p1_rule_off_falls_back_to_the_p2_timer() -> None:
    policy = WarRoomPolicy(p1=False)
    assert not decide("P1", 5 * MIN, policy=policy).open
    d = decide("P1", 15 * MIN, policy=policy)
    assert d.open and d.reason == "P1 open for 15m (since 10:02:11)"


# --- P2 timer --------------------------------------------------------------------------------


def test_p2_waits_for_its_timer() -> None:
    d = decide("P2", 5 * MIN)
    assert not d.open and d.at is None
    assert d.reason == ("no war room yet: P2 open for 5m, opens after 15m (at 10:17:11); "
                        "1 team affected: cart (3 needed)")


def test_p2_opens_when_the_timer_fires() -> None:
    d = decide("P2", 15 * MIN)
    assert d == WarRoomDecision(True, "P2 open for 15m (since 10:02:11)", T0 + 15 * MIN)


def test_p2_reports_the_time_the_rule_fired_not_now() -> None:
    d = decide("P2", 40 * MIN)  # a late re-check, after the decision window
    assert d.open and d.at == T0 + 15 * MIN
    assert d.reason == "P2 open for 15m (since 10:02:11)"


def test_p2_reached_within_the_window_fires_on_the_timer() -> None:
    d = decide("P2", 16 * MIN, priority_since=T0 + 10 * MIN)
    assert d.open and d.at == T0 + 15 * MIN


def test_p2_reached_after_the_timer_fires_when_reached() -> None:
    policy = WarRoomPolicy(p2_after=5 * MIN)
    d = decide("P2", 12 * MIN, policy=policy, priority_since=T0 + 12 * MIN)
    assert d.open and d.at == T0 + 12 * MIN
    assert d.reason == "P2 open for 12m (since 10:02:11)"


def test_p2_reached_after_the_window_stays_closed() -> None:
    d = decide("P2", 30 * MIN, priority_since=T0 + 20 * MIN)
    assert not d.open
    assert d.reason == ("no war room: not opened within the first 15m (by 10:17:11); "
                        "only a P1 opens it now")


@pytest.mark.parametrize("priority", ["P3", "P4"])
def test_lower_priorities_never_open_by_age(priority: str) -> None:
    assert not decide(priority, 14 * MIN).open
    assert not decide(priority, 3 * 3600.0).open
    assert decide(priority, 1 * MIN).reason == (
        f"no war room yet: {priority}; 1 team affected: cart (3 needed)")


def test_p2_rule_off() -> None:
    assert not decide("P2", 15 * MIN, policy=WarRoomPolicy(p2_after=None)).open


# --- teams -----------------------------------------------------------------------------------


def test_three_teams_open_at_now() -> None:
    d = decide("P4", 2 * MIN, ["storefront", "cart", "checkout"])
    assert d == WarRoomDecision(True, "3 teams affected: cart, checkout, storefront",
                                T0 + 2 * MIN)


def test_team_names_are_distinct_and_non_empty() -> None:
    d = decide("P3", 2 * MIN, ["cart", "cart", "", "checkout"])
    assert not d.open
    assert d.reason == "no war room yet: P3; 2 teams affected: cart, checkout (3 needed)"


def test_no_teams_known() -> None:
    d = decide_war_room(priority="P3", opened_at=T0, now=T0, teams=[], policy=WarRoomPolicy())
    assert d.reason == "no war room yet: P3; 0 teams affected (3 needed)"


def test_min_teams_configurable_and_off() -> None:
    assert decide("P4", 0.0, ["a", "b"], WarRoomPolicy(min_teams=2)).open
    assert not decide("P4", 0.0, ["a", "b", "c", "d"], WarRoomPolicy(min_teams=None)).open


def test_teams_after_the_window_do_not_open() -> None:
    d = decide("P3", 16 * MIN, ["a", "b", "c"])
    assert not d.open
    assert d.reason.startswith("no war room: not opened within the first 15m")


def test_teams_at_the_window_edge_open() -> None:
    assert decide("P3", 15 * MIN, ["a", "b", "c"]).open


def test_both_rules_fired_earliest_first() -> None:
    d = decide("P2", 15 * MIN, ["a", "b", "c"])
    assert d.at == T0 + 15 * MIN
    assert d.reason == "P2 open for 15m (since 10:02:11); 3 teams affected: a, b, c"


# --- the decision window and stickiness ------------------------------------------------------


def test_open_war_room_stays_open() -> None:
    opened = decide("P4", 1 * MIN, ["a", "b", "c"])
    later = decide("P4", 60 * MIN, ["a"], previous=opened)
    assert later is opened


def test_closed_war_room_is_re_decided() -> None:
    closed = decide("P3", 1 * MIN)
    assert decide("P3", 2 * MIN, ["a", "b", "c"], previous=closed).open


def test_closed_after_the_window_unless_p1() -> None:
    closed = decide("P3", 10 * MIN)
    assert not decide("P2", 20 * MIN, ["a", "b", "c"], previous=closed,
                      priority_since=T0 + 20 * MIN).open
    assert decide("P1", 20 * MIN, previous=closed).open


def test_window_message_without_p1_rule() -> None:
    d = decide("P3", 20 * MIN, policy=WarRoomPolicy(p1=False))
    assert d.reason == "no war room: not opened within the first 15m (by 10:17:11)"


# --- next_check ------------------------------------------------------------------------------


def test_next_check() -> None:
    policy = WarRoomPolicy()
    assert next_check(priority="P2", opened_at=T0, policy=policy) == T0 + 15 * MIN
    assert next_check(priority="P1", opened_at=T0, policy=policy) is None
    assert next_check(priority="P1", opened_at=T0, policy=WarRoomPolicy(p1=False)) == (
        T0 + 15 * MIN)
    assert next_check(priority="P3", opened_at=T0, policy=policy) is None
    assert next_check(priority="P2", opened_at=T0, policy=WarRoomPolicy(p2_after=None)) is None
    assert next_check(priority="P2", opened_at=T0, policy=policy,
                      priority_since=T0 + 20 * MIN) is None


def test_next_check_then_decide_in_event_time() -> None:
    # what a caller does: schedule the re-check, then decide at that time with no new alert
    policy = WarRoomPolicy(p2_after=10 * MIN)
    assert not decide("P2", 1 * MIN, policy=policy).open
    when = next_check(priority="P2", opened_at=T0, policy=policy)
    assert when is not None
    d = decide_war_room(priority="P2", opened_at=T0, now=when, teams=["cart"], policy=policy)
    assert d.open and d.at == when


# --- config ----------------------------------------------------------------------------------


def test_parse_defaults() -> None:
    assert parse_war_room(None) == parse_war_room({}) == WarRoomPolicy()
    assert WarRoomPolicy() == WarRoomPolicy(True, 900.0, 3, 900.0)


def test_parse_values() -> None:
    policy = parse_war_room({"p1": "false", "p2_after": "10m", "min_teams": "4",
                             "decide_within": "1h"})
    assert policy == WarRoomPolicy(p1=False, p2_after=600.0, min_teams=4, decide_within=3600.0)
    off = parse_war_room({"p2_after": None, "min_teams": None})
    assert off.p2_after is None and off.min_teams is None
    assert parse_war_room({"p2_after": 0}).p2_after == 0.0


@pytest.mark.parametrize(("data", "key"), [
    ("yes", "war_room"),
    ({"p3": True}, "war_room.p3"),
    ({"p1": "maybe"}, "war_room.p1"),
    ({"p2_after": "soon"}, "war_room.p2_after"),
    ({"p2_after": -5}, "war_room.p2_after"),
    ({"p2_after": float("inf")}, "war_room.p2_after"),
    ({"p2_after": "30m"}, "war_room.p2_after"),  # after decide_within: could never fire
    ({"min_teams": 0}, "war_room.min_teams"),
    ({"min_teams": "three"}, "war_room.min_teams"),
    ({"min_teams": True}, "war_room.min_teams"),
    ({"decide_within": "forever"}, "war_room.decide_within"),
    ({"decide_within": "5m"}, "war_room.p2_after"),
])
def test_config_errors_name_the_key(data: object, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_war_room(data)
    assert err.value.key == key


def test_duration_error_message_is_not_doubled() -> None:
    with pytest.raises(ConfigError) as err:
        parse_war_room({"p2_after": "soon"})
    assert str(err.value) == ("config war_room.p2_after: expected a duration like '5m' or "
                              "'1h30m', got 'soon'")


def test_doctests() -> None:
    assert doctest.testmod(warroom_module).failed == 0
