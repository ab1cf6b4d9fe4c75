"""Alert fingerprints, identical to Prometheus/Alertmanager's ``model.LabelSet.Fingerprint``.

FNV-1a 64 over the label names sorted, each name and value followed by the 0xFF separator
byte, printed as 16 hex digits. The same label set therefore gets the same fingerprint here,
in Alertmanager and in Grafana, whatever the order the labels arrive in or who delivered them.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

from fnv_c import fnv1a_64


def labelset_fingerprint(labels: Mapping[str, str]) -> str:
    """Return the Alertmanager fingerprint of a label set.

    >>> labelset_fingerprint({})
    'cbf29ce484222325'
    >>> labelset_fingerprint({"b": "2", "a": "1"}) == labelset_fingerprint({"a": "1", "b": "2"})
    True
    """
    if not labels:
        return "cbf29ce484222325"  # FNV-1a 64 offset basis: Prometheus's empty-set signature
    data = bytearray()
    for name in sorted(labels):
        data += name.encode()
        data.append(0xFF)  # model.SeparatorByte
        data += labels[name].encode()
        data.append(0xFF)
    return f"{fnv1a_64(bytes(data)):016x}"


@dataclass(frozen=True, slots=True)
class FingerprintPolicy:
    """Which labels identify an alert. ``include`` (if set) keeps only those labels;
    ``exclude`` drops labels such as an HA Prometheus pair's ``replica`` label."""

    include: frozenset[str] | None = None
    exclude: frozenset[str] = frozenset()

    def identifying(self, labels: Mapping[str, str]) -> Mapping[str, str]:
        """Return the identifying subset of ``labels``."""
        if self.include is None and not self.exclude:
            return labels
        return {
            k: v
            for k, v in labels.items()
            if (self.include is None or k in self.include) and k not in self.exclude
        }


class Fingerprinter:
    """Fingerprints alerts per source policy.

    Not memoised: hashing a label set in C costs about what building a cache key would, and a
    cache would hold a copy of every label set (measured in benchmarks/bench_intake.py).

    >>> up = {"alertname": "Up"}
    >>> Fingerprinter().fingerprint("alertmanager-webhook", up) == labelset_fingerprint(up)
    True
    """

    def __init__(
        self,
        policies: Mapping[str, FingerprintPolicy] | None = None,
        default: FingerprintPolicy | None = None,
    ) -> None:
        self._policies = dict(policies or {})
        self._default = default or FingerprintPolicy()
        self._plain = not self._default.exclude and self._default.include is None

    def policy(self, source: str) -> FingerprintPolicy:
        """The policy for ``source`` (a normalizer name), or the default."""
        return self._policies.get(source, self._default)

    def fingerprint(self, source: str, labels: Mapping[str, str]) -> str:
        """Fingerprint of the identifying labels of an alert from ``source``."""
        if self._plain and source not in self._policies:
            return labelset_fingerprint(labels)
        return labelset_fingerprint(self.policy(source).identifying(labels))


def identifying_names(labels: Collection[str], policy: FingerprintPolicy) -> list[str]:
    """Sorted names of the labels ``policy`` treats as identifying."""
    return sorted(n for n in labels
                  if (policy.include is None or n in policy.include) and n not in policy.exclude)
