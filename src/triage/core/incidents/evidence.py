"""What one alert says about a failure: its kind, its severity level, and whether it is
evidence strong enough to open, extend, or page an incident.

**Kinds** are read from the alert name (``alertname``), split into words
(``KubernetesPodCrashLooping`` → kubernetes pod crash looping), against a small vocabulary
drawn from the way alert rules are named in the wild (the 950 rules of
awesome-prometheus-alerts, kube-prometheus, Envoy and Istio mixins):

============== ====================================================== ==========================
kind           words                                                  what it says
============== ====================================================== ==========================
``dependency`` upstream, backend, no healthy, circuit breaker,        my dependency is failing
               refused, dependency                                    (the cause is below me)
``crash``      down, crash, OOM, killed, unavailable, unreachable,    I have failed
               not ready, unhealthy, failed, restarts, evicted, panic
``saturation`` full, exhausted, out of, too many, rejected, deadlock  I cannot take more
``resource``   CPU, memory, disk, GC, throttling, clock skew, swap,   a resource trend, usually
               inodes, file descriptors, will fill, predicted ...     background: a ticket
``timeout``    timeout, timed out, deadline                           calls are timing out
``errors``     error, errors, 5xx, failures, failing                  requests are failing
``latency``    latency, slow, response time, p99                      requests are slow
``other``      anything else                                          no opinion
============== ====================================================== ==========================

The first three and ``saturation`` are *cause-type* (they point at the service itself, or for
``dependency`` at what it calls); ``latency``, ``errors`` and ``timeout`` are *symptom-type*.
A config may add patterns per kind (``correlation.kinds``) or a sender may say it outright with
a ``signal`` label (``signal: crash``).

**Strength.** An alert is *page-worthy* evidence when its severity is critical or error, or
warning of any kind but ``resource``, or when it carries no severity at all (many senders do
not set one; a missing severity is not a low one). Info, explicit ``none`` and
resource-trend warnings are *weak*: they may sit in an incident as context, but they never
open one, never keep one alive, never bridge two groups and never page on their own. This is
the SRE rule of paging on symptoms and failures, not on resource trends.

>>> classify_kind("KubernetesPodCrashLooping"), classify_kind("EnvoyClusterUpstream5xxErrors")
('crash', 'dependency')
>>> classify_kind("HostDiskWillFillIn24Hours"), classify_kind("IstioHighRequestLatency")
('resource', 'latency')
>>> page_worthy("resource", severity_level("warning")), page_worthy("latency", WARNING)
(False, True)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from itertools import pairwise
from typing import Final

KINDS: Final = ("dependency", "crash", "saturation", "resource", "timeout", "errors", "latency",
                "other")
"""Every kind, in the order they are tried."""
CAUSE_KINDS: Final = frozenset({"crash", "saturation", "dependency"})
SYMPTOM_KINDS: Final = frozenset({"latency", "errors", "timeout"})
SELF_KINDS: Final = frozenset({"crash", "saturation"})
"""Kinds that say the failure is on the alerting service itself."""
DOWNWARD_KINDS: Final = frozenset({"dependency", "timeout"})
"""Kinds that say the failure is below the alerting service, in what it calls."""

# Severity levels, worst first. UNKNOWN (no severity label, or one nobody maps) is treated as
# page-worthy: a sender that sets no severity still wants its alerts seen.
CRITICAL, ERROR, WARNING, UNKNOWN, INFO, NONE = 0, 1, 2, 3, 4, 5
SEVERITY_NAMES: Final = ("critical", "error", "warning", "unknown", "info", "none")
_SEVERITY_ALIASES: Final = {
    "critical": CRITICAL, "crit": CRITICAL, "fatal": CRITICAL, "emergency": CRITICAL,
    "alert": CRITICAL, "page": CRITICAL, "p1": CRITICAL, "sev1": CRITICAL, "high": CRITICAL,
    "major": CRITICAL, "disaster": CRITICAL,
    "error": ERROR, "err": ERROR, "p2": ERROR, "sev2": ERROR,
    "warning": WARNING, "warn": WARNING, "minor": WARNING, "medium": WARNING, "p3": WARNING,
    "sev3": WARNING, "average": WARNING,
    "info": INFO, "informational": INFO, "notice": INFO, "low": INFO, "debug": INFO,
    "p4": INFO, "p5": INFO, "sev4": INFO, "sev5": INFO, "ok": INFO,
    "none": NONE,
}

# Words (lower case, after splitting the name) per kind. Multi-word phrases match on the
# joined words ("no healthy", "will fill"). Order of the table is the order of the checks.
_VOCABULARY: Final[tuple[tuple[str, tuple[str, ...]], ...]] = (
    ("dependency", ("upstream", "upstreams", "backend", "backends", "no healthy", "circuit",
                    "breaker", "refused", "dependency", "dependencies", "unreachable upstream",
                    "connection failures", "connect failures")),
    # predictions and trends are resource kinds even when they name a saturation word
    ("resource", ("will fill", "filling", "fill up", "predict", "predicted", "soon",
                  "approaching", "nearly", "will run out", "expiring", "expiry", "expires")),
    ("crash", ("down", "crash", "crashing", "crashloop", "crashlooping", "crashed", "oom",
               "oomkilled", "oomkiller", "killed", "kill", "unavailable", "unreachable",
               "not ready", "notready", "unhealthy", "not healthy", "failed", "dead",
               "restart", "restarts", "restarted", "restarting", "evicted", "panic", "panics",
               "absent", "missing", "lost", "broken", "no leader", "split brain", "mismatch",
               "not live", "not running", "offline", "stopped", "terminated", "outage")),
    ("saturation", ("full", "exhausted", "exhaustion", "out of", "too many", "rejected",
                    "rejecting", "saturated", "saturation", "deadlock", "deadlocks",
                    "overflow", "overloaded", "limit reached", "max connections", "blocked",
                    "queue full", "no space")),
    ("resource", ("cpu", "memory", "mem", "heap", "disk", "disks", "filesystem", "inode",
                  "inodes", "file descriptors", "fd", "fds", "swap", "gc", "garbage",
                  "throttling", "throttled", "throttle", "clock", "skew", "ntp", "load",
                  "iowait", "context switching", "goroutine", "goroutines", "thread",
                  "threads", "temperature", "entropy", "certificate", "cert", "usage",
                  "utilization", "utilisation", "capacity", "pressure", "io")),
    ("timeout", ("timeout", "timeouts", "timed out", "deadline")),
    ("errors", ("error", "errors", "5xx", "http5xx", "4xx", "http4xx", "failures", "failing",
                "failure", "fail", "fails", "exception", "exceptions")),
    ("latency", ("latency", "slow", "response time", "p99", "p95", "percentile", "duration",
                 "lag", "delay", "delayed")),
)
_WORD: Final = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+[a-z]*")


def words_of(name: str) -> tuple[str, ...]:
    """The lower-case words of an alert name.

    >>> words_of("HostOomKillDetected"), words_of("http_5xx_rate"), words_of("NoHealthyUpstream")
    (('host', 'oom', 'kill', 'detected'), ('http', '5xx', 'rate'), ('no', 'healthy', 'upstream'))
    """
    return tuple(w.lower() for w in _WORD.findall(name))


def _phrases(words: Sequence[str]) -> set[str]:
    out = set(words)
    out.update(f"{a} {b}" for a, b in pairwise(words))
    out.update(f"{a} {b} {c}" for a, b, c in zip(words, words[1:], words[2:], strict=False))
    out.add("".join(words))
    return out


@lru_cache(maxsize=1 << 14)
def classify_kind(name: str) -> str:
    """The kind of an alert from its name (``other`` when no word is known).

    >>> classify_kind("ContainerOomKiller"), classify_kind("RedisTooManyConnections")
    ('crash', 'saturation')
    >>> classify_kind("EnvoyHighClusterUpstreamRequestTimeoutRate"), classify_kind("alarm-07")
    ('dependency', 'other')
    >>> classify_kind("GoGcDurationHigh"), classify_kind("HighErrorRate")
    ('resource', 'errors')
    """
    phrases = _phrases(words_of(name))
    for kind, vocabulary in _VOCABULARY:
        if not phrases.isdisjoint(vocabulary):
            return kind
    return "other"


def severity_level(severity: str | None) -> int:
    """``CRITICAL`` (0) .. ``NONE`` (5) for a severity label; ``UNKNOWN`` when absent or
    unmapped.

    >>> severity_level("critical"), severity_level("warn"), severity_level(None)
    (0, 2, 3)
    """
    if not severity:
        return UNKNOWN
    return _SEVERITY_ALIASES.get(severity.strip().lower(), UNKNOWN)


def page_worthy(kind: str, level: int) -> bool:
    """Whether an alert of ``kind`` at severity ``level`` may open and page an incident.

    >>> page_worthy("crash", INFO), page_worthy("other", UNKNOWN), page_worthy("resource", ERROR)
    (False, True, True)
    """
    if level <= ERROR:
        return True
    if level in (WARNING, UNKNOWN):
        return kind != "resource"
    return False


@dataclass(frozen=True, slots=True)
class KindRules:
    """Extra name patterns per kind (``correlation.kinds``), tried before the vocabulary, and
    the label a sender may set to name the kind outright.

    >>> rules = KindRules.create({"crash": ["^Alarm0[1-3]$"]})
    >>> rules.kind_of("Alarm02", {}), rules.kind_of("Alarm07", {"signal": "latency"})
    ('crash', 'latency')
    """

    patterns: tuple[tuple[str, re.Pattern[str]], ...] = ()
    label: str = "signal"
    _cache: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def create(cls, patterns: Mapping[str, Sequence[str]] | None = None,
               label: str = "signal") -> KindRules:
        """Compile ``{kind: [regex, ...]}``; raises ``ValueError`` naming a bad kind or
        pattern."""
        compiled: list[tuple[str, re.Pattern[str]]] = []
        for kind, items in (patterns or {}).items():
            if kind not in KINDS:
                raise ValueError(f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})")
            for item in items:
                try:
                    compiled.append((kind, re.compile(item, re.IGNORECASE)))
                except re.error as exc:
                    raise ValueError(f"{kind}: bad pattern {item!r}: {exc}") from None
        return cls(tuple(compiled), label)

    def kind_of(self, name: str, labels: Mapping[str, str]) -> str:
        """The kind of an alert: its ``signal`` label, a config pattern, else the name's
        words."""
        said = labels.get(self.label)
        if said and said in KINDS:
            return said
        if not self.patterns:
            return classify_kind(name)
        found = self._cache.get(name)
        if found is None:
            found = next((k for k, rx in self.patterns if rx.search(name)), None) \
                or classify_kind(name)
            if len(self._cache) < 1 << 14:
                self._cache[name] = found
        return found
