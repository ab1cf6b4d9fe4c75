"""The mitigation log and its stabilization window, on SQLite and PostgreSQL; and PromQL
criteria checked against a real Prometheus (Debian's package) scraping a real exporter."""

from __future__ import annotations

import asyncio
import time
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.desk.test_updates import p1_events
from tests.http.tools import daemon, free_port, http, require_binary, wait_until
from triage.desk import lifecycle as lc
from triage.desk import mitigation as mt
from triage.desk.checks import PromChecker
from triage.desk.rules import ConflictError, MissingError, RuleError
from triage.desk.store import DeskStore


def opened(store: DeskStore, events: list[dict[str, Any]]) -> tuple[str, float]:
    evs = p1_events(events)
    store.ingest(evs)
    iid = evs[0]["incident"]["id"]
    row = store.incident(iid)
    assert row is not None
    t0 = row["triggered_at"]
    store.act(iid, lambda r, log: lc.set_status(r, log, "acknowledged", actor="ana",
                                                at=t0 + 60))
    return iid, t0


def test_an_incident_resolves_only_once_its_mitigation_has_held_for_its_window(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    with DeskStore(desk_url) as store:
        iid, t0 = opened(store, events)
        h = store.act(iid, lambda r, log: lc.add_entry(
            r, log, "hypothesis", "the 14:02 deploy broke checkout", actor="ana",
            at=t0 + 100))[0]["seq"]
        note = store.act(iid, lambda r, log: lc.add_entry(
            r, log, "observation", "errors at 30%", actor="ana", at=t0 + 100))[0]["seq"]
        with pytest.raises(ConflictError, match="not a hypothesis"):
            store.act(iid, lambda r, log: mt.add_mitigation(
                r, log, "roll back", actor="ana", at=t0 + 120, hypothesis=note))
        with pytest.raises(RuleError, match="not both"):
            store.act(iid, lambda r, log: mt.add_mitigation(
                r, log, "roll back", actor="ana", at=t0 + 120, promql="up", manual="x"))
        m = store.act(iid, lambda r, log: mt.add_mitigation(
            r, log, "roll back deploy-8812", actor="ana", at=t0 + 120, hypothesis=h,
            manual="checkout error rate under 1% on the dashboard"))[0]["seq"]

        def resolve(at: float, reason: str | None = None) -> list[dict[str, Any]]:
            return store.act(iid, lambda r, log: lc.set_status(
                r, log, "resolved", actor="ana", at=at, reason=reason))

        def checked(at: float, holds: bool) -> None:
            store.act(iid, lambda r, log: mt.check(r, log, m, holds, actor="bo", at=at))

        with pytest.raises(ConflictError, match="have not held yet"):
            resolve(t0 + 130)
        checked(t0 + 200, True)
        checked(t0 + 300, False)  # it slipped: the window starts again at the next hold
        checked(t0 + 400, True)
        with pytest.raises(ConflictError, match="held for 5 of 10 minutes"):
            resolve(t0 + 700)
        with pytest.raises(MissingError):
            store.act(iid, lambda r, log: mt.check(r, log, 999, True, actor="bo", at=t0))
        rows = resolve(t0 + 1000)  # 600 s after the hold began
        assert rows[0]["body"]["to"] == "resolved" and "overrode" not in rows[0]["body"]
        listed = mt.mitigations(store.log(iid))
        assert [(x["seq"], x["hypothesis"], len(x["checks"]), x["held_since"]) for x in listed] \
            == [(m, h, 3, t0 + 400)]
        kinds = [e["type"] for e in store.timeline(iid)]
        assert "mitigation" in kinds


def test_a_reason_overrides_the_window_and_the_log_says_so(
        desk_url: str, events: list[dict[str, Any]]) -> None:
    with DeskStore(desk_url) as store:
        iid, t0 = opened(store, events)
        store.act(iid, lambda r, log: mt.add_mitigation(
            r, log, "fail over to us-east", actor="ana", at=t0 + 120, promql="up == 1"))
        rows = store.act(iid, lambda r, log: lc.set_status(
            r, log, "resolved", actor="ana", at=t0 + 130,
            reason="customers confirm it works; the metric lags"))
        assert "have not held yet" in rows[0]["body"]["overrode"]


def test_promql_criteria_are_checked_against_a_real_prometheus(
        tmp_path: Path, events: list[dict[str, Any]]) -> None:
    """A real exporter's error ratio, scraped by a real Prometheus every second: the
    criterion fails while the ratio is high, holds once it drops, and the incident may
    resolve after the (2 s) window."""
    from prometheus_client import CollectorRegistry, Gauge, start_http_server

    binary = require_binary("prometheus")
    registry = CollectorRegistry()
    ratio = Gauge("checkout_error_ratio", "errors / requests", registry=registry)
    ratio.set(0.3)
    exporter_port, prom_port = free_port(), free_port()
    server, _thread = start_http_server(exporter_port, addr="127.0.0.1", registry=registry)
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    (prom_dir / "prometheus.yml").write_text(
        "global: {scrape_interval: 1s}\nscrape_configs:\n  - job_name: shop\n"
        f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n")
    prom = f"http://127.0.0.1:{prom_port}"

    def series(expr: str) -> list[Any]:
        status, body = http("GET", f"{prom}/api/v1/query?query={urllib.parse.quote(expr)}")
        assert status == 200, body
        return list(orjson.loads(body)["data"]["result"])

    store = DeskStore(f"sqlite:///{tmp_path / 'desk.db'}")
    try:
        with daemon([binary, f"--config.file={prom_dir / 'prometheus.yml'}",
                     f"--storage.tsdb.path={prom_dir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}"],
                    log=prom_dir / "prometheus.log", ready_url=f"{prom}/-/ready"):
            wait_until(lambda: bool(series("checkout_error_ratio")), timeout=30,
                       what="Prometheus to scrape the exporter", interval=0.25)
            iid, _ = opened(store, events)
            m = store.act(iid, lambda r, log: mt.add_mitigation(
                r, log, "roll back", actor="ana", at=time.time(),
                promql="checkout_error_ratio < 0.05", window=2.0))[0]["seq"]
            checker = PromChecker(store, prom, time.time)
            bad = store.act(iid, lambda r, log: mt.add_mitigation(
                r, log, "typo", actor="ana", at=time.time(), promql="rate(", window=0))
            store.act(iid, lambda r, log: mt.set_outcome(r, log, bad[0]["seq"], "abandoned",
                                                         actor="ana", at=time.time()))
            assert asyncio.run(checker.run_once()) == 1
            assert [c["holds"] for c in mt.mitigations(store.log(iid))[0]["checks"]] == [False]
            ratio.set(0.01)
            wait_until(lambda: bool(series("checkout_error_ratio < 0.05")), timeout=30,
                       what="the new ratio to be scraped", interval=0.25)
            assert asyncio.run(checker.run_once()) == 1
            with pytest.raises(ConflictError, match="held for"):
                store.act(iid, lambda r, log: lc.set_status(r, log, "resolved", actor="ana",
                                                            at=time.time()))
            time.sleep(2.1)
            asyncio.run(checker.run_once())
            rows = store.act(iid, lambda r, log: lc.set_status(r, log, "resolved",
                                                               actor="ana", at=time.time()))
            assert rows[0]["body"]["to"] == "resolved"
            checks = mt.mitigations(store.log(iid))[0]["checks"]
            assert [c["holds"] for c in checks] == [False, True, True]
            assert all(c["source"] == "prometheus" for c in checks)
            assert m == mt.mitigations(store.log(iid))[0]["seq"]
    finally:
        store.close()
        server.shutdown()
