"""keep_firing_for: a tuned rule's resolutions are held, so an alert flapping around its
threshold pages once (Prometheus' rule field of the same name, applied by the dedup stage)."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import make_alert
from triage.core.dedup import DedupStore, FlapPolicy
from triage.core.pipeline import Pipeline
from triage.core.thresholds import ThresholdRule, Thresholds, dump_thresholds, parse_thresholds
from triage.core.types import Alert, Deduplicated, Suppressed, Triaged

AlertFactory = Callable[..., Alert]
HOUR = 3600.0


def test_refiring_within_keep_continues_the_page(alert_factory: AlertFactory) -> None:
    store = DedupStore(flap=FlapPolicy(enabled=False))
    first = store.observe(alert_factory(starts_at=1000.0), now=1000.0, keep=HOUR)
    assert isinstance(first, Triaged) and first.change == "firing"
    gone = store.observe(alert_factory(status="resolved", ends_at=1300.0), now=1300.0)
    assert isinstance(gone, Suppressed) and gone.reason == "kept"
    back = store.observe(alert_factory(starts_at=2000.0), now=2000.0, keep=HOUR)
    assert isinstance(back, Deduplicated) and not back.stale  # the same page goes on
    assert store.sweep(2000.0 + 2 * HOUR) == []  # still firing: nothing to resolve
    st = store.get(alert_factory().fingerprint)
    assert st is not None and st.occurrence == 1 and st.status == "firing"


def test_resolution_passes_once_keep_elapses_with_its_real_time(
        alert_factory: AlertFactory) -> None:
    store = DedupStore(flap=FlapPolicy(enabled=False))
    store.observe(alert_factory(starts_at=1000.0), now=1000.0, keep=HOUR)
    store.observe(alert_factory(status="resolved", ends_at=1300.0), now=1300.0)
    assert store.sweep(1300.0 + HOUR - 1) == []
    (resolved,) = store.sweep(1300.0 + HOUR)
    assert resolved.change == "resolved" and resolved.alert.ends_at == 1300.0
    assert "keep_firing_for 1h elapsed" in resolved.reason
    # firing after that is a new occurrence (a new page)
    again = store.observe(alert_factory(starts_at=9000.0), now=9000.0, keep=HOUR)
    assert isinstance(again, Triaged) and again.change == "firing"


def test_a_late_copy_of_the_old_firing_does_not_cancel_the_resolution(
        alert_factory: AlertFactory) -> None:
    store = DedupStore(flap=FlapPolicy(enabled=False))
    store.observe(alert_factory(starts_at=1000.0), now=1000.0, keep=HOUR)
    store.observe(alert_factory(status="resolved", ends_at=1300.0), now=1300.0)
    late = store.observe(alert_factory(starts_at=1000.0), now=1400.0, keep=HOUR)
    assert isinstance(late, Deduplicated) and late.stale
    assert [t.change for t in store.sweep(1300.0 + HOUR)] == ["resolved"]


def test_a_timed_out_alert_is_kept_too(alert_factory: AlertFactory) -> None:
    store = DedupStore(flap=FlapPolicy(enabled=False))
    # a continuous source: resolves 300 s after its last repeat
    store.observe(alert_factory(starts_at=1000.0, source="generic"), now=1000.0, keep=HOUR)
    assert store.sweep(1300.0) == []  # timed out, kept
    (resolved,) = store.sweep(1300.0 + HOUR)
    assert resolved.change == "resolved" and resolved.alert.ends_at == 1300.0


def test_kept_state_survives_a_restart_and_old_records_load(
        alert_factory: AlertFactory) -> None:
    store = DedupStore(flap=FlapPolicy(enabled=False))
    store.observe(alert_factory(starts_at=1000.0), now=1000.0, keep=HOUR)
    store.observe(alert_factory(status="resolved", ends_at=1300.0), now=1300.0)
    changed, _ = store.take_changes()
    restored = DedupStore(flap=FlapPolicy(enabled=False))
    restored.load(changed.items())
    back = restored.observe(alert_factory(starts_at=2000.0), now=2000.0, keep=HOUR)
    assert isinstance(back, Deduplicated)
    # a record written before keep_firing_for existed (14 fields) loads without it
    old = {fp: rec[:14] for fp, rec in changed.items()}
    legacy = DedupStore(flap=FlapPolicy(enabled=False))
    legacy.load(old.items())
    st = legacy.get(alert_factory().fingerprint)
    assert st is not None and st.keep == 0.0 and st.kept_until is None


def test_a_flapping_rule_pages_once_through_the_pipeline() -> None:
    rule = ThresholdRule({"alertname": "QueueBacklog"}, None, keep_firing_for=HOUR)
    thresholds = parse_thresholds(dump_thresholds(Thresholds(rules=(rule,))))
    assert thresholds.rules == (rule,)
    pipeline = Pipeline(thresholds=thresholds)
    kinds = []
    for i in range(6):  # fires and resolves every 20 minutes, for 2 hours
        start = 1_790_000_000 + i * 1200
        base = {"alertname": "QueueBacklog", "service": "orders"}
        kinds += [(o.kind, getattr(o, "change", getattr(o, "reason", "")))
                  for o in pipeline.process({**base, "startsAt": start, "at": start})]
        kinds += [(o.kind, getattr(o, "change", getattr(o, "reason", "")))
                  for o in pipeline.process({**base, "status": "resolved",
                                             "endsAt": start + 600, "at": start + 600})]
    assert kinds.count(("triaged", "firing")) == 1
    assert ("triaged", "resolved") not in kinds
    out = pipeline.process({"alertname": "Other", "at": 1_790_000_000 + 6 * 1200 + 2 * HOUR})
    assert any(getattr(o, "change", "") == "resolved" for o in out)
    plain = Pipeline()  # without the rule: a page at each firing the flap detector lets by
    firing = 0
    for i in range(6):
        start = 1_790_000_000 + i * 1200
        base = {"alertname": "QueueBacklog", "service": "orders"}
        firing += sum(getattr(o, "change", "") == "firing"
                      for o in plain.process({**base, "startsAt": start, "at": start}))
        plain.process({**base, "status": "resolved", "endsAt": start + 600, "at": start + 600})
    assert firing > 1


def test_the_file_says_version_1_1_when_it_uses_keep_firing_for() -> None:
    plain = Thresholds(rules=(ThresholdRule({"alertname": "X"}, 1.0),))
    kept = Thresholds(rules=(ThresholdRule({"alertname": "X"}, 1.0, keep_firing_for=600.0),))
    assert dump_thresholds(plain)["version"] == 1
    doc = dump_thresholds(kept)
    assert doc["version"] == "1.1" and doc["rules"][0]["keep_firing_for"] == "10m"
    assert parse_thresholds(doc) == kept


def test_threshold_z_gates_in_the_series_own_scale() -> None:
    rule = ThresholdRule({"alertname": "QueueBacklog"}, None, threshold_z=3.5)
    t = parse_thresholds(dump_thresholds(Thresholds(rules=(rule,))))
    assert t.rules == (rule,)

    def alert(value: float, **annotations: str) -> Alert:
        return Alert({"alertname": "QueueBacklog", "service": "orders"}, annotations,
                     "firing", 0.0, None, 0.0, "generic", value=value)

    hit = t.check(alert(130.0, baseline="100", scale="10"), now=0.0)  # z = 3
    assert hit is not None and "z 3 (value 130, baseline 100, scale 10) below tuned " \
                               "threshold_z 3.5" in hit[1]
    assert t.check(alert(140.0, baseline="100", scale="10"), now=0.0) is None  # z = 4
    # a busy series and a quiet one, one tuned value
    assert t.check(alert(5.0, baseline="1", scale="1"), now=0.0) is None
    # no baseline on the alert (or a useless one): never suppressed on a number it lacks
    assert t.check(alert(101.0), now=0.0) is None
    assert t.check(alert(101.0, baseline="100", scale="0"), now=0.0) is None
    assert t.check(alert(101.0, baseline="n/a", scale="1"), now=0.0) is None


@settings(max_examples=200, deadline=None)
@given(keep=st.sampled_from([0.0, 300.0, 3600.0]),
       steps=st.lists(st.tuples(st.integers(1, 7200), st.integers(1, 7200)), min_size=1,
                      max_size=12))
def test_pages_are_the_episodes_merged_by_keep_firing_for(
        keep: float, steps: list[tuple[int, int]]) -> None:
    """Model check: an alert firing for ``d`` s, then quiet for ``g`` s, again and again,
    pages once per run of firings whose quiet gaps are all shorter than ``keep``, and each
    page resolves once, at the time its last firing really ended."""
    store = DedupStore(flap=FlapPolicy(enabled=False))
    t = 1_790_000_000.0
    out: list[Triaged] = []
    episodes: list[float] = []  # when each expected page's last firing ended
    last_end: float | None = None
    for firing, quiet in steps:
        if last_end is None or t - last_end >= keep:
            episodes.append(0.0)
        out += store.sweep(t)
        fired = store.observe(make_alert(starts_at=t), now=t, keep=keep or None)
        out += [fired] if isinstance(fired, Triaged) else []
        end = t + firing
        out += store.sweep(end)
        gone = store.observe(make_alert(status="resolved", ends_at=end), now=end)
        out += [gone] if isinstance(gone, Triaged) else []
        episodes[-1] = last_end = end
        t = end + quiet
    out += store.sweep(t + keep + 1)
    assert [o.change for o in out] == ["firing", "resolved"] * len(episodes)
    assert [o.alert.ends_at for o in out if o.change == "resolved"] == episodes
