"""Alert rules for the storm simulator, read from a Prometheus rule collection.

The simulator draws alert names, severities and annotations from real rules: by default the
awesome-prometheus-alerts collection in ``../shared/data/alert-rules/`` (Prometheus rule-group
YAML, ``groups: [{rules: [{alert, expr, for, labels: {severity}, annotations}]}]``). Without
it, a small built-in list keeps the simulator working anywhere.

Rules are sorted into the *roles* a scenario needs:

* ``app_failure``: what a failing application service fires (pods crash-looping, 5xx);
* ``symptom``: what a service whose dependency fails fires (upstream errors, latency);
* ``store_failure``: what a failing database, cache or queue fires, per exporter family;
* ``noisy``: resource rules known for false positives (CPU, memory, GC), tuned by thresholds;
* ``spike``: latency rules that fire on short spikes below any real incident;
* ``background``: resource and housekeeping trends that fire for hours without anything
  failing (disk and inode fill predictions, clock skew, CPU throttling, GC time, memory
  pressure, swap, file descriptors, certificate expiry, temperature). Info or warning only
  (a critical or error rule is downgraded to warning), and no name of another role: a
  background alert is never gated by the thresholds tuned for ``noisy`` and ``spike`` rules,
  nor mistaken for an incident's rule;
* ``probe``: black-box probe failures, which flap when a probe is unreliable.

>>> catalog = RuleCatalog.builtin()
>>> sorted(catalog.roles)[:3], catalog.pick("symptom", 0).severity in SEVERITIES
(['app_failure', 'background', 'noisy'], True)
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import yaml

SEVERITIES: Final = ("critical", "error", "warning", "info")

# Exporter families (folders of the collection) and the name patterns of each role.
APP_FAMILIES: Final = ("kubernetes", "envoy", "istio", "blackbox", "linkerd", "nginx",
                       "traefik", "jvm", "golang")
STORE_FAMILIES: Final = ("redis", "postgresql", "mysql", "mongodb", "rabbitmq", "memcached",
                         "elasticsearch", "cassandra", "kafka")
_ROLE_PATTERNS: Final = {
    "app_failure": (("kubernetes",), r"^Kubernetes(PodCrashLooping|PodNotHealthy|ContainerOomKiller"
                                    r"|DeploymentReplicasMismatch)$"),
    "app_failure_http": (("envoy", "istio", "blackbox", "nginx", "traefik"),
                         # an *upstream* or *backend* 5xx is the callee's failure: a symptom here
                         r"^(?!.*(Upstream|Backend)).*(5xx|ProbeFailed|ProbeHttpFailure|ServerNotLive"
                         r"|ServiceDown)"),
    "symptom": (("envoy", "istio", "linkerd", "blackbox"),
                r"(Upstream5xx|UpstreamRequestTimeout|UpstreamConnectionFailures|NoHealthyUpstream"
                r"|HighErrorRate|High5xxErrorRate|HighRequestLatency|Latency99|SlowHttp"
                r"|CircuitBreaker)"),
    "noisy": (("host-and-hardware", "docker-containers", "golang", "jvm"),
              r"(HighCpu|CpuHighIowait|ContextSwitching|UnusualDiskIo|HighMemoryUsage"
              r"|MemoryUnderMemoryPressure|GcDurationHigh|GcTimeTooHigh"
              r"|GoroutineCountHigh|ThreadCountHigh|SwapIsFillingUp)"),
    "spike": (("istio", "blackbox", "nginx", "envoy"),
              r"(HighRequestLatency|Latency99Percentile|SlowProbe|ProbeSlowHttp|LatencyHigh"
              r"|DownstreamRequestTimeoutRate)"),
    "background": (("host-and-hardware", "kubernetes", "blackbox", "envoy", "cert-manager",
                    "jvm", "golang", "python", "ruby", "docker-containers", "apache-spark",
                    "apache-flink", "netdata", "process-exporter", "s.m.a.r.t-device-monitoring",
                    "ipmi", "ssl"),
                   r"(DiskMayFill|InodesMayFill|PredictedDiskFull|ClockSkew|ClockNotSynchron"
                   r"|Throttl|GcTime|GcDuration|GcCpuFraction|GcFrequency|GcCollectionsHigh"
                   r"|MajorGcRate|MemoryPressure|MemoryFillingUp|SwapIsFilling|HighSwapUsage"
                   r"|FileDescriptorsExhaustion|HighFileDescriptorUsage"
                   r"|Certificate(WillExpire|ExpiringSoon|ExpiresSoon|ExpiresNextWeek)"
                   r"|Temperature(Warning|NearingTripValue))"),
    "probe": (("blackbox",), r"(ProbeFailed|ProbeHttpFailure)$"),
}
# A store's own failure: down, refusing connections, lost replication.
_STORE_FAILURE: Final = re.compile(
    r"(Down$|Unavailable|Rejected|TooManyConnections|NotEnoughConnections|Unhealthy|ClusterRed"
    r"|HealthyNodes|ReplicationBroken|ReplicaMemberUnhealthy|ConnectionTimeouts|OutOfMemory"
    r"|OutOfConfiguredMaxmemory|RequestReadFailure|RequestWriteFailure|DeadLocks|ClusterDown"
    r"|ClusterPartition|TopicsReplicas|ConsumerGroupLag|NoConsumer)")


@dataclass(frozen=True, slots=True)
class Rule:
    """One alerting rule: its name, severity, annotations (templates) and where it is from."""

    name: str
    severity: str
    family: str
    summary: str = ""
    description: str = ""
    expr: str = ""

    def annotations(self, labels: dict[str, str], value: float | None) -> dict[str, str]:
        """The rule's annotations with ``{{ $labels.x }}`` and ``{{ $value }}`` filled in."""
        out: dict[str, str] = {}
        for key, text in (("summary", self.summary), ("description", self.description)):
            if text:
                out[key] = _render(text, labels, value)
        if value is not None:
            out["value"] = f"{value:.4g}"
        return out


@dataclass(slots=True)
class RuleCatalog:
    """Rules by role (``app_failure``, ``symptom``, ``noisy``, ``spike``, ``background``,
    ``probe``) and store family."""

    roles: dict[str, list[Rule]] = field(default_factory=dict)
    stores: dict[str, list[Rule]] = field(default_factory=dict)
    source: str = "built-in"
    total: int = 0

    def pick(self, role: str, index: int) -> Rule:
        """The ``index``-th rule of ``role`` (wrapping), deterministic."""
        rules = self.roles[role]
        return rules[index % len(rules)]

    def store_rules(self, family: str) -> list[Rule]:
        """The failure rules of a store family (falls back to any store family)."""
        return self.stores.get(family) or next(iter(self.stores.values()))

    @classmethod
    def load(cls, directory: Path | None) -> RuleCatalog:
        """Read every ``*/*.yml`` under ``directory``; the built-in list if it is None or
        has no rules."""
        if directory is None or not directory.is_dir():
            return cls.builtin()
        rules: list[Rule] = []
        for path in sorted(directory.glob("*/*.yml")) + sorted(directory.glob("*/*.yaml")):
            try:
                doc = yaml.safe_load(path.read_text(encoding="utf-8"))
            except (OSError, yaml.YAMLError, UnicodeDecodeError):
                continue  # one unreadable file does not sink the collection
            rules += _rules_of(doc, path.parent.name)
        if not rules:
            return cls.builtin()
        return cls.from_rules(rules, source=str(directory))

    @classmethod
    def from_rules(cls, rules: list[Rule], *, source: str) -> RuleCatalog:
        catalog = cls(source=source, total=len(rules))
        seen: set[str] = set()
        for role, (families, pattern) in _ROLE_PATTERNS.items():
            rx = re.compile(pattern)
            found = [r for r in rules if r.family in families and rx.search(r.name)]
            catalog.roles[role] = sorted(found, key=lambda r: (r.family, r.name))
        catalog.roles["app_failure"] += catalog.roles.pop("app_failure_http")
        # background noise is never gated by the thresholds tuned for noisy and spike rules,
        # nor named like a rule an incident fires
        taken = {r.name for role, rs in catalog.roles.items() if role != "background"
                 for r in rs}
        catalog.roles["background"] = [
            Rule(r.name, r.severity if r.severity in ("info", "warning") else "warning",
                 r.family, r.summary, r.description, r.expr)
            for r in catalog.roles["background"] if r.name not in taken]
        for r in rules:
            if r.family in STORE_FAMILIES and _STORE_FAILURE.search(r.name) and r.name not in seen:
                seen.add(r.name)
                catalog.stores.setdefault(r.family, []).append(r)
        builtin = cls.builtin() if source != "built-in" else None
        for role in ("app_failure", "symptom", "noisy", "spike", "background", "probe"):
            if not catalog.roles.get(role) and builtin is not None:
                catalog.roles[role] = builtin.roles[role]
        if not catalog.stores and builtin is not None:
            catalog.stores = builtin.stores
        return catalog

    @classmethod
    def builtin(cls) -> RuleCatalog:
        """A small list in the collection's style, for machines without the shared data."""
        def r(name: str, sev: str, fam: str, summary: str) -> Rule:
            return Rule(name, sev, fam, summary + " (instance {{ $labels.instance }})",
                        summary + "\n  VALUE = {{ $value }}")
        rules = [
            r("KubernetesPodCrashLooping", "warning", "kubernetes", "Kubernetes pod crash looping"),
            r("KubernetesPodNotHealthy", "critical", "kubernetes", "Kubernetes Pod not healthy"),
            r("EnvoyHighDownstreamHttp5xxErrorRate", "critical", "envoy", "Envoy high 5xx rate"),
            r("IstioHigh5xxErrorRate", "warning", "istio", "Istio high 5xx error rate"),
            r("EnvoyHighClusterUpstream5xxErrorRate", "critical", "envoy",
              "Envoy upstream 5xx errors"),
            r("EnvoyHighClusterUpstreamRequestTimeoutRate", "warning", "envoy",
              "Envoy upstream timeouts"),
            r("IstioHighRequestLatency", "warning", "istio", "Istio high request latency"),
            r("BlackboxProbeSlowHttp", "warning", "blackbox", "Blackbox slow HTTP probe"),
            r("HostHighCpuLoad", "warning", "host-and-hardware", "Host high CPU load"),
            r("ContainerHighMemoryUsage", "warning", "docker-containers",
              "Container high memory usage"),
            r("GoGcDurationHigh", "warning", "golang", "Go GC duration high"),
            r("RedisDown", "critical", "redis", "Redis down"),
            r("RedisRejectedConnections", "warning", "redis", "Redis rejected connections"),
            r("PostgresqlDown", "critical", "postgresql", "Postgresql down"),
            r("PostgresqlTooManyConnections", "warning", "postgresql",
              "Postgresql too many connections"),
            r("HostDiskMayFillIn24Hours", "warning", "host-and-hardware",
              "Host disk may fill in 24 hours"),
            r("HostInodesMayFillIn24Hours", "warning", "host-and-hardware",
              "Host inodes may fill in 24 hours"),
            r("HostClockSkew", "warning", "host-and-hardware", "Host clock skew"),
            r("HostClockNotSynchronising", "warning", "host-and-hardware",
              "Host clock not synchronising"),
            r("ContainerHighThrottleRate", "warning", "docker-containers",
              "Container high throttle rate"),
            r("KubernetesNodeMemoryPressure", "critical", "kubernetes",
              "Kubernetes Node memory pressure"),
            r("ProcessExporterHighSwapUsage", "warning", "process-exporter",
              "High swap usage"),
            r("JvmFileDescriptorsExhaustion", "warning", "jvm",
              "JVM file descriptors exhaustion"),
            r("JvmOldGenGcFrequency", "info", "jvm", "JVM old generation GC frequency"),
            r("GoGcCpuFractionHigh", "info", "golang", "Go GC CPU fraction high"),
            r("BlackboxProbeFailed", "critical", "blackbox", "Blackbox probe failed"),
        ]
        return cls.from_rules(rules, source="built-in")


def _rules_of(doc: Any, family: str) -> list[Rule]:
    out: list[Rule] = []
    groups = doc.get("groups") if isinstance(doc, dict) else None
    for group in groups if isinstance(groups, list) else []:
        for rule in (group or {}).get("rules") or []:
            if not isinstance(rule, dict) or not isinstance(rule.get("alert"), str):
                continue  # recording rules and junk
            labels = rule.get("labels") or {}
            severity = str(labels.get("severity", "warning")).lower()
            notes = rule.get("annotations") or {}
            out.append(Rule(rule["alert"], severity if severity in SEVERITIES else "warning",
                            family, str(notes.get("summary", "")),
                            str(notes.get("description", "")), str(rule.get("expr", ""))))
    return out


_TEMPLATE: Final = re.compile(r"\{\{\s*\$(labels\.(\w+)|value|labels)\s*\}\}")


def _render(text: str, labels: dict[str, str], value: float | None) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(2):
            return labels.get(m.group(2), "")
        if m.group(1) == "value":
            return "" if value is None else f"{value:.4g}"
        return "map[" + " ".join(f"{k}:{v}" for k, v in sorted(labels.items())) + "]"
    return _TEMPLATE.sub(sub, text).strip()
