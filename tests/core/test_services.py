"""``ServiceMapper``: which service an alert is about."""

from __future__ import annotations

import dataclasses

import pytest

from triage.core.services import ServiceMapper

KEYS = ("service", "app.kubernetes.io/name", "app", "job")


def test_first_configured_key_wins_regardless_of_label_order() -> None:
    m = ServiceMapper(KEYS)
    labels = {"job": "kubernetes-pods", "app": "cartservice", "service": "checkoutservice"}
    assert m.service_of(labels) == "checkoutservice"
    assert m.service_of({"job": "kubernetes-pods", "app": "cartservice"}) == "cartservice"


def test_empty_label_falls_back_to_the_next_key() -> None:
    m = ServiceMapper(KEYS)
    assert m.service_of({"service": "", "app.kubernetes.io/name": "", "job": "node"}) == "node"


def test_no_key_present_is_none() -> None:
    assert ServiceMapper(KEYS).service_of({"alertname": "Watchdog", "severity": "none"}) is None
    assert ServiceMapper(()).service_of({"service": "cartservice"}) is None


def test_aliases_are_exact_matches_applied_after_the_key_lookup() -> None:
    m = ServiceMapper(KEYS, {"cart": "cartservice", "redis": "redis-cart"})
    assert m.service_of({"app": "cart"}) == "cartservice"
    assert m.service_of({"job": "redis"}) == "redis-cart"
    assert m.service_of({"app": "cart-v2"}) == "cart-v2"  # no prefix matching
    assert m.service_of({"app": "Cart"}) == "Cart"  # no case folding


def test_create_accepts_settings_lists_and_copies_them() -> None:
    keys = ["app", "job"]
    aliases = {"cart": "cartservice"}
    m = ServiceMapper.create(keys, aliases)
    keys.insert(0, "service")
    aliases["cart"] = "something-else"
    assert m.label_keys == ("app", "job")
    assert m.service_of({"service": "x", "app": "cart"}) == "cartservice"
    assert ServiceMapper.create(["app"]).aliases == {}


def test_mapper_is_frozen() -> None:
    m = ServiceMapper(KEYS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        m.label_keys = ("app",)  # type: ignore[misc]
