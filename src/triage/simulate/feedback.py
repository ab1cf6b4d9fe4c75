"""A deterministic generator of **simulated** responder feedback, for tests, notebooks and the
benchmark, until the storm simulator (another issue) and real feedback exist.

Nothing here is measured from a real system. The generator encodes the patterns responders
report about alert noise, so the learning stage has something realistic to learn from:

* **Hot services.** Some (rule, service) pairs run close to the rule's static threshold all the
  time. They fire many short alerts whose value barely crosses it (value/threshold about
  1.0-1.15), nearly all judged noise.
* **Flapping.** Some alerts flip between firing and resolved many times (``flap_count`` of 5 to
  20); nearly all are noise.
* **Off-hours spikes.** Nightly batch jobs (01:00-04:00 UTC) push some services over their
  thresholds for 5-30 minutes; noise, at the same hour every night.
* **Real incidents.** Most follow a change to the service (deploy, config, flag); the alerts
  are well over the threshold, last longer, repeat, and are judged actionable. Some incidents
  have no change and some are barely over the threshold, so the classes overlap.
* ``flap_count`` and ``repeat_count`` are what the gate knows when the alert fires: flips in
  the flap window before it, and occurrences of the same alert so far (1 = first). Noise
  recurs; real incidents are mostly new. ``duration`` is how long it fired in total.
* **Label noise.** 2% of actionable alerts are judged noise and 0.2% of noise alerts
  actionable, as tired responders do.

The same ``seed`` always gives the same history, row for row.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import pandas as pd

from triage.models.feedback import COLUMNS, normalize_history

# (alertname, static threshold, the Prometheus expression it comes from)
RULES: Final = (
    ("HighCPU", 0.8, 'avg by (service) (rate(container_cpu_usage_seconds_total[5m])) > 0.8'),
    ("HighLatencyP99", 0.5, "histogram_quantile(0.99, sum by (service, le) "
                            "(rate(http_request_duration_seconds_bucket[5m]))) > 0.5"),
    ("HighErrorRate", 0.05, 'sum by (service) (rate(http_requests_total{code=~"5.."}[5m])) / '
                            "sum by (service) (rate(http_requests_total[5m])) > 0.05"),
    ("DiskFilling", 0.85, "1 - node_filesystem_avail_bytes / node_filesystem_size_bytes > 0.85"),
    ("PodRestarting", 3.0, "increase(kube_pod_container_status_restarts_total[15m]) > 3"),
    ("QueueBacklog", 1000.0, "sum by (service) (queue_messages_ready) > 1000"),
)

# (service, tier); the tiers follow a service catalog's usual 1 (customer facing) .. 3.
SERVICES: Final = (
    ("frontend", "1"), ("checkout", "1"), ("payment", "1"), ("cart", "1"),
    ("catalog", "2"), ("search", "2"), ("recommendation", "2"), ("shipping", "2"),
    ("email", "3"), ("reporting", "3"), ("batch-etl", "3"), ("ad", "3"),
)

DAY: Final = 86400.0
DEFAULT_START: Final = 1_793_491_200.0  # 2026-11-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class _Pair:
    alertname: str
    threshold: float
    expr: str
    service: str
    tier: str
    hot: bool
    noise_per_day: float
    batch: bool
    flappy: bool


def simulate_feedback(*, days: float = 30.0, seed: int = 0, start: float = DEFAULT_START,
                      rate: float = 1.0) -> pd.DataFrame:
    """A simulated feedback history (``feedback.COLUMNS``), oldest first.

    ``rate`` scales how many alerts there are per day (about 130 at 1.0).

    >>> h = simulate_feedback(days=2, seed=1)
    >>> sorted(h["label"].unique())
    ['actionable', 'noise']
    >>> h.equals(simulate_feedback(days=2, seed=1))
    True
    """
    rng = np.random.default_rng(seed)
    pairs = _pairs(rng)
    end = start + days * DAY
    rows: list[dict[str, Any]] = []
    # Changes per service: deploys in working hours, more for tier-1 services.
    changes: dict[str, np.ndarray] = {}
    for service, tier in SERVICES:
        n = rng.poisson(days * {"1": 3.0, "2": 1.5, "3": 0.7}[tier])
        day = rng.uniform(0, days, n).astype(int)
        hour = rng.uniform(9, 18, n)
        changes[service] = np.sort(start + day * DAY + hour * 3600.0)

    def recent(service: str, at: float) -> int:
        times = changes[service]
        return int(np.searchsorted(times, at) - np.searchsorted(times, at - 7200.0))

    for pair in pairs:
        # Hot-service noise, all day.
        n = rng.poisson(pair.noise_per_day * days * rate)
        for at in rng.uniform(start, end, n):
            ratio = 1.0 + rng.exponential(0.06)
            rows.append(_row(rng, pair, at, ratio, duration=rng.exponential(240) + 30,
                             flaps=rng.poisson(1.0), repeats=1 + rng.poisson(3.0),
                             label="noise", recent=recent(pair.service, at)))
        if pair.flappy:
            n = rng.poisson(1.5 * days * rate)
            rows.extend(_row(rng, pair, at, 1.0 + rng.exponential(0.1),
                             duration=rng.exponential(120) + 20,
                             flaps=int(rng.integers(5, 21)), repeats=1 + rng.poisson(5.0),
                             label="noise", recent=recent(pair.service, at))
                        for at in rng.uniform(start, end, n))
        if pair.batch:
            for d in range(int(days)):
                if rng.random() < 0.8 * min(rate, 1.0):
                    at = start + d * DAY + rng.uniform(1.0, 4.0) * 3600.0
                    rows.append(_row(rng, pair, at, 1.0 + rng.exponential(0.25),
                                     duration=rng.uniform(300, 1800), flaps=rng.poisson(0.5),
                                     repeats=1 + rng.poisson(2.0), label="noise",
                                     recent=recent(pair.service, at)))
    # Real incidents: most after a change, some out of the blue.
    by_service: dict[str, list[_Pair]] = {}
    for pair in pairs:
        by_service.setdefault(pair.service, []).append(pair)
    incidents: list[tuple[str, float]] = []
    for service, times in changes.items():
        incidents.extend((service, t + rng.uniform(60, 3600))
                         for t in times if rng.random() < 0.35 * min(rate, 1.0))
    for _ in range(rng.poisson(0.8 * days * rate)):
        service = SERVICES[int(rng.integers(len(SERVICES)))][0]
        incidents.append((service, float(rng.uniform(start, end))))
    for service, at0 in incidents:
        candidates = by_service[service]
        k = int(rng.integers(1, 4))
        for i in rng.choice(len(candidates), size=min(k, len(candidates)), replace=False):
            pair = candidates[int(i)]
            # Most are well over the threshold; one in six barely crosses it.
            ratio = (1.0 + rng.exponential(0.08) if rng.random() < 1 / 6
                     else 1.15 + rng.lognormal(-1.2, 0.7))
            at = at0 + rng.uniform(0, 600)
            rows.append(_row(rng, pair, at, ratio, duration=rng.lognormal(7.5, 0.8),
                             flaps=rng.poisson(0.3), repeats=1 + rng.poisson(0.7),
                             label="actionable", recent=recent(service, at)))
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    # Label noise: responders sometimes close a real alert as noise (2%); calling noise
    # actionable is rarer (0.2%), since someone then looked into it.
    u = rng.random(len(frame))
    is_noise = (frame["label"] == "noise").to_numpy()
    frame.loc[is_noise & (u < 0.002), "label"] = "actionable"
    frame.loc[~is_noise & (u < 0.02), "label"] = "noise"
    frame = frame[frame["at"] < end].sort_values("at", kind="stable").reset_index(drop=True)
    frame["fingerprint"] = [f"sim-{i:06d}" for i in range(len(frame))]
    return normalize_history(frame)


def _pairs(rng: np.random.Generator) -> list[_Pair]:
    pairs: list[_Pair] = []
    for alertname, threshold, expr in RULES:
        for service, tier in SERVICES:
            u = rng.random()
            hot = u < 0.2
            pairs.append(_Pair(
                alertname=alertname, threshold=threshold, expr=expr, service=service,
                tier=tier, hot=hot,
                noise_per_day=float(rng.uniform(2.0, 6.0) if hot else rng.uniform(0.02, 0.3)),
                batch=service in ("batch-etl", "reporting", "search") and rng.random() < 0.5,
                flappy=rng.random() < 0.12,
            ))
    return pairs


def _row(rng: np.random.Generator, pair: _Pair, at: float, ratio: float, *, duration: float,
         flaps: int, repeats: int, label: str, recent: int) -> dict[str, Any]:
    labels = {"alertname": pair.alertname, "service": pair.service, "tier": pair.tier,
              "severity": "critical" if pair.tier == "1" else "warning"}
    hint = None
    if label == "noise" and ratio < 1.1 and rng.random() < 0.2:
        hint = "too_low"
    return {
        "at": float(at), "label": label, "hint": hint, "alertname": pair.alertname,
        "service": pair.service, "tier": pair.tier, "severity": labels["severity"],
        "value": round(float(ratio) * pair.threshold, 6), "threshold": pair.threshold,
        "direction": "above", "duration": round(float(duration), 1), "fingerprint": "",
        "incident_id": "", "flap_count": int(flaps), "repeat_count": int(repeats),
        "recent_changes": int(recent), "responder": "simulated", "source_rule": pair.expr,
        "labels": json.dumps(labels, sort_keys=True), "context": "{}",
    }
