from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from triage.core.fingerprint import Fingerprinter, FingerprintPolicy, labelset_fingerprint

label_names = st.text(alphabet=st.characters(codec="utf-8", exclude_characters="\x00"),
                      min_size=1, max_size=12)
label_values = st.text(max_size=30)
labelsets = st.dictionaries(label_names, label_values, max_size=8)


def test_matches_prometheus_common_test_vectors() -> None:
    # prometheus/common model/fingerprinting tests (TestMetricToFingerprint).
    assert int(labelset_fingerprint({}), 16) == 14695981039346656037
    fp = labelset_fingerprint({"name": "garland, briggs", "fear": "love is not enough"})
    assert int(fp, 16) == 5799056148416392346


def test_format_is_16_hex_digits() -> None:
    fp = labelset_fingerprint({"alertname": "Up", "job": "node"})
    assert len(fp) == 16 and int(fp, 16) >= 0


def test_label_value_with_separator_char_is_distinct() -> None:
    # U+00FF encodes to c3 bf in UTF-8, so it can never collide with the 0xFF separator.
    assert labelset_fingerprint({"a": "ÿ"}) != labelset_fingerprint({"a": ""})


@given(labelsets, st.randoms())
def test_invariant_under_label_order(labels: dict[str, str], rnd: object) -> None:
    items = list(labels.items())
    rnd.shuffle(items)  # type: ignore[attr-defined]
    assert labelset_fingerprint(dict(items)) == labelset_fingerprint(labels)


@given(labelsets, labelsets)
def test_different_label_sets_differ(a: dict[str, str], b: dict[str, str]) -> None:
    if a != b:
        assert labelset_fingerprint(a) != labelset_fingerprint(b)


def test_policy_excludes_replica_label_so_ha_pairs_are_one_alert() -> None:
    fpr = Fingerprinter(default=FingerprintPolicy(exclude=frozenset({"replica"})))
    a = fpr.fingerprint("alertmanager-api-v2", {"alertname": "Up", "replica": "prom-0"})
    b = fpr.fingerprint("alertmanager-api-v2", {"alertname": "Up", "replica": "prom-1"})
    assert a == b == labelset_fingerprint({"alertname": "Up"})


def test_policy_include_is_per_source() -> None:
    only_key = FingerprintPolicy(include=frozenset({"dedup_key"}))
    fpr = Fingerprinter({"pagerduty-events-v2": only_key})
    trigger = fpr.fingerprint("pagerduty-events-v2", {"dedup_key": "k", "alertname": "X"})
    resolve = fpr.fingerprint("pagerduty-events-v2", {"dedup_key": "k"})
    assert trigger == resolve
    # other sources keep the whole label set
    assert fpr.fingerprint("generic", {"dedup_key": "k", "alertname": "X"}) != trigger


def test_fingerprinter_equals_plain_labelset_fingerprint() -> None:
    fpr = Fingerprinter()
    labels = {"alertname": "A", "instance": "i"}
    first = fpr.fingerprint("generic", labels)
    assert fpr.fingerprint("generic", dict(reversed(list(labels.items())))) == first
    assert first == labelset_fingerprint(labels)
