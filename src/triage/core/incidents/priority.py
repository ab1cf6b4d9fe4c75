"""Incident priority P1-P4 from an impact x urgency matrix, with reasons a responder can check.

Priority reflects **observed** impact: what is failing now, not what could fail. The blast
radius (the users behind everything that depends on the failure) is reported as *risk* and
never raises the priority on its own.

**Impact** (how much of the business is hurt) has four levels, highest first:
``critical``, ``high``, ``medium``, ``low``. It is the higher of two factors:

* *tier*: the most critical tier among the affected services and their business services
  (``Topology.business_tiers[info.business_service]``), through ``tier_impact``
  (default 1 → critical, 2 → high, 3 → medium, 4 → low). A service the catalog gives no tier
  (and no business service with a tier) counts as ``unknown_tier`` (default 3), and the
  reasons say so, so a missing catalog entry is visible instead of silently lowering priority.
* *users*: the users of the user-facing services that are themselves alerting with a
  user-facing symptom (``symptomatic``: errors, latency, timeouts, a crash: anything but a
  resource trend), against ``users`` thresholds (default >= 100,000 → critical, >= 10,000 →
  high, >= 1,000 → medium). Users behind services that merely depend on the failure are the
  *risk*: named in the reasons, not counted.

**Urgency** (how fast it hurts) has three levels: ``high``, ``medium``, ``low``. It is the
higher of two factors:

* *severity*: the worst alert severity through ``severity_urgency`` (default critical → high,
  error and warning → medium, info and none → low; a severity the map does not know counts as
  ``none``).
* *errors reach users*: a symptomatic user-facing service, with alerts more than informational
  → urgency at least ``user_facing_urgency`` (default high; ``null`` turns the rule off).

The default matrix (ITIL-like, one step per level)::

                 urgency high  medium  low
    impact critical      P1      P2    P2
           high          P1      P2    P3
           medium        P2      P3    P4
           low           P3      P4    P4

**Cap**: an incident whose alerts are all warning or milder and that shows no user-facing
symptom is at most ``cap_without_user_impact`` (default P3): a warning on a tier-1 database
that no user notices is not a P1 or a P2.

The config section (every key optional; maps merge cell by cell over the defaults)::

    priority:
      matrix: {critical: {medium: P1}}          # impact -> urgency -> P1..P4
      tier_impact: {1: critical, 2: high, 3: medium, 4: low}
      unknown_tier: 3
      users: {critical: 100000, high: 10000, medium: 1000}   # null turns a level off
      severity_urgency: {critical: high, error: medium, warning: medium, info: low, none: low}
      user_facing_urgency: high
      cap_without_user_impact: P3                # null: no cap

Every map must be monotone (a higher impact, urgency, tier or severity never gives a lower
priority), so that adding services or raising severities never lowers an incident's priority;
``parse_priority`` rejects a config that breaks this, naming the key. Priority may rise as an
incident grows; ``keep_highest`` keeps it from falling silently.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import Final

from triage.core.topology import TIERS, Topology
from triage.errors import ConfigError

IMPACTS: Final = ("critical", "high", "medium", "low")
"""Impact levels, highest first."""
URGENCIES: Final = ("high", "medium", "low")
"""Urgency levels, highest first."""
PRIORITIES: Final = ("P1", "P2", "P3", "P4")
"""Priorities, highest first."""
SEVERITY_KEYS: Final = ("critical", "error", "warning", "info", "none")
"""Normalized alert severities, worst first; ``none`` is an alert without a severity."""

DEFAULT_MATRIX: Final[Mapping[str, Mapping[str, str]]] = {
    "critical": {"high": "P1", "medium": "P2", "low": "P2"},
    "high": {"high": "P1", "medium": "P2", "low": "P3"},
    "medium": {"high": "P2", "medium": "P3", "low": "P4"},
    "low": {"high": "P3", "medium": "P4", "low": "P4"},
}
DEFAULT_TIER_IMPACT: Final[Mapping[int, str]] = {1: "critical", 2: "high", 3: "medium", 4: "low"}
DEFAULT_USERS: Final[Mapping[str, int | None]] = {
    "critical": 100_000, "high": 10_000, "medium": 1_000,
}
DEFAULT_SEVERITY_URGENCY: Final[Mapping[str, str]] = {
    "critical": "high", "error": "medium", "warning": "medium", "info": "low", "none": "low",
}

_IMPACT_RANK: Final = {level: i for i, level in enumerate(IMPACTS)}
_URGENCY_RANK: Final = {level: i for i, level in enumerate(URGENCIES)}
_PRIORITY_RANK: Final = {p: i + 1 for i, p in enumerate(PRIORITIES)}
_KEYS: Final = ("matrix", "tier_impact", "unknown_tier", "users", "severity_urgency",
                "user_facing_urgency", "cap_without_user_impact")
# Reasons read "P1 = impact critical (times sign) urgency high"; spelled by name for the linter.
_TIMES: Final = "\N{MULTIPLICATION SIGN}"
_NAMES_SHOWN: Final = 3  # services named in one reason; the rest are counted


def rank(priority: str) -> int:
    """1 for P1 (the highest) ... 4 for P4; a lower rank is a higher priority.

    >>> rank("P1"), rank("P4")
    (1, 4)
    """
    try:
        return _PRIORITY_RANK[priority]
    except KeyError:
        raise ValueError(f"not a priority: {priority!r} (expected P1..P4)") from None


def max_priority(a: str, b: str) -> str:
    """The higher of two priorities.

    >>> max_priority("P3", "P2")
    'P2'
    """
    return a if rank(a) <= rank(b) else b


@dataclass(frozen=True, slots=True)
class Classification:
    """An incident's priority and why.

    ``reasons`` starts with the matrix cell (``P1 = impact critical x urgency high``, with a
    multiplication sign), then the impact reasons (decisive factor first), then the urgency
    reasons. ``user_facing`` lists the user-facing services in the blast radius by name;
    ``users_affected`` sums their users.
    """

    priority: str
    impact: str
    urgency: str
    reasons: tuple[str, ...]
    users_affected: int
    user_facing: tuple[str, ...]
    users_at_risk: int = 0
    at_risk: tuple[str, ...] = ()  # user-facing services that depend on the failure


@dataclass(frozen=True, slots=True)
class PriorityPolicy:
    """The validated ``priority`` section; build it with ``parse_priority``.

    Constructing it directly validates the same way (``ConfigError`` naming the key); maps
    must be complete here, only ``parse_priority`` merges partial maps over the defaults.

    >>> PriorityPolicy().matrix["critical"]["high"]
    'P1'
    """

    matrix: Mapping[str, Mapping[str, str]] = field(default_factory=lambda: DEFAULT_MATRIX)
    tier_impact: Mapping[int, str] = field(default_factory=lambda: DEFAULT_TIER_IMPACT)
    unknown_tier: int = 3
    users: Mapping[str, int | None] = field(default_factory=lambda: DEFAULT_USERS)
    severity_urgency: Mapping[str, str] = field(
        default_factory=lambda: DEFAULT_SEVERITY_URGENCY)
    user_facing_urgency: str | None = "high"
    cap_without_user_impact: str | None = "P3"

    # Derived once: classify_priority runs on every incident update.
    _users_levels: tuple[tuple[int, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        matrix = {i: dict(row) for i, row in self.matrix.items()}
        for impact in IMPACTS:
            matrix.setdefault(impact, {})
        tier_impact = dict(self.tier_impact)
        users = dict(self.users)
        severity_urgency = dict(self.severity_urgency)
        _check_complete(matrix, tier_impact, users, severity_urgency, self)
        _check_monotone(matrix, tier_impact, users, severity_urgency, set())
        if self.cap_without_user_impact is not None:
            _priority_value(self.cap_without_user_impact, "priority.cap_without_user_impact")
        # private copies, so a caller's later edit cannot break the checks above
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "tier_impact", tier_impact)
        object.__setattr__(self, "users", users)
        object.__setattr__(self, "severity_urgency", severity_urgency)
        levels = tuple((n, level) for level, n in sorted(
            users.items(), key=lambda kv: _IMPACT_RANK[kv[0]]) if n is not None)
        object.__setattr__(self, "_users_levels", levels)



def parse_priority(data: object) -> PriorityPolicy:
    """Validate the raw ``priority`` config section; errors name the key.

    >>> parse_priority({"matrix": {"critical": {"medium": "P1"}}}).matrix["critical"]["medium"]
    'P1'
    >>> parse_priority({"matrix": {"high": {"low": "P5"}}})
    Traceback (most recent call last):
    ...
    triage.errors.ConfigError: config priority.matrix.high.low: expected P1, P2, P3 or P4, got 'P5'
    """
    if data is None:
        return PriorityPolicy()
    section = _mapping(data, "priority")
    for key in section:
        if key not in _KEYS:
            raise ConfigError(f"priority.{key}", f"unknown setting (expected one of "
                                                 f"{', '.join(_KEYS)})")
    set_by_user: set[str] = set()

    matrix = {i: dict(row) for i, row in DEFAULT_MATRIX.items()}
    if section.get("matrix") is not None:
        for impact, row in _mapping(section["matrix"], "priority.matrix").items():
            key = f"priority.matrix.{impact}"
            impact = _level(impact, IMPACTS, key, "impact level")
            for urgency, value in _mapping(row, key).items():
                cell = f"{key}.{urgency}"
                urgency = _level(urgency, URGENCIES, cell, "urgency level")
                matrix[impact][urgency] = _priority_value(value, cell)
                set_by_user.add(f"priority.matrix.{impact}.{urgency}")

    tier_impact = dict(DEFAULT_TIER_IMPACT)
    if section.get("tier_impact") is not None:
        for tier, value in _mapping(section["tier_impact"], "priority.tier_impact").items():
            key = f"priority.tier_impact.{tier}"
            number = _tier(tier, key)
            tier_impact[number] = _level(value, IMPACTS, key, "impact level")
            set_by_user.add(f"priority.tier_impact.{number}")

    unknown_tier = 3
    if section.get("unknown_tier") is not None:
        unknown_tier = _tier(section["unknown_tier"], "priority.unknown_tier")

    users = dict(DEFAULT_USERS)
    if "users" in section and section["users"] is not None:
        for level, value in _mapping(section["users"], "priority.users").items():
            key = f"priority.users.{level}"
            level = _level(level, IMPACTS[:-1], key, "impact level with a users threshold "
                           "(low is the floor)")
            users[level] = None if value is None else _count(value, key)
            set_by_user.add(f"priority.users.{level}")

    severity_urgency = dict(DEFAULT_SEVERITY_URGENCY)
    if section.get("severity_urgency") is not None:
        raw = _mapping(section["severity_urgency"], "priority.severity_urgency")
        for severity, value in raw.items():
            key = f"priority.severity_urgency.{severity}"
            severity = _level(severity, SEVERITY_KEYS, key, "severity")
            severity_urgency[severity] = _level(value, URGENCIES, key, "urgency level")
            set_by_user.add(f"priority.severity_urgency.{severity}")

    user_facing: str | None = "high"
    if "user_facing_urgency" in section:
        value = section["user_facing_urgency"]
        user_facing = (None if value is None or value is False else
                       _level(value, URGENCIES, "priority.user_facing_urgency", "urgency level"))

    cap: str | None = "P3"
    if "cap_without_user_impact" in section:
        value = section["cap_without_user_impact"]
        cap = (None if value is None or value is False else
               _priority_value(value, "priority.cap_without_user_impact"))

    _check_monotone(matrix, tier_impact, users, severity_urgency, set_by_user)
    return PriorityPolicy(matrix=matrix, tier_impact=tier_impact, unknown_tier=unknown_tier,
                          users=users, severity_urgency=severity_urgency,
                          user_facing_urgency=user_facing, cap_without_user_impact=cap)


def classify_priority(
    *,
    services: Collection[str],
    severities: Collection[str],
    topology: Topology,
    policy: PriorityPolicy,
    service_severities: Mapping[str, str] | None = None,
    symptomatic: Collection[str] | None = None,
) -> Classification:
    """Classify an incident from its affected services and its alerts' severities.

    ``symptomatic`` names the affected services alerting with a user-facing symptom (not a
    resource trend); ``None`` means every affected service whose own severity (from
    ``service_severities``) is above informational. Users are counted from the user-facing
    ones among them; the users of user-facing services that only depend on the failure are the
    risk. Cost is O(services) plus the blast radius, with the topology's cached ancestor sets.

    >>> import networkx as nx
    >>> from triage.core.topology import ServiceInfo
    >>> topo = Topology(nx.DiGraph([("frontend", "cart")]), {
    ...     "frontend": ServiceInfo("frontend", tier=2, users=50_000),
    ...     "cart": ServiceInfo("cart", tier=1)})
    >>> c = classify_priority(services=["cart"], severities=["critical"], topology=topo,
    ...                       policy=PriorityPolicy(), service_severities={"cart": "critical"})
    >>> c.priority, c.users_affected, c.users_at_risk
    ('P1', 0, 50000)
    >>> for reason in c.reasons[1:]: print(reason)
    impact critical: cart is tier 1
    no user-facing service shows a symptom
    urgency high: severity critical on cart
    risk: 50,000 users of frontend depend on the failing services
    >>> warn = classify_priority(services=["cart"], severities=["warning"], topology=topo,
    ...                          policy=PriorityPolicy(), service_severities={"cart": "warning"})
    >>> warn.priority, warn.reasons[0]
    ('P3', 'P3 = capped: only warnings and no user-facing symptom (P2 = impact critical \N{MULTIPLICATION SIGN} urgency medium)')
    """  # noqa: E501
    names = sorted(set(services))
    by_service = {s: _severity_key(v) for s, v in (service_severities or {}).items()}
    lowest = URGENCIES[-1]
    if symptomatic is None:
        facing = [s for s in names if topology.info(s).user_facing
                  and (s not in by_service or policy.severity_urgency[by_service[s]] != lowest)]
    else:
        facing = sorted(s for s in set(symptomatic) if topology.info(s).user_facing)
    tier_level, tier_reasons = _tier_factor(names, topology, policy)
    users_of = {s: topology.info(s).users for s in facing}
    users = sum(users_of.values())
    users_level, users_reason = _users_factor(users, users_of, policy)
    if _IMPACT_RANK[users_level] < _IMPACT_RANK[tier_level]:
        impact, impact_reasons = users_level, (users_reason, *tier_reasons)
    else:
        impact, impact_reasons = tier_level, (*tier_reasons, users_reason)
    urgency, urgency_reasons = _urgency(names, facing, severities, policy, by_service)
    priority = policy.matrix[impact][urgency]
    head = f"{priority} = impact {impact} {_TIMES} urgency {urgency}"
    sev_seen = {_severity_key(s) for s in severities} | set(by_service.values())
    mild = not sev_seen & {"critical", "error"}
    cap = policy.cap_without_user_impact
    if cap is not None and mild and not facing and rank(priority) < rank(cap):
        head = (f"{cap} = capped: only warnings and no user-facing symptom ({head})")
        priority = cap
    risk = sorted(s for s in topology.blast_radius(names) if s not in users_of)
    risk_users = sum(topology.info(s).users for s in risk)
    risk_reasons: tuple[str, ...] = ()
    if risk_users:
        shown = [f"{s} ({topology.info(s).users:,})" for s in risk[:_NAMES_SHOWN]]
        text = (risk[0] if len(risk) == 1 else _join(shown, len(risk) - len(shown)))
        risk_reasons = (f"risk: {risk_users:,} users of {text} depend on the failing services",)
    return Classification(
        priority=priority,
        impact=impact,
        urgency=urgency,
        reasons=(head, *impact_reasons, *urgency_reasons, *risk_reasons),
        users_affected=users,
        user_facing=tuple(facing),
        users_at_risk=risk_users,
        at_risk=tuple(risk),
    )


def keep_highest(previous: Classification | None, current: Classification) -> Classification:
    """``current``, unless it is a lower priority than ``previous``: priority never falls
    silently, so the previous priority is kept and the reasons say what it would be now.

    >>> p1 = Classification("P1", "critical", "high", ("P1 = ...",), 0, ())
    >>> p3 = Classification("P3", "medium", "medium", ("P3 = ...",), 0, ())
    >>> keep_highest(p1, p3).priority, keep_highest(p1, p3).reasons[0][:30]
    ('P1', 'P1 kept: priority never falls ')
    >>> keep_highest(p3, p1) is p1
    True
    """
    if previous is None or rank(current.priority) <= rank(previous.priority):
        return current
    note = (f"{previous.priority} kept: priority never falls "
            f"(now {current.priority} = impact {current.impact} {_TIMES} urgency "
            f"{current.urgency})")
    return Classification(
        priority=previous.priority,
        impact=previous.impact,
        urgency=previous.urgency,
        reasons=(note, *previous.reasons),
        users_affected=max(previous.users_affected, current.users_affected),
        user_facing=tuple(sorted(set(previous.user_facing) | set(current.user_facing))),
        users_at_risk=max(previous.users_at_risk, current.users_at_risk),
        at_risk=tuple(sorted(set(previous.at_risk) | set(current.at_risk))),
    )


# --- factors ---------------------------------------------------------------------------------


def _tier_factor(
    names: list[str], topology: Topology, policy: PriorityPolicy
) -> tuple[str, tuple[str, ...]]:
    if not names:
        return IMPACTS[-1], (f"impact {IMPACTS[-1]}: no affected service",)
    best_tier = TIERS[-1] + 1
    best: list[str] = []  # descriptions of the services at the best tier, by name
    unknown: list[str] = []
    for name in names:
        info = topology.info(name)
        own = info.tier if info.tier in policy.tier_impact else None
        business = info.business_service
        btier = topology.business_tiers.get(business) if business else None
        btier = btier if btier in policy.tier_impact else None
        if own is None and btier is None:
            unknown.append(name)
            tier, text = policy.unknown_tier, (f"{name} has no tier in the catalog, counted as "
                                               f"tier {policy.unknown_tier}")
        elif btier is not None and (own is None or btier < own):
            tier, text = btier, f"{name} serves {business}, a tier {btier} business service"
        else:
            assert own is not None
            tier, text = own, f"{name} is tier {own}"
            if business and btier == own:
                text += f" (business service {business})"
        if tier < best_tier:
            best_tier, best = tier, [text]
        elif tier == best_tier:
            best.append(text)
    level = policy.tier_impact[best_tier]
    head = f"impact {level}: {best[0]}"
    if len(best) > 1:
        head += f" ({_count_more(len(best) - 1)} at tier {best_tier})"
    reasons = [head]
    # The headline already says so when the one unknown service is the one it names.
    if unknown and not (len(unknown) == 1 and best[0].startswith(f"{unknown[0]} has no tier")):
        verb = "has" if len(unknown) == 1 else "have"
        reasons.append(f"{_list(unknown)} {verb} no tier in the catalog "
                       f"(counted as tier {policy.unknown_tier})")
    return level, tuple(reasons)


def _users_factor(
    users: int, users_of: Mapping[str, int], policy: PriorityPolicy
) -> tuple[str, str]:
    if users == 0:
        return IMPACTS[-1], "no user-facing service shows a symptom"
    level = next((lvl for n, lvl in policy._users_levels if users >= n), IMPACTS[-1])
    ranked = sorted(users_of, key=lambda s: (-users_of[s], s))
    if len(ranked) == 1:
        through = ranked[0]
    else:
        shown = [f"{s} ({users_of[s]:,})" for s in ranked[:_NAMES_SHOWN]]
        through = _join(shown, len(ranked) - len(shown))
    return level, f"impact {level}: {users:,} users see the failure at {through}"


def _urgency(
    names: list[str],
    facing: list[str],
    severities: Collection[str],
    policy: PriorityPolicy,
    by_service: Mapping[str, str],
) -> tuple[str, tuple[str, ...]]:
    seen = {_severity_key(s) for s in severities} | set(by_service.values())
    if not seen:
        seen = {"none"}
    worst = min(seen, key=lambda s: (_URGENCY_RANK[policy.severity_urgency[s]],
                                     SEVERITY_KEYS.index(s)))
    urgency = policy.severity_urgency[worst]
    if worst == "none":
        sev_text = f"urgency {urgency}: no alert has a severity"
    else:
        sev_text = f"urgency {urgency}: severity {worst}"
        on = [s for s in names if by_service.get(s) == worst]
        if on:
            sev_text += f" on {_list(on)}"
    reasons = [sev_text]

    floor = policy.user_facing_urgency
    lowest = URGENCIES[-1]
    if floor is not None and urgency != lowest and facing:
        text = f"errors reach users directly at {_list(facing)} (user-facing)"
        if _URGENCY_RANK[floor] < _URGENCY_RANK[urgency]:
            urgency = floor
            reasons.insert(0, f"urgency {floor}: {text}")
        else:
            reasons.append(text)
    return urgency, tuple(reasons)


def _severity_key(severity: str) -> str:
    key = severity.strip().lower() if severity else "none"
    return key if key in DEFAULT_SEVERITY_URGENCY else "none"


def _list(names: list[str]) -> str:
    return _join(names[:_NAMES_SHOWN], len(names) - _NAMES_SHOWN)


def _join(shown: list[str], more: int) -> str:
    if more > 0:
        return f"{', '.join(shown)} and {more} more"
    if len(shown) > 1:
        return f"{', '.join(shown[:-1])} and {shown[-1]}"
    return shown[0]


def _count_more(n: int) -> str:
    return f"and {n} more service{'s' if n > 1 else ''}"


# --- validation ------------------------------------------------------------------------------


def _mapping(value: object, key: str) -> Mapping[str, object]:
    if not isinstance(value, Mapping):
        raise ConfigError(key, f"expected a mapping, got {type(value).__name__}")
    return {str(k): v for k, v in value.items()}


def _level(value: object, levels: tuple[str, ...], key: str, what: str) -> str:
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in levels:
        raise ConfigError(key, f"unknown {what} {value!r} (expected {', '.join(levels)})")
    assert isinstance(text, str)
    return text


def _priority_value(value: object, key: str) -> str:
    text = value.strip().upper() if isinstance(value, str) else value
    if text not in PRIORITIES:
        raise ConfigError(key, f"expected P1, P2, P3 or P4, got {value!r}")
    assert isinstance(text, str)
    return text


def _int(value: object, key: str) -> int:
    # Environment variables arrive as strings: TRIAGE_PRIORITY__USERS__HIGH=5000
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ConfigError(key, f"expected a whole number, got {value!r}")


def _tier(value: object, key: str) -> int:
    number = _int(value, key)
    if number not in TIERS:
        raise ConfigError(key, f"expected a tier {TIERS[0]}..{TIERS[-1]}, got {value!r}")
    return number


def _count(value: object, key: str) -> int:
    number = _int(value, key)
    if number < 0:
        raise ConfigError(key, f"expected a count >= 0, got {value!r}")
    return number


def _check_complete(
    matrix: Mapping[str, Mapping[str, str]],
    tier_impact: Mapping[int, str],
    users: Mapping[str, int | None],
    severity_urgency: Mapping[str, str],
    policy: PriorityPolicy,
) -> None:
    for impact, row in matrix.items():
        _level(impact, IMPACTS, f"priority.matrix.{impact}", "impact level")
        for urgency in row:
            _level(urgency, URGENCIES, f"priority.matrix.{impact}.{urgency}", "urgency level")
    for impact in IMPACTS:
        for urgency in URGENCIES:
            cell = f"priority.matrix.{impact}.{urgency}"
            if urgency not in matrix[impact]:
                raise ConfigError(cell, "missing: the matrix needs every impact and urgency")
            _priority_value(matrix[impact][urgency], cell)
    for tier in TIERS:
        if tier not in tier_impact:
            raise ConfigError(f"priority.tier_impact.{tier}", "missing")
        _level(tier_impact[tier], IMPACTS, f"priority.tier_impact.{tier}", "impact level")
    for level, n in users.items():
        _level(level, IMPACTS[:-1], f"priority.users.{level}", "impact level")
        if n is not None:
            _count(n, f"priority.users.{level}")
    for severity in SEVERITY_KEYS:
        key = f"priority.severity_urgency.{severity}"
        if severity not in severity_urgency:
            raise ConfigError(key, "missing")
        _level(severity_urgency[severity], URGENCIES, key, "urgency level")
    _tier(policy.unknown_tier, "priority.unknown_tier")
    if policy.user_facing_urgency is not None:
        _level(policy.user_facing_urgency, URGENCIES, "priority.user_facing_urgency",
               "urgency level")


def _check_monotone(
    matrix: Mapping[str, Mapping[str, str]],
    tier_impact: Mapping[int, str],
    users: Mapping[str, int | None],
    severity_urgency: Mapping[str, str],
    set_by_user: set[str],
) -> None:
    """Reject maps where more impact / urgency / tier / severity gives a lower priority.

    The key named is the setting the user wrote, when one of the pair is theirs.
    """
    rule = "a higher level must never give a lower priority"

    def blame(lower: str, higher: str, text: str) -> None:
        key = higher if higher in set_by_user and lower not in set_by_user else lower
        raise ConfigError(key, f"{text}: {rule}")

    for i, impact in enumerate(IMPACTS):
        for u, urgency in enumerate(URGENCIES):
            here = matrix[impact][urgency]
            neighbours = []
            if i:
                neighbours.append((IMPACTS[i - 1], urgency))
            if u:
                neighbours.append((impact, URGENCIES[u - 1]))
            for up_impact, up_urgency in neighbours:
                up = matrix[up_impact][up_urgency]
                if rank(here) < rank(up):
                    blame(f"priority.matrix.{impact}.{urgency}",
                          f"priority.matrix.{up_impact}.{up_urgency}",
                          f"{impact} {_TIMES} {urgency} is {here} but "
                          f"{up_impact} {_TIMES} {up_urgency} is {up}")
    for tier in TIERS[1:]:
        if _IMPACT_RANK[tier_impact[tier]] < _IMPACT_RANK[tier_impact[tier - 1]]:
            blame(f"priority.tier_impact.{tier}", f"priority.tier_impact.{tier - 1}",
                  f"tier {tier} is {tier_impact[tier]} impact but tier {tier - 1} is "
                  f"{tier_impact[tier - 1]}")
    thresholds = [(level, users.get(level)) for level in IMPACTS[:-1]]
    known = [(level, n) for level, n in thresholds if n is not None]
    for (high, n_high), (low, n_low) in pairwise(known):
        if n_high < n_low:
            blame(f"priority.users.{low}", f"priority.users.{high}",
                  f"{low} needs {n_low:,} users but {high} only {n_high:,}")
    for s in range(1, len(SEVERITY_KEYS)):
        worse, milder = SEVERITY_KEYS[s - 1], SEVERITY_KEYS[s]
        if _URGENCY_RANK[severity_urgency[milder]] < _URGENCY_RANK[severity_urgency[worse]]:
            blame(f"priority.severity_urgency.{milder}", f"priority.severity_urgency.{worse}",
                  f"{milder} is {severity_urgency[milder]} urgency but {worse} is "
                  f"{severity_urgency[worse]}")
