from __future__ import annotations

from collections.abc import Callable

import orjson

from triage.core.dedup import DedupPolicy, DedupStore, FlapPolicy
from triage.core.types import Alert, Deduplicated, Suppressed, Triaged

AlertFactory = Callable[..., Alert]


def test_first_firing_is_new_and_repeats_are_deduplicated(alert_factory: AlertFactory) -> None:
    store = DedupStore()
    first = store.observe(alert_factory(), now=1000.0)
    assert isinstance(first, Triaged) and first.change == "firing" and first.occurrence == 1
    repeat = store.observe(alert_factory(), now=1030.0)
    assert isinstance(repeat, Deduplicated) and repeat.count == 2
    st = store.get(alert_factory().fingerprint)
    assert st is not None and st.last_seen == 1030.0 and st.count == 2


def test_resolution_closes_and_refiring_is_a_new_occurrence(alert_factory: AlertFactory) -> None:
    store = DedupStore(flap=FlapPolicy(enabled=False))
    store.observe(alert_factory(), now=1000.0)
    resolved = store.observe(alert_factory(status="resolved", ends_at=1100.0), now=1100.0)
    assert isinstance(resolved, Triaged) and resolved.change == "resolved"
    again = store.observe(alert_factory(status="resolved", ends_at=1100.0), now=1110.0)
    assert isinstance(again, Deduplicated)
    refire = store.observe(alert_factory(starts_at=1200.0), now=1200.0)
    assert isinstance(refire, Triaged) and refire.change == "firing" and refire.occurrence == 2


def test_late_replay_of_an_older_occurrence_is_stale(alert_factory: AlertFactory) -> None:
    store = DedupStore()
    store.observe(alert_factory(starts_at=1000.0), now=1000.0)
    store.observe(alert_factory(status="resolved", ends_at=1100.0), now=1100.0)
    late = store.observe(alert_factory(starts_at=1000.0), now=1100.0)
    assert isinstance(late, Deduplicated) and late.stale


def test_resolve_for_unseen_alert_is_suppressed_not_dropped(alert_factory: AlertFactory) -> None:
    out = DedupStore().observe(alert_factory(status="resolved", ends_at=5.0), now=5.0)
    assert isinstance(out, Suppressed) and out.reason == "resolved_unseen"


def _flip(store: DedupStore, factory: AlertFactory, n: int, start: float = 0.0,
          step: float = 30.0) -> list[object]:
    out = []
    for k in range(n):
        t = start + step * k
        if k % 2 == 0:
            out.append(store.observe(factory(starts_at=t), now=t))
        else:
            out.append(store.observe(factory(status="resolved", ends_at=t), now=t))
    return out


def test_flapping_is_one_outcome_then_held(alert_factory: AlertFactory) -> None:
    store = DedupStore(flap=FlapPolicy(max_changes=4, window=600.0, stable_after=600.0))
    out = _flip(store, alert_factory, 10)
    kinds = [(o.kind, getattr(o, "change", getattr(o, "reason", None))) for o in out]
    # 1 new + 4 changes pass, the 5th change marks flapping, the rest are held.
    assert kinds[:5] == [("triaged", "firing"), ("triaged", "resolved"), ("triaged", "firing"),
                         ("triaged", "resolved"), ("triaged", "firing")]
    assert kinds[5] == ("triaged", "flapping")
    assert all(k == ("suppressed", "flapping") for k in kinds[6:])
    assert sum(1 for k in kinds if k[1] == "flapping" and k[0] == "triaged") == 1


def test_flapping_ends_with_one_stable_outcome(alert_factory: AlertFactory) -> None:
    store = DedupStore(flap=FlapPolicy(max_changes=4, window=600.0, stable_after=600.0))
    _flip(store, alert_factory, 9)  # ends firing at t=240
    assert store.sweep(now=700.0) == []  # changed 460 s ago: not stable yet
    settled = store.sweep(now=840.0)
    assert len(settled) == 1 and settled[0].change == "stable"
    assert settled[0].alert.status == "firing"
    assert store.sweep(now=900.0) == []


def test_resolve_timeout_for_continuous_sources(alert_factory: AlertFactory) -> None:
    store = DedupStore(DedupPolicy(resolve_timeout=300.0))
    store.observe(alert_factory(source="generic"), now=1000.0)
    store.observe(alert_factory(source="generic"), now=1060.0)
    assert store.sweep(now=1359.0) == []
    out = store.sweep(now=1360.0)
    assert [(o.change, o.reason) for o in out] == [("resolved", "resolve_timeout")]
    assert out[0].alert.ends_at == 1360.0


def test_webhook_sources_use_the_long_notification_timeout(alert_factory: AlertFactory) -> None:
    store = DedupStore(DedupPolicy(resolve_timeout=300.0, notification_timeout=86400.0))
    store.observe(alert_factory(source="alertmanager-webhook"), now=0.0)
    assert store.sweep(now=4 * 3600.0) == []  # Alertmanager's default repeat_interval
    assert [o.reason for o in store.sweep(now=86400.0)] == ["resolve_timeout"]


def test_valid_until_ends_at_moves_with_resends(alert_factory: AlertFactory) -> None:
    store = DedupStore()
    store.observe(alert_factory(source="alertmanager-api-v2", ends_at=1240.0), now=1000.0)
    store.observe(alert_factory(source="alertmanager-api-v2", ends_at=1300.0), now=1060.0)
    assert store.sweep(now=1250.0) == []
    assert [o.reason for o in store.sweep(now=1300.0)] == ["ends_at_passed"]
    # the same alert sent again with a later valid-until after the gap is back
    back = store.observe(alert_factory(source="alertmanager-api-v2", ends_at=1600.0), now=1400.0)
    assert isinstance(back, Triaged) and back.change == "firing"


def test_resolved_state_is_forgotten_after_retention(alert_factory: AlertFactory) -> None:
    store = DedupStore(DedupPolicy(retention=3600.0))
    for i in range(50):
        store.observe(alert_factory(instance=f"i{i}", starts_at=0.0), now=0.0)
        store.observe(alert_factory(instance=f"i{i}", status="resolved", ends_at=10.0), now=10.0)
    assert len(store) == 50
    store.sweep(now=3000.0)
    assert len(store) == 50
    store.sweep(now=3610.0)
    assert len(store) == 0


def test_state_round_trips_through_records(alert_factory: AlertFactory) -> None:
    store = DedupStore()
    store.observe(alert_factory(), now=1000.0)
    changed, removed = store.take_changes()
    assert list(changed) == [alert_factory().fingerprint] and not removed
    restored = DedupStore()
    restored.load(changed.items())
    assert isinstance(restored.observe(alert_factory(), now=1010.0), Deduplicated)
    assert store.take_changes() == ({}, set())


def test_labels_keep_their_order_and_the_record_format(alert_factory: AlertFactory) -> None:
    # kept compactly in memory, but a record is what state files already hold: a dict
    store = DedupStore(DedupPolicy(resolve_timeout=60.0))
    alert = alert_factory(severity="critical", instance="10.0.0.1:9100", source="generic")
    labels = dict(alert.labels)
    store.observe(alert, now=1000.0)
    st = store.get(alert.fingerprint)
    assert st is not None and list(st.labels.items()) == list(labels.items())
    record = st.to_record()
    assert record[10] == labels
    restored = DedupStore(DedupPolicy(resolve_timeout=60.0))
    restored.load([(alert.fingerprint, orjson.loads(orjson.dumps(record)))])
    (timed_out,) = restored.sweep(now=1060.0)  # rebuilt from the compact labels
    assert timed_out.alert.labels == labels and timed_out.reason == "resolve_timeout"
    # a resolve that carries only part of the labels is passed on with the ones it fired with
    partial = Alert(labels={"alertname": "HighErrorRate"}, annotations={}, status="resolved",
                    starts_at=1000.0, ends_at=1020.0, at=1020.0, source="pagerduty",
                    fingerprint="pd")
    store.observe(alert_factory(fingerprint="pd", severity="critical"), now=1000.0)
    out = store.observe(partial, now=1020.0)
    assert isinstance(out, Triaged) and out.alert.labels["severity"] == "critical"


def test_a_store_nobody_saves_does_not_remember_what_it_forgot(
        alert_factory: AlertFactory) -> None:
    # serve or run without --state: forgotten alerts must not pile up in memory
    store = DedupStore(DedupPolicy(retention=60.0))
    for i in range(100):
        store.observe(alert_factory(instance=f"i{i}", starts_at=0.0), now=0.0)
        store.observe(alert_factory(instance=f"i{i}", status="resolved", ends_at=10.0), now=10.0)
    store.sweep(now=100.0)
    assert len(store) == 0 and not store._removed and not store._dirty
    store.observe(alert_factory(instance="kept", starts_at=200.0), now=200.0)
    # saved for the first time: every state there is, nothing to delete
    changed, removed = store.take_changes()
    assert list(changed) == [alert_factory(instance="kept").fingerprint] and removed == set()
    store.observe(alert_factory(instance="next", starts_at=210.0), now=210.0)
    assert list(store.take_changes()[0]) == [alert_factory(instance="next").fingerprint]
