"""Core types: the normalized ``Alert`` and the outcomes of stage 1.

Every alert that enters the pipeline leaves as exactly one outcome, so counts reconcile::

    alerts in == triaged + deduplicated + suppressed + failed

``Triaged`` is a state change passed downstream, ``Deduplicated`` a repeat of a known state,
``Suppressed`` a gated alert (silence, maintenance, threshold, flapping ...) with its reason,
``Failed`` bad input with the raw payload, bound for the dead-letter output.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Final, Literal

FIRING: Final = "firing"
RESOLVED: Final = "resolved"
# "pending" only comes from Prometheus rules whose `for` has not elapsed; it never pages.
Status = Literal["firing", "resolved", "pending"]

# What a Triaged outcome tells downstream.
Change = Literal["firing", "resolved", "flapping", "stable"]

SEVERITIES: Final = ("critical", "error", "warning", "info")


@dataclass(slots=True)
class Alert:
    """One observation of one alert, whatever format it arrived in.

    Times are epoch seconds (UTC). ``at`` is the event time of this observation: when the
    payload was received if an envelope says so, otherwise the latest timestamp the alert
    itself carries. ``fingerprint`` is computed by triage from the identifying labels;
    ``source_fingerprint`` is what the sender claimed, kept for reference only.
    """

    labels: dict[str, str]
    annotations: dict[str, str]
    status: Status
    starts_at: float
    ends_at: float | None
    at: float
    source: str
    value: float | None = None
    generator_url: str = ""
    source_fingerprint: str | None = None
    fingerprint: str = ""

    @property
    def name(self) -> str:
        """The alert rule name (``alertname`` label), or ``""``."""
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        """Normalized severity label (critical, error, warning, info), or ``""``."""
        return self.labels.get("severity", "")


@dataclass(slots=True, frozen=True)
class Triaged:
    """A state change of an alert, passed downstream (and, later, to the incident stage).

    ``change`` is ``firing`` (a new occurrence), ``resolved``, ``flapping`` (the alert began
    to flap and is held; one outcome instead of one per flip) or ``stable`` (flapping ended;
    ``alert.status`` is the state it settled in). ``reason`` says why when triage, not the
    sender, decided the change (``resolve_timeout``, ``ends_at_passed``, ``flap``).
    """

    alert: Alert
    change: Change
    occurrence: int
    count: int
    first_seen: float
    last_seen: float
    flapping: bool = False
    reason: str = ""
    noise_score: float | None = None

    kind: Literal["triaged"] = dataclasses.field(default="triaged", init=False)


@dataclass(slots=True, frozen=True)
class Deduplicated:
    """A repeat of a state already passed downstream; updates last-seen and count only."""

    alert: Alert
    count: int
    stale: bool = False  # an older observation arriving late (replay, out-of-order delivery)

    kind: Literal["deduplicated"] = dataclasses.field(default="deduplicated", init=False)


@dataclass(slots=True, frozen=True)
class Suppressed:
    """A gated alert: never pages, always counted. ``by`` is the silence or rule id."""

    alert: Alert
    reason: str  # silence | maintenance | threshold | flapping | resolved_unseen | noise |
    #              pending | held (tuned `for`) | kept (tuned keep_firing_for)
    detail: str
    by: str | None = None
    noise_score: float | None = None

    kind: Literal["suppressed"] = dataclasses.field(default="suppressed", init=False)


@dataclass(slots=True, frozen=True)
class Failed:
    """Bad input. ``raw`` is the payload (or the one alert of it) exactly as received."""

    error: str  # the InputError class name: DecodeError, SchemaError, ...
    field: str
    reason: str
    raw: str
    source: str | None = None

    kind: Literal["failed"] = dataclasses.field(default="failed", init=False)


Outcome = Triaged | Deduplicated | Suppressed | Failed
