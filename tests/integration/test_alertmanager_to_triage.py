"""A real Alertmanager with ``triage serve`` as its webhook receiver: alerts posted to
Alertmanager come out of triage as incident events, with Alertmanager's own fingerprints,
through bearer-token auth, and resolve when Alertmanager sends the resolution.

Needs Debian's ``prometheus-alertmanager`` (skipped without it, except under ``CI=true``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.http.tools import (
    daemon,
    free_port,
    http,
    require_binary,
    triage_serve,
    wait_until,
)

pytestmark = pytest.mark.slow

TOKEN = "it-s3cret"
TRIAGE_CONFIG = f"""
http: {{token: {TOKEN}}}
# seconds instead of minutes, so the whole life of an incident fits in the test
correlation: {{page_delay: 1s, quiet_period: 1s, update_interval: 0s}}
"""


def alertmanager_config(triage_port: int) -> str:
    return f"""
route:
  receiver: triage
  group_by: [service]
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: triage
    webhook_configs:
      - url: http://127.0.0.1:{triage_port}/webhook
        send_resolved: true
        http_config:
          authorization: {{type: Bearer, credentials: {TOKEN}}}
"""


def iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + "Z"


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [orjson.loads(line) for line in path.read_bytes().splitlines() if line.strip()]


def test_alerts_posted_to_alertmanager_come_out_of_triage_as_incidents(tmp_path: Path) -> None:
    binary = require_binary("prometheus-alertmanager", "alertmanager")
    triage_port, am_port = free_port(), free_port()
    am_dir = tmp_path / "alertmanager"
    am_dir.mkdir()
    (am_dir / "am.yml").write_text(alertmanager_config(triage_port))
    am = f"http://127.0.0.1:{am_port}"
    out = tmp_path / "events.jsonl"

    with triage_serve(tmp_path, port=triage_port, config=TRIAGE_CONFIG), daemon(
        [binary, f"--config.file={am_dir / 'am.yml'}", f"--storage.path={am_dir}",
         f"--web.listen-address=127.0.0.1:{am_port}", "--cluster.listen-address="],
        log=am_dir / "am.log", ready_url=f"{am}/-/ready",
    ):
        now = time.time()
        labels = [{"alertname": "HighErrorRate", "service": "checkout", "severity": "critical"},
                  {"alertname": "HighLatency", "service": "checkout", "severity": "warning"}]
        firing = [{"labels": lbl, "annotations": {"summary": "it broke"},
                   "startsAt": iso(now - 5), "endsAt": iso(now + 3600)} for lbl in labels]
        status, body = http("POST", f"{am}/api/v2/alerts", orjson.dumps(firing))
        assert status == 200, body

        created = wait_until(
            lambda: next((e for e in events(out) if e["type"] == "incident.created"), None),
            timeout=20, what="an incident.created from triage")
        incident = created["incident"]
        assert incident["services"] == ["checkout"]
        assert incident["alert_count"] == 2
        # triage's fingerprints are Alertmanager's own
        _, listed = http("GET", f"{am}/api/v2/alerts")
        am_fingerprints = sorted(a["fingerprint"] for a in orjson.loads(listed))
        assert incident["fingerprints"] == am_fingerprints

        # resolve both in Alertmanager: it sends the resolution, the incident resolves
        resolved = [{**a, "endsAt": iso(time.time() - 1)} for a in firing]
        status, body = http("POST", f"{am}/api/v2/alerts", orjson.dumps(resolved))
        assert status == 200, body
        wait_until(lambda: next((e for e in events(out) if e["type"] == "incident.resolved"),
                                None), timeout=20, what="an incident.resolved from triage")

        _, exposition = http("GET", f"http://127.0.0.1:{triage_port}/metrics")
        samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                   for f in text_string_to_metric_families(exposition.decode())
                   for s in f.samples}
        assert samples[("triage_alerts_received_total",
                        (("source", "alertmanager-webhook"),))] >= 4
        assert samples[("triage_incidents_created_total",
                        (("priority", incident["priority"]),))] == 1
        # every webhook was authorised: none refused, none dead-lettered
        assert not any(name == "triage_http_requests_total" and dict(lbl).get("code") == "401"
                       and value for (name, lbl), value in samples.items())
    assert not (tmp_path / "dead.jsonl").read_bytes()
    assert [e["type"] for e in events(out)].count("incident.created") == 1
