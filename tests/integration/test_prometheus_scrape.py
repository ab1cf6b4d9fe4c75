"""A real Prometheus scrapes ``triage serve``: triage's series arrive with the values the
requests produced, queried through Prometheus's HTTP API, and triage's own alerting rules
(``deploy/prometheus/triage-rules.yml``) load and evaluate against them without errors.

Needs Debian's ``prometheus`` (skipped without it, except under ``CI=true``).
"""

from __future__ import annotations

import shutil
import urllib.parse
from pathlib import Path
from typing import Any

import orjson
import pytest

from tests.http.tools import daemon, free_port, http, require_binary, triage_serve, wait_until

pytestmark = pytest.mark.slow

RULES = Path(__file__).resolve().parents[2] / "deploy" / "prometheus" / "triage-rules.yml"


def prometheus_config(triage_port: int) -> str:
    return f"""
global: {{scrape_interval: 1s, evaluation_interval: 1s}}
rule_files: [triage-rules.yml]
scrape_configs:
  - job_name: triage-serve
    static_configs: [{{targets: ["127.0.0.1:{triage_port}"]}}]
"""


def query(base: str, expr: str) -> list[dict[str, Any]]:
    status, body = http("GET", f"{base}/api/v1/query?query={urllib.parse.quote(expr)}")
    assert status == 200, body
    data = orjson.loads(body)
    assert data["status"] == "success", data
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def value_of(base: str, expr: str) -> float | None:
    result = query(base, expr)
    return float(result[0]["value"][1]) if result else None


def test_prometheus_scrapes_triage_series(tmp_path: Path) -> None:
    binary = require_binary("prometheus")
    triage_port, prom_port = free_port(), free_port()
    prom_dir = tmp_path / "prometheus"
    prom_dir.mkdir()
    (prom_dir / "prometheus.yml").write_text(prometheus_config(triage_port))
    shutil.copy(RULES, prom_dir / "triage-rules.yml")
    prom = f"http://127.0.0.1:{prom_port}"
    triage = f"http://127.0.0.1:{triage_port}"

    with triage_serve(tmp_path, port=triage_port, config="{}\n"):
        for i in range(3):
            status, _ = http("POST", f"{triage}/api/v1/alerts", orjson.dumps(
                {"alertname": f"DiskFull{i}", "service": "db", "severity": "warning"}))
            assert status == 200
        status, _ = http("POST", f"{triage}/webhook", b"{not json")
        assert status == 400
        with daemon([binary, f"--config.file={prom_dir / 'prometheus.yml'}",
                     f"--storage.tsdb.path={prom_dir / 'data'}",
                     f"--web.listen-address=127.0.0.1:{prom_port}"],
                    log=prom_dir / "prometheus.log", ready_url=f"{prom}/-/ready"):
            expr = 'triage_alerts_received_total{job="triage-serve", source="generic"}'
            wait_until(lambda: value_of(prom, expr) == 3, timeout=20,
                       what="Prometheus to have scraped triage", interval=0.25)
            assert value_of(prom, 'up{job="triage-serve"}') == 1
            assert value_of(prom, 'triage_alerts_received_total{source="unknown"}') == 1
            assert value_of(prom, 'triage_alerts_dead_lettered_total{error="DecodeError"}') == 1
            assert value_of(prom, 'triage_alerts_outcomes_total{outcome="triaged"}') == 3
            assert value_of(prom, "triage_active_alerts") == 3
            assert value_of(prom, 'triage_stage_seconds_count{stage="intake"}') == 4
            assert value_of(prom, 'triage_noise_model_info{version="none"}') == 1
            # series from every metric family, under the names the dashboard and rules use
            names = {r["metric"]["__name__"] for r in query(prom, '{__name__=~"triage_.+"}')}
            assert {"triage_alerts_received_total", "triage_alerts_outcomes_total",
                    "triage_incidents_created_total", "triage_stage_seconds_bucket",
                    "triage_open_incidents", "triage_silences",
                    "triage_http_requests_total"} <= names

            # triage's own alerting rules are loaded and evaluate without error
            def rules_evaluated() -> list[dict[str, Any]] | None:
                _, body = http("GET", f"{prom}/api/v1/rules")
                groups = orjson.loads(body)["data"]["groups"]
                rules = [r for g in groups for r in g["rules"]]
                return rules if rules and all(r.get("lastEvaluation", "").startswith("2")
                                              and not r["lastEvaluation"].startswith("0001")
                                              for r in rules) else None

            rules = wait_until(rules_evaluated, timeout=10, what="the rules to evaluate",
                               interval=0.25)
            assert {r["name"] for r in rules} >= {"TriageConsumerLagHigh",
                                                   "TriageWorkerStalled"}
            assert all(r["health"] == "ok" for r in rules), rules
