from __future__ import annotations

from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.conftest import webhook
from triage.core.fingerprint import labelset_fingerprint
from triage.core.matchers import parse_matchers
from triage.core.pipeline import IntakeLimits, Pipeline
from triage.core.silences import Silence, SilenceSet
from triage.core.thresholds import parse_thresholds
from triage.core.types import Deduplicated, Failed, Suppressed, Triaged

T = 1_800_000_000.0


def iso(t: float) -> str:
    from triage.core.timeutil import format_timestamp

    return format_timestamp(t) or ""


def am(labels: dict[str, str], start: float, status: str = "firing",
       end: float | None = None) -> dict[str, Any]:
    return {"status": status, "labels": labels, "annotations": {}, "startsAt": iso(start),
            "endsAt": iso(end) if end else "0001-01-01T00:00:00Z"}


def reconciled(p: Pipeline) -> bool:
    c = p.counts
    return c["in"] == c["triaged"] + c["deduplicated"] + c["suppressed"] + c["failed"]


CART = {"alertname": "HighErrorRate", "service": "cartservice", "instance": "c-0"}


def test_webhook_alerts_become_one_outcome_each() -> None:
    p = Pipeline()
    body = webhook(*(am({**CART, "instance": f"c-{i}"}, T) for i in range(3)))
    out = p.process(orjson.dumps(body))
    assert [o.kind for o in out] == ["triaged"] * 3
    assert all(isinstance(o, Triaged) and o.change == "firing" for o in out)
    assert p.counts["in"] == 3 and reconciled(p)


def test_ha_peer_duplicate_is_one_alert() -> None:
    p = Pipeline()
    body = webhook(am(CART, T))
    first = p.process(orjson.dumps(body))
    peer = p.process(orjson.dumps(dict(body, receiver="peer-2")))
    assert isinstance(first[0], Triaged) and isinstance(peer[0], Deduplicated)
    assert first[0].alert.fingerprint == labelset_fingerprint(CART)


def test_payload_fingerprint_is_not_trusted() -> None:
    alert = dict(am(CART, T), fingerprint="0000000000000000")
    out = Pipeline().process(orjson.dumps(webhook(alert)))
    assert isinstance(out[0], Triaged)
    assert out[0].alert.fingerprint == labelset_fingerprint(CART)
    assert out[0].alert.source_fingerprint == "0000000000000000"


def test_ends_at_in_the_past_resolves() -> None:
    p = Pipeline()
    p.process(orjson.dumps([{"labels": CART, "startsAt": iso(T), "endsAt": iso(T + 240)}]))
    out = p.process(orjson.dumps([{"labels": CART, "startsAt": iso(T), "endsAt": iso(T + 60)}]),
                    now=T + 120)
    assert isinstance(out[0], Triaged) and out[0].change == "resolved"


def test_bad_input_is_a_failure_naming_the_problem_with_raw_payload() -> None:
    p = Pipeline(limits=IntakeLimits(max_payload_bytes=200))
    cases = {
        b"not json at all": ("DecodeError", "payload"),
        b'{"some": "thing"}': ("UnknownFormatError", ""),
        b"x" * 201: ("OversizeError", "payload"),
    }
    for raw, (error, field) in cases.items():
        (out,) = p.process(raw)
        assert isinstance(out, Failed)
        assert (out.error, out.field) == (error, field)
        assert out.raw == raw.decode()
    assert p.counts["failed"] == 3 and reconciled(p)


def test_one_bad_alert_does_not_sink_its_payload() -> None:
    bad = {"status": "firing", "annotations": {}, "startsAt": iso(T)}  # no labels
    out = Pipeline().process(orjson.dumps(webhook(am(CART, T), bad)))
    assert [o.kind for o in out] == ["triaged", "failed"]
    assert isinstance(out[1], Failed) and out[1].field == "alerts[1].labels"
    assert orjson.loads(out[1].raw) == bad


def _silences(*specs: tuple[str, str, str]) -> SilenceSet:
    return SilenceSet(Silence(i, parse_matchers(m), T - 10, T + 3600, kind=k)  # type: ignore[arg-type]
                      for i, m, k in specs)


def test_silence_suppresses_with_its_id_and_is_counted() -> None:
    p = Pipeline(silences=_silences(("s-1", 'service="cartservice"', "silence")))
    (out,) = p.process(orjson.dumps(webhook(am(CART, T))))
    assert isinstance(out, Suppressed) and out.reason == "silence" and out.by == "s-1"
    assert reconciled(p)


def test_maintenance_window_reason() -> None:
    p = Pipeline(silences=_silences(("patching", 'service=~"cart.*"', "maintenance")))
    (out,) = p.process(orjson.dumps(webhook(am(CART, T))))
    assert isinstance(out, Suppressed) and out.reason == "maintenance" and out.by == "patching"


def test_resolution_of_a_passed_alert_gets_through_a_later_silence() -> None:
    p = Pipeline()
    p.process(orjson.dumps(webhook(am(CART, T))))
    p.silences.add(Silence("late", parse_matchers('service="cartservice"'), T, T + 3600))
    (out,) = p.process(orjson.dumps(webhook(am(CART, T, "resolved", T + 60))))
    assert isinstance(out, Triaged) and out.change == "resolved"


def test_silence_on_the_input_is_applied() -> None:
    p = Pipeline()
    assert p.process(orjson.dumps({
        "matchers": [{"name": "alertname", "value": "HighErrorRate", "isRegex": False}],
        "startsAt": iso(T - 5), "endsAt": iso(T + 600), "createdBy": "alice",
        "comment": "known"})) == []
    (out,) = p.process(orjson.dumps(webhook(am(CART, T))))
    assert isinstance(out, Suppressed) and out.reason == "silence"
    assert p.counts["silences_added"] == 1


def test_threshold_gate_suppresses_values_that_do_not_cross() -> None:
    th = parse_thresholds({"version": 1, "rules": [
        {"match": {"alertname": "Disk"}, "threshold": 0.9, "direction": "above"}]})
    p = Pipeline(thresholds=th)
    low = p.process(b'{"alertname": "Disk", "instance": "a", "value": 0.7, "at": 1800000000}')
    high = p.process(b'{"alertname": "Disk", "instance": "b", "value": 0.95, "at": 1800000000}')
    assert isinstance(low[0], Suppressed) and low[0].reason == "threshold"
    assert "0.9" in low[0].detail and low[0].by is not None
    assert isinstance(high[0], Triaged)


def test_pending_prometheus_alerts_never_page() -> None:
    body = {"status": "success", "data": {"alerts": [
        {"labels": CART, "annotations": {}, "state": "pending", "activeAt": iso(T),
         "value": "1e+00"}]}}
    (out,) = Pipeline().process(orjson.dumps(body))
    assert isinstance(out, Suppressed) and out.reason == "pending"


def test_envelope_sets_the_clock() -> None:
    p = Pipeline()
    p.process(orjson.dumps({"received_at": iso(T + 500), "payload": webhook(am(CART, T))}))
    assert p.watermark == T + 500


def test_clock_never_goes_backwards() -> None:
    p = Pipeline()
    p.process(orjson.dumps(webhook(am(CART, T + 100))))
    p.process(orjson.dumps(webhook(am({**CART, "instance": "x"}, T))))
    assert p.watermark == T + 100


def test_timeouts_are_emitted_when_event_time_passes() -> None:
    p = Pipeline()
    p.process(b'{"alertname": "Job", "at": 1800000000}')
    out = p.process(b'{"alertname": "Other", "at": 1800000400}')
    changes = [(o.alert.labels["alertname"], getattr(o, "change", None)) for o in out]
    assert ("Job", "resolved") in changes and ("Other", "firing") in changes
    assert p.counts["swept"] == 1 and reconciled(p)


def _storm_lines(draw_events: list[tuple[int, str, int]]) -> list[bytes]:
    lines = []
    for idx, status, minute in draw_events:
        labels = {"alertname": f"A{idx % 3}", "instance": f"i{idx}"}
        start = T + 60.0 * (minute // 2) * 2
        if status == "firing":
            alert = am(labels, start)
        else:
            alert = am(labels, start, "resolved", start + 60.0 * (1 + minute % 2))
        lines.append(orjson.dumps({"received_at": iso(T + 60.0 * minute),
                                   "payload": webhook(alert)}))
    return lines


events = st.lists(st.tuples(st.integers(0, 5), st.sampled_from(["firing", "resolved"]),
                            st.integers(0, 40)), max_size=60).map(
    lambda evs: sorted(evs, key=lambda e: e[2]))


@settings(max_examples=150, deadline=None)
@given(events)
def test_dedup_is_idempotent_under_replay(evs: list[tuple[int, str, int]]) -> None:
    lines = _storm_lines(evs)
    p = Pipeline()
    for line in lines:
        p.process(line)
    replay = [o for line in lines for o in p.process(line)]
    assert not [o for o in replay if isinstance(o, Triaged)]
    assert reconciled(p)


@settings(max_examples=100, deadline=None)
@given(events)
def test_replays_are_deterministic(evs: list[tuple[int, str, int]]) -> None:
    lines = _storm_lines(evs)

    def run() -> list[tuple[str, str, str]]:
        p = Pipeline()
        return [(o.kind, getattr(o, "change", ""), getattr(o, "alert", None).fingerprint)  # type: ignore[union-attr]
                for line in lines for o in p.process(line)]

    assert run() == run()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300) | st.text(max_size=300).map(str.encode))
def test_no_exception_escapes_process(raw: bytes) -> None:
    p = Pipeline()
    out = p.process(raw)
    assert isinstance(out, list)
    assert reconciled(p)


def _for_rule(for_: str = "5m") -> Pipeline:
    th = parse_thresholds({"version": 1, "rules": [
        {"match": {"alertname": "HighErrorRate"}, "threshold": 0, "for": for_}]})
    return Pipeline(thresholds=th)


def test_tuned_for_holds_then_pages_without_a_repeat() -> None:
    p = _for_rule("5m")
    (first,) = p.process(orjson.dumps(webhook(am(CART, T))), now=T)
    assert isinstance(first, Suppressed) and first.reason == "held"
    assert "shorter than tuned for=5m" in first.detail
    (repeat,) = p.process(orjson.dumps(webhook(am(CART, T))), now=T + 60)
    assert isinstance(repeat, Deduplicated)
    assert p.tick(T + 299) == []
    (released,) = p.tick(T + 300)
    assert isinstance(released, Triaged) and released.change == "firing"
    assert released.occurrence == 1 and released.alert.fingerprint == first.alert.fingerprint
    assert p.tick(T + 900) == []
    assert reconciled(p)


def test_held_alert_resolved_before_for_never_pages() -> None:
    p = _for_rule("5m")
    p.process(orjson.dumps(webhook(am(CART, T))), now=T)
    (res,) = p.process(orjson.dumps(webhook(am(CART, T, "resolved", T + 120))), now=T + 120)
    assert isinstance(res, Suppressed) and res.reason == "held"
    assert [o for o in p.tick(T + 3600) if isinstance(o, Triaged)] == []


def test_alert_older_than_for_passes_at_once() -> None:
    p = _for_rule("5m")
    (out,) = p.process(orjson.dumps(webhook(am(CART, T - 600))), now=T)
    assert isinstance(out, Triaged) and out.change == "firing"


def test_noise_scorer_suppresses_above_threshold_and_records_score() -> None:
    seen: list[object] = []

    def scorer(alert: object, state: object, now: float) -> float:
        seen.append(state)
        return 0.99 if alert.labels["alertname"] == "Noisy" else 0.2  # type: ignore[attr-defined]

    p = Pipeline(noise_scorer=scorer, noise_threshold=0.9)
    (noisy,) = p.process(b'{"alertname": "Noisy", "at": 1800000000}')
    (real,) = p.process(b'{"alertname": "Real", "at": 1800000000}')
    assert isinstance(noisy, Suppressed) and noisy.reason == "noise"
    assert noisy.noise_score == 0.99 and "0.99" in noisy.detail
    assert isinstance(real, Triaged)
    p.process(b'{"alertname": "Real", "at": 1800000030}')
    assert seen[:2] == [None, None] and seen[2] is not None  # the repeat sees its dedup state


def test_api_v2_alert_without_starts_at_starts_when_received() -> None:
    """Alertmanager takes "now" for an API v2 alert without ``startsAt``; so does triage,
    with the envelope's receive time, instead of refusing it."""
    body = [{"labels": CART}, {"labels": {**CART, "instance": "c-1"}, "startsAt": iso(T - 60)}]
    envelope = {"received_at": iso(T), "payload": body}
    first, second = Pipeline().process(orjson.dumps(envelope))
    assert isinstance(first, Triaged) and first.alert.starts_at == T
    assert isinstance(second, Triaged) and second.alert.starts_at == T - 60


def test_a_spawned_pipeline_carries_every_setting_and_none_of_the_state() -> None:
    """A partitioned runtime builds one pipeline per partition from a template: every
    constructor setting must come along (the partitions once lost the wall clock, so an
    alert stamped in 2099 moved a partition's clock there), the state must not."""
    import inspect
    import time

    from triage.core.dedup import DedupPolicy, DedupStore
    from triage.core.fingerprint import Fingerprinter
    from triage.core.thresholds import Thresholds

    template = Pipeline(fingerprinter=Fingerprinter(), thresholds=Thresholds([]),
                        dedup=DedupStore(DedupPolicy(resolve_timeout=42.0)),
                        noise_threshold=0.5, wall_clock=time.time)
    template.trust_stream_silences = False
    template.process(b'{"alertname": "A", "at": 5}')
    twin = template.spawn()
    for name in inspect.signature(Pipeline.__init__).parameters:
        if name in ("self", "on_change", "silences", "dedup"):
            continue
        assert getattr(twin, name) is getattr(template, name), name
    assert twin.dedup.policy is template.dedup.policy and len(twin.dedup) == 0
    assert twin.silences is not template.silences
    assert twin.trust_stream_silences is False
    assert (twin.watermark, sum(twin.counts.values())) == (0.0, 0)
