from __future__ import annotations

import doctest
from typing import Any

import networkx as nx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from triage.core.incidents import priority as priority_module
from triage.core.incidents.priority import (
    DEFAULT_MATRIX,
    IMPACTS,
    PRIORITIES,
    SEVERITY_KEYS,
    URGENCIES,
    Classification,
    PriorityPolicy,
    classify_priority,
    keep_highest,
    max_priority,
    parse_priority,
    rank,
)
from triage.core.topology import ServiceInfo, Topology
from triage.errors import ConfigError

TIMES = "\N{MULTIPLICATION SIGN}"


# --- factories -------------------------------------------------------------------------------


def make_topology(
    edges: list[tuple[str, str]] | None = None,
    business_tiers: dict[str, int] | None = None,
    **infos: dict[str, Any],
) -> Topology:
    """Edges A->B (A depends on B); keyword arguments are catalog entries."""
    graph = nx.DiGraph(edges or [])
    services = {name: ServiceInfo(name, **fields) for name, fields in infos.items()}
    return Topology(graph, services, business_tiers)


def classify(
    services: list[str],
    severities: list[str],
    topology: Topology,
    policy: PriorityPolicy | None = None,
    **kwargs: Any,
) -> Classification:
    return classify_priority(services=services, severities=severities, topology=topology,
                             policy=policy or PriorityPolicy(), **kwargs)


@pytest.fixture
def shop() -> Topology:
    # frontend -> checkout -> cart -> redis; mobile-api -> cart
    return make_topology(
        [("frontend", "checkout"), ("checkout", "cart"), ("cart", "redis"),
         ("mobile-api", "cart"), ("frontend", "ads")],
        business_tiers={"online-shop": 1},
        frontend={"team": "storefront", "tier": 2, "users": 40_000},
        **{"mobile-api": {"team": "mobile", "tier": 2, "users": 10_000}},
        checkout={"team": "checkout", "tier": 2},
        cart={"team": "cart", "tier": 3, "business_service": "online-shop"},
        redis={"team": "platform", "tier": 2},
        ads={"team": "ads", "tier": 4},
    )


# --- matrix and levels -----------------------------------------------------------------------


def test_default_matrix_corners() -> None:
    m = PriorityPolicy().matrix
    assert m["critical"]["high"] == "P1"
    assert m["low"]["low"] == "P4"
    assert m["critical"]["low"] == "P2"
    assert m["low"]["high"] == "P3"
    assert set(m) == set(IMPACTS) and all(set(row) == set(URGENCIES) for row in m.values())


@pytest.mark.parametrize(("tier", "severity", "expected"), [
    (1, "critical", "P1"),  # critical x high
    (4, "info", "P4"),  # low x low
    (1, "info", "P3"),  # critical x low is P2, capped: only info and no user-facing symptom
    (4, "critical", "P3"),  # low x high
    (3, "warning", "P3"),  # medium x medium
])
def test_matrix_corners_through_classify(tier: int, severity: str, expected: str) -> None:
    topo = make_topology(svc={"tier": tier})
    assert classify(["svc"], [severity], topo).priority == expected


def test_rank_and_max_priority() -> None:
    assert [rank(p) for p in PRIORITIES] == [1, 2, 3, 4]
    assert max_priority("P2", "P1") == max_priority("P1", "P2") == "P1"
    assert max_priority("P4", "P3") == "P3"
    with pytest.raises(ValueError, match="not a priority"):
        rank("P5")


# --- impact ----------------------------------------------------------------------------------


def test_own_tier_sets_impact() -> None:
    topo = make_topology(pay={"tier": 1})
    c = classify(["pay"], ["warning"], topo)
    assert c.impact == "critical"
    assert "impact critical: pay is tier 1" in c.reasons


def test_business_service_tier_raises_impact(shop: Topology) -> None:
    c = classify(["cart"], ["warning"], shop)
    assert c.impact == "critical"
    assert c.reasons[1] == "impact critical: cart serves online-shop, a tier 1 business service"


def test_own_tier_equal_to_business_tier_names_both() -> None:
    topo = make_topology(business_tiers={"shop": 1}, cart={"tier": 1, "business_service": "shop"})
    c = classify(["cart"], ["error"], topo)
    assert "impact critical: cart is tier 1 (business service shop)" in c.reasons


def test_unknown_tier_counts_as_tier_3_and_says_so() -> None:
    topo = make_topology(mystery={})
    c = classify(["mystery"], ["warning"], topo)
    assert c.impact == "medium"
    assert "impact medium: mystery has no tier in the catalog, counted as tier 3" in c.reasons


def test_unknown_tier_is_reported_even_when_not_decisive() -> None:
    topo = make_topology(pay={"tier": 1}, a={}, b={})
    c = classify(["pay", "b", "a"], ["warning"], topo)
    assert c.impact == "critical"
    assert "a and b have no tier in the catalog (counted as tier 3)" in c.reasons


def test_unknown_tier_is_configurable() -> None:
    topo = make_topology(mystery={})
    policy = parse_priority({"unknown_tier": 2})
    assert classify(["mystery"], ["warning"], topo, policy).impact == "high"


def test_service_not_in_graph_or_catalog() -> None:
    c = classify(["ghost"], ["critical"], make_topology())
    assert (c.impact, c.users_affected, c.user_facing) == ("medium", 0, ())


def test_several_services_at_the_best_tier_are_counted() -> None:
    topo = make_topology(a={"tier": 2}, b={"tier": 2}, c={"tier": 3})
    c = classify(["c", "b", "a"], ["warning"], topo)
    assert c.reasons[1] == "impact high: a is tier 2 (and 1 more service at tier 2)"


def test_users_behind_the_failure_are_risk_not_impact(shop: Topology) -> None:
    # redis has no users itself; frontend and mobile-api depend on it through cart
    c = classify(["redis"], ["error"], shop)
    assert c.users_affected == 0 and c.user_facing == ()
    assert c.users_at_risk == 50_000 and c.at_risk == ("frontend", "mobile-api")
    assert c.impact == "high"  # redis is tier 2
    assert ("risk: 50,000 users of frontend (40,000) and mobile-api (10,000) depend on the "
            "failing services") in c.reasons


def test_users_single_service_reason() -> None:
    topo = make_topology([("web", "db")], web={"tier": 4, "users": 50_000}, db={"tier": 4})
    c = classify(["db", "web"], ["warning"], topo)
    assert c.impact == "high"
    assert c.reasons[1] == "impact high: 50,000 users see the failure at web"


def test_risk_does_not_flow_down_the_graph(shop: Topology) -> None:
    # ads is a dependency of frontend: an ads failure does not reach checkout's callers
    c = classify(["ads"], ["warning"], shop)
    assert c.at_risk == ("frontend",)
    assert c.users_at_risk == 40_000 and c.users_affected == 0


@pytest.mark.parametrize(("users", "impact"), [
    (0, "low"), (999, "low"), (1_000, "medium"), (10_000, "high"), (100_000, "critical"),
])
def test_users_thresholds(users: int, impact: str) -> None:
    topo = make_topology(web={"tier": 4, "users": users})
    assert classify(["web"], ["info"], topo).impact == impact


def test_users_thresholds_configurable_and_can_be_turned_off() -> None:
    topo = make_topology(web={"tier": 4, "users": 5_000})
    assert classify(["web"], ["info"], topo, parse_priority({"users": {"high": 5000}})
                    ).impact == "high"
    off = parse_priority({"users": {"critical": None, "high": None, "medium": None}})
    assert classify(["web"], ["info"], topo, off).impact == "low"


def test_no_services() -> None:
    c = classify([], [], make_topology())
    assert (c.priority, c.impact, c.urgency) == ("P4", "low", "low")


# --- urgency ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("severity", "urgency"), [
    ("critical", "high"), ("error", "medium"), ("warning", "medium"), ("info", "low"),
    ("", "low"), ("bogus", "low"), ("CRITICAL", "high"),
])
def test_severity_urgency(severity: str, urgency: str) -> None:
    topo = make_topology(db={"tier": 3})
    assert classify(["db"], [severity], topo).urgency == urgency


def test_worst_severity_wins_and_is_named() -> None:
    topo = make_topology(db={"tier": 3}, cache={"tier": 3})
    c = classify(["db", "cache"], ["info", "critical", "warning"], topo,
                 service_severities={"db": "critical", "cache": "warning"})
    assert c.urgency == "high"
    assert "urgency high: severity critical on db" in c.reasons


def test_no_severity_at_all() -> None:
    c = classify(["db"], [], make_topology(db={"tier": 3}))
    assert c.urgency == "low"
    assert "urgency low: no alert has a severity" in c.reasons


def test_errors_reaching_users_raise_urgency(shop: Topology) -> None:
    c = classify(["frontend", "checkout"], ["warning"], shop)
    assert c.urgency == "high"
    assert "urgency high: errors reach users directly at frontend (user-facing)" in c.reasons


def test_info_on_user_facing_service_stays_low(shop: Topology) -> None:
    assert classify(["frontend"], ["info"], shop).urgency == "low"


def test_user_facing_rule_uses_the_services_own_severity(shop: Topology) -> None:
    c = classify(["frontend", "checkout"], ["info", "warning"], shop,
                 service_severities={"frontend": "info", "checkout": "warning"})
    assert c.urgency == "medium"


def test_dependents_alone_raise_neither_impact_nor_urgency(shop: Topology) -> None:
    # frontend is in the blast radius but not alerting: risk only
    c = classify(["cart"], ["warning"], shop)
    assert c.urgency == "medium"
    assert c.users_affected == 0 and c.users_at_risk == 50_000


def test_only_warnings_and_no_user_facing_symptom_is_at_most_p3(shop: Topology) -> None:
    c = classify(["cart"], ["warning"], shop)  # tier 1 business service: P2 uncapped
    assert c.priority == "P3"
    assert c.reasons[0] == f"P3 = capped: only warnings and no user-facing symptom (P2 = " \
        f"impact critical {TIMES} urgency medium)"
    assert classify(["cart"], ["error"], shop).priority == "P2"  # an error is not capped
    assert classify(["cart", "frontend"], ["warning"], shop).priority == "P1"  # users see it
    off = parse_priority({"cap_without_user_impact": None})
    assert classify(["cart"], ["warning"], shop, off).priority == "P2"


def test_symptomatic_names_the_user_facing_services_users_see_failing(shop: Topology) -> None:
    # frontend alerts, but only with a resource trend: its users are not counted
    c = classify(["cart", "frontend"], ["warning"], shop, symptomatic=["cart"])
    assert c.users_affected == 0 and c.priority == "P3"


def test_user_facing_rule_can_be_turned_off(shop: Topology) -> None:
    policy = parse_priority({"user_facing_urgency": None})
    assert classify(["frontend"], ["warning"], shop, policy).urgency == "medium"


# --- the whole classification ----------------------------------------------------------------


def test_reasons_explain_a_p1(shop: Topology) -> None:
    c = classify(["cart", "checkout", "frontend"], ["critical", "warning"], shop,
                 service_severities={"cart": "critical", "checkout": "warning",
                                     "frontend": "warning"})
    assert c.priority == "P1"
    assert c.reasons == (
        f"P1 = impact critical {TIMES} urgency high",
        "impact critical: cart serves online-shop, a tier 1 business service",
        "impact high: 40,000 users see the failure at frontend",
        "urgency high: severity critical on cart",
        "errors reach users directly at frontend (user-facing)",
        "risk: 10,000 users of mobile-api depend on the failing services",
    )


def test_users_reason_comes_first_when_decisive() -> None:
    topo = make_topology(web={"tier": 4, "users": 200_000})
    c = classify(["web"], ["critical"], topo)
    assert c.impact == "critical"
    assert c.reasons[1].startswith("impact critical: 200,000 users")
    assert c.reasons[2] == "impact low: web is tier 4"


def test_deterministic_whatever_the_input_order(shop: Topology) -> None:
    a = classify(["redis", "frontend", "cart"], ["warning", "critical"], shop)
    b = classify(["cart", "frontend", "redis", "cart"], ["critical", "warning"], shop)
    assert a == b


def test_keep_highest_never_falls_silently(shop: Topology) -> None:
    high = classify(["cart"], ["critical"], shop)
    low = classify(["ads"], ["info"], shop)
    kept = keep_highest(high, low)
    assert kept.priority == high.priority == "P1"
    assert kept.reasons[0].startswith("P1 kept: priority never falls (now P")
    assert keep_highest(low, high) is high
    assert keep_highest(None, low) is low


def test_custom_matrix_cell() -> None:
    topo = make_topology(pay={"tier": 1})
    policy = parse_priority({"matrix": {"critical": {"medium": "P1"}}})
    assert classify(["pay"], ["error"], topo, policy).priority == "P1"
    assert classify(["pay"], ["error"], topo).priority == "P2"


# --- monotonic property ----------------------------------------------------------------------

NODES = [f"s{i}" for i in range(8)]
SEVERITY_ORDER = ["", "info", "warning", "error", "critical"]


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    edges = draw(st.lists(st.tuples(st.integers(0, 7), st.integers(0, 7))
                          .filter(lambda e: e[0] < e[1]), max_size=14))
    infos = {}
    for name in NODES:
        infos[name] = ServiceInfo(
            name,
            tier=draw(st.none() | st.integers(1, 4)),
            users=draw(st.sampled_from([0, 0, 500, 5_000, 60_000])),
            business_service=draw(st.none() | st.sampled_from(["b1", "b2", "b3"])),
        )
    graph = nx.DiGraph([(NODES[a], NODES[b]) for a, b in edges])
    return Topology(graph, infos, {"b1": 1, "b2": 3})  # b3 has no tier


@settings(max_examples=300, deadline=None)
@given(
    topo=topologies(),
    base=st.dictionaries(st.sampled_from(NODES), st.integers(0, 4), max_size=5),
    extra=st.dictionaries(st.sampled_from(NODES), st.integers(0, 4), max_size=4),
    bumps=st.lists(st.integers(0, 4), min_size=8, max_size=8),
    per_service=st.booleans(),
    user_facing_rule=st.booleans(),
)
def test_more_services_or_worse_severities_never_lower_priority(
    topo: Topology, base: dict[str, int], extra: dict[str, int], bumps: list[int],
    per_service: bool, user_facing_rule: bool,
) -> None:
    policy = parse_priority({} if user_facing_rule else {"user_facing_urgency": None})
    grown = dict(base)
    for name, level in extra.items():
        grown[name] = max(grown.get(name, 0), level)
    for i, name in enumerate(NODES):  # raise some severities
        if name in grown:
            grown[name] = min(4, grown[name] + bumps[i])

    def run(alerts: dict[str, int]) -> Classification:
        sev = {s: SEVERITY_ORDER[level] for s, level in alerts.items()}
        return classify(list(alerts), list(sev.values()), topo, policy,
                        service_severities=sev if per_service else None)

    before, after = run(base), run(grown)
    assert rank(after.priority) <= rank(before.priority), (before.reasons, after.reasons)
    assert IMPACTS.index(after.impact) <= IMPACTS.index(before.impact)
    assert URGENCIES.index(after.urgency) <= URGENCIES.index(before.urgency)
    assert after.users_affected >= before.users_affected


# --- config ----------------------------------------------------------------------------------


def test_parse_defaults() -> None:
    assert parse_priority(None) == parse_priority({}) == PriorityPolicy()
    assert PriorityPolicy().matrix == DEFAULT_MATRIX


def test_parse_full_section_and_env_strings() -> None:
    policy = parse_priority({
        "matrix": {"Critical": {"medium": "p1"}},
        "tier_impact": {"3": "high", 4: "medium"},
        "unknown_tier": "2",
        "users": {"high": "5000"},
        "severity_urgency": {"error": "high", "warning": "high", "info": "medium",
                             "none": "medium"},
        "user_facing_urgency": "medium",
    })
    assert policy.matrix["critical"]["medium"] == "P1"
    assert policy.tier_impact[3] == "high" and policy.tier_impact[4] == "medium"
    assert policy.unknown_tier == 2
    assert policy.users["high"] == 5000 and policy.users["critical"] == 100_000
    assert policy.severity_urgency["warning"] == "high"
    assert policy.user_facing_urgency == "medium"


@pytest.mark.parametrize(("data", "key"), [
    ([1, 2], "priority"),
    ({"matrix": {"high": {"low": "P5"}}}, "priority.matrix.high.low"),
    ({"matrix": {"high": {"low": 2}}}, "priority.matrix.high.low"),
    ({"matrix": {"severe": {"low": "P2"}}}, "priority.matrix.severe"),
    ({"matrix": {"high": {"urgent": "P2"}}}, "priority.matrix.high.urgent"),
    ({"matrix": {"high": "P1"}}, "priority.matrix.high"),
    ({"matrix": "P1"}, "priority.matrix"),
    ({"colour": "red"}, "priority.colour"),
    ({"tier_impact": {5: "low"}}, "priority.tier_impact.5"),
    ({"tier_impact": {"one": "low"}}, "priority.tier_impact.one"),
    ({"tier_impact": {1: "huge"}}, "priority.tier_impact.1"),
    ({"unknown_tier": 0}, "priority.unknown_tier"),
    ({"unknown_tier": True}, "priority.unknown_tier"),
    ({"users": {"high": -1}}, "priority.users.high"),
    ({"users": {"high": 1.5}}, "priority.users.high"),
    ({"users": {"low": 10}}, "priority.users.low"),
    ({"severity_urgency": {"fatal": "high"}}, "priority.severity_urgency.fatal"),
    ({"severity_urgency": {"info": "urgent"}}, "priority.severity_urgency.info"),
    ({"user_facing_urgency": "now"}, "priority.user_facing_urgency"),
])
def test_config_errors_name_the_key(data: object, key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_priority(data)
    assert err.value.key == key


@pytest.mark.parametrize(("data", "key"), [
    # a lower cell set above its neighbour: the user's cell is named
    ({"matrix": {"low": {"low": "P1"}}}, "priority.matrix.low.low"),
    ({"matrix": {"critical": {"high": "P4"}}}, "priority.matrix.critical.high"),
    ({"tier_impact": {4: "critical"}}, "priority.tier_impact.4"),
    ({"tier_impact": {1: "low"}}, "priority.tier_impact.1"),
    ({"users": {"medium": 500_000}}, "priority.users.medium"),
    ({"users": {"critical": 10}}, "priority.users.critical"),
    ({"severity_urgency": {"info": "high"}}, "priority.severity_urgency.info"),
    ({"severity_urgency": {"critical": "low"}}, "priority.severity_urgency.critical"),
])
def test_non_monotone_config_is_rejected(data: object, key: str) -> None:
    with pytest.raises(ConfigError, match="must never give a lower priority") as err:
        parse_priority(data)
    assert err.value.key == key


def test_direct_construction_is_validated() -> None:
    with pytest.raises(ConfigError) as err:
        PriorityPolicy(matrix={"critical": {"high": "P1"}})
    assert err.value.key == "priority.matrix.critical.medium"
    with pytest.raises(ConfigError) as err:
        PriorityPolicy(severity_urgency={"critical": "high"})
    assert err.value.key == "priority.severity_urgency.error"


def test_policy_keeps_a_private_copy() -> None:
    matrix = {i: dict(row) for i, row in DEFAULT_MATRIX.items()}
    policy = PriorityPolicy(matrix=matrix)
    matrix["low"]["low"] = "P1"
    assert policy.matrix["low"]["low"] == "P4"


def test_severity_keys_cover_the_normalized_severities() -> None:
    from triage.core.types import SEVERITIES

    assert set(SEVERITIES) | {"none"} == set(SEVERITY_KEYS)


def test_doctests() -> None:
    assert doctest.testmod(priority_module).failed == 0
