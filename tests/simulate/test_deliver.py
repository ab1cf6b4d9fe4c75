"""Alertmanager's notification timing, replayed offline."""

from __future__ import annotations

from triage.simulate.deliver import Series, Timers, dispatch


def series(start: float, end: float, name: str = "A", inst: str = "0",
           route: str = "default") -> Series:
    return Series({"alertname": name, "service": "x", "instance": inst}, {},
                  [(start, end)], "noise:test", route)


def test_group_wait_then_group_interval_then_one_resolve() -> None:
    notes = dispatch([series(0, 700)], group_wait=30, group_interval=300, repeat_interval=300)
    assert [(n.at, n.firing, n.resolved) for n in notes] == [
        (30, [0], []), (330, [0], []), (630, [0], []), (930, [], [0])]


def test_default_repeat_interval_sends_only_changes() -> None:
    s = [series(0, 2000), series(400, 2000, inst="1")]
    notes = dispatch(s, group_wait=30, group_interval=300, repeat_interval=14400)
    # first at group_wait, then the flush after instance 1 joined, then the resolve
    assert [(n.at, n.firing, n.resolved) for n in notes] == [
        (30, [0], []), (630, [0, 1], []), (2130, [], [0, 1])]


def test_a_blip_shorter_than_group_wait_is_never_sent() -> None:
    assert dispatch([series(0, 20)], group_wait=30, group_interval=300) == []


def test_groups_by_alertname_and_service() -> None:
    notes = dispatch([series(0, 100, "A"), series(0, 100, "B")], group_wait=30)
    assert sorted(n.group for n in notes if n.firing) == [("A", "x"), ("B", "x")]


def test_fast_route_sees_flapping() -> None:
    flap = Series({"alertname": "F", "service": "x"}, {},
                  [(0, 45), (90, 135), (180, 225)], "noise:flapping", "fast")
    notes = dispatch([flap], group_wait=30, group_interval=300, repeat_interval=300,
                     routes={"fast": Timers(30, 30, 30)})
    assert [(n.at, "firing" if n.firing else "resolved") for n in notes] == [
        (30, "firing"), (60, "resolved"), (120, "firing"), (150, "resolved"),
        (210, "firing"), (240, "resolved")]


def test_muted_series_are_never_sent() -> None:
    assert dispatch([series(0, 600)], muted=lambda s: True) == []
