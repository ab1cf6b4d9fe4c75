"""Deterministic alert storms for the demo and the benchmarks.

A storm is a list of JSON Lines payloads in the formats real senders use. ``demo_storm``
scripts one of everything stage 1 handles; ``repeat_storm`` is the benchmark shape: many
Alertmanager webhook deliveries where most alerts are repeats of already-firing ones.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import orjson

from triage.core.timeutil import format_timestamp

T0 = 1795773600.0  # 2026-11-27T10:00:00Z, a Friday (the demo maintenance window is on)


def ts(offset: float) -> str:
    """RFC 3339 time ``offset`` seconds after ``T0``."""
    stamp = format_timestamp(T0 + offset)
    assert stamp is not None
    return stamp


def am_alert(labels: dict[str, str], start: float, *, end: float | None = None,
             status: str = "firing", summary: str = "") -> dict[str, Any]:
    """One alert as Alertmanager puts it in a webhook."""
    return {
        "status": status,
        "labels": labels,
        "annotations": {"summary": summary or f"{labels.get('alertname')} on "
                                              f"{labels.get('instance', '?')}"},
        "startsAt": ts(start),
        "endsAt": ts(end) if end is not None else "0001-01-01T00:00:00Z",
        "generatorURL": "http://prometheus:9090/graph?g0.expr=up",
    }


def am_webhook(alerts: list[dict[str, Any]], receiver: str = "triage") -> dict[str, Any]:
    """An Alertmanager webhook v4 body around ``alerts``."""
    common = dict(alerts[0]["labels"]) if alerts else {}
    for a in alerts[1:]:
        common = {k: v for k, v in common.items() if a["labels"].get(k) == v}
    status = "firing" if any(a["status"] == "firing" for a in alerts) else "resolved"
    return {
        "version": "4",
        "groupKey": '{}:{alertname="' + common.get("alertname", "") + '"}',
        "truncatedAlerts": 0,
        "status": status,
        "receiver": receiver,
        "groupLabels": {"alertname": common.get("alertname", "")},
        "commonLabels": common,
        "commonAnnotations": {},
        "externalURL": "http://alertmanager:9093",
        "alerts": alerts,
    }


def envelope(received: float, payload: Any) -> dict[str, Any]:
    """Wrap a payload with the time it was received (what the receivers write)."""
    return {"received_at": ts(received), "payload": payload}


def demo_storm() -> list[bytes]:
    """The scripted demo storm: one of everything stage 1 handles, in time order."""
    events: list[tuple[float, Any]] = []
    add = events.append

    # 1. cartservice errors on 3 instances, re-sent every 30 s by BOTH Alertmanager HA peers.
    cart = [{"alertname": "HighErrorRate", "service": "cartservice", "severity": "critical",
             "instance": f"cartservice-{i}:7070", "job": "cartservice"} for i in range(3)]
    for k in range(20):
        t = 60 + 30 * k
        resolved = k == 19
        body = am_webhook([am_alert(lbl, 60, end=t if resolved else None,
                                    status="resolved" if resolved else "firing",
                                    summary="5xx ratio above 5%") for lbl in cart])
        add((t, envelope(t, body)))
        add((t + 0.2, envelope(t + 0.2, dict(body, receiver="triage-peer-2"))))

    # 2. Prometheus posting to the Alertmanager API v2 (endsAt = valid until), then stopping.
    for k in range(6):
        t = 90 + 60 * k
        add((t, envelope(t, [{"labels": {"alertname": "HighLatencyP99", "service": "frontend",
                                          "severity": "warning", "replica": f"prom-{k % 2}"},
                                "annotations": {"summary": "p99 latency above 1s",
                                                "value": "1.42"},
                                "startsAt": ts(90), "endsAt": ts(t + 240),
                                "generatorURL": "http://prometheus:9090/graph"}])))

    # 3. Grafana: redis memory, firing then resolved.
    for t, status in ((120, "firing"), (420, "resolved")):
        add((t, envelope(t, {
            "receiver": "triage", "status": status, "orgId": 1, "version": "1",
            "groupKey": "{}:{}", "truncatedAlerts": 0, "state": "alerting",
            "title": f"[{status.upper()}:1] redis memory", "groupLabels": {},
            "commonLabels": {}, "commonAnnotations": {}, "externalURL": "http://grafana:3000/",
            "alerts": [{"status": status,
                        "labels": {"alertname": "RedisMemoryHigh", "service": "redis-cart",
                                   "severity": "warning"},
                        "annotations": {"summary": "redis-cart memory above 90%"},
                        "startsAt": ts(120), "endsAt": ts(420) if status == "resolved"
                        else "0001-01-01T00:00:00Z",
                        "generatorURL": "http://grafana:3000/alerting/grafana/abc/view",
                        "fingerprint": "0000000000000000", "values": {"B": 91.5, "C": 1}}],
        })))

    # 4. PagerDuty Events v2: a payment gateway trigger and its resolve (dedup_key only).
    add((150, envelope(150, {"routing_key": "R0UT1NGKEY0123456789012345678901",
                             "event_action": "trigger", "dedup_key": "payments-gw-timeouts",
                             "payload": {"summary": "Payment gateway timeouts above 2%",
                                         "source": "paymentservice-7d9f", "severity": "error",
                                         "component": "paymentservice", "group": "checkout",
                                         "class": "GatewayTimeouts", "timestamp": ts(150)}})))
    add((510, envelope(510, {"routing_key": "R0UT1NGKEY0123456789012345678901",
                             "event_action": "resolve", "dedup_key": "payments-gw-timeouts"})))

    # 5. CloudWatch through SNS: an RDS CPU alarm and its OK.
    for t, state in ((200, "ALARM"), (560, "OK")):
        alarm = {"AlarmName": "orders-db-cpu-high", "AlarmDescription": "RDS CPU above 80%",
                 "AWSAccountId": "123456789012", "NewStateValue": state,
                 "NewStateReason": "Threshold Crossed: 1 datapoint [93.1 (27/11/26 10:03:00)] "
                                   "was greater than the threshold (80.0).",
                 "StateChangeTime": ts(t).replace("Z", "+0000"), "Region": "EU (Ireland)",
                 "AlarmArn": "arn:aws:cloudwatch:eu-west-1:123456789012:alarm:orders-db-cpu-high",
                 "OldStateValue": "OK" if state == "ALARM" else "ALARM",
                 "Trigger": {"MetricName": "CPUUtilization", "Namespace": "AWS/RDS",
                             "Statistic": "AVERAGE", "Period": 60, "EvaluationPeriods": 1,
                             "ComparisonOperator": "GreaterThanThreshold", "Threshold": 80.0,
                             "Dimensions": [{"name": "DBInstanceIdentifier",
                                             "value": "orders-db"}]}}
        add((t, envelope(t, {"Type": "Notification", "MessageId": f"msg-{t}",
                             "TopicArn": "arn:aws:sns:eu-west-1:123456789012:alarms",
                             "Subject": f'{state}: "orders-db-cpu-high" in EU (Ireland)',
                             "Message": orjson.dumps(alarm).decode(), "Timestamp": ts(t),
                             "SignatureVersion": "1", "Signature": "EXAMPLE",
                             "SigningCertURL": "https://sns.example/cert.pem",
                             "UnsubscribeURL": "https://sns.example/unsubscribe"})))

    # 6. A script's generic alert below the tuned disk threshold (noise), and one above it.
    for t, value, host in ((240, 0.71, "node-3"), (250, 0.96, "node-4")):
        add((t, envelope(t, {"alertname": "HostOutOfDiskSpace", "service": "node",
                             "instance": host, "severity": "warning", "value": value,
                             "summary": f"disk {value:.0%} full", "at": ts(t)})))

    # 7. A flapping link: firing/resolved every 30 s for 5 minutes.
    for k in range(10):
        t = 300 + 30 * k
        add((t, envelope(t, {"alertname": "NodeNetworkInterfaceFlapping", "service": "node",
                             "instance": "node-7", "severity": "warning",
                             "status": "firing" if k % 2 == 0 else "resolved", "at": ts(t)})))

    # 8. shippingservice alerts during its weekly maintenance window; Watchdog (silenced).
    for t in (330, 360):
        add((t, envelope(t, am_webhook([am_alert(
            {"alertname": "PodCrashLooping", "service": "shippingservice",
             "severity": "warning", "instance": "shippingservice-0"}, 330)]))))
        add((t, envelope(t, am_webhook([am_alert(
            {"alertname": "Watchdog", "severity": "none"}, 0)]))))

    # 9. A silence arriving on the input (Alertmanager API v2 shape), then alerts it mutes.
    add((400, envelope(400, {"matchers": [{"name": "alertname", "value": "CPUThrottlingHigh",
                                           "isRegex": False, "isEqual": True}],
                             "startsAt": ts(400), "endsAt": ts(4000), "createdBy": "alice",
                             "comment": "known: limits being raised in JIRA-123"})))
    add((430, envelope(430, am_webhook([am_alert(
        {"alertname": "CPUThrottlingHigh", "service": "adservice", "severity": "info",
         "instance": "adservice-0"}, 430)]))))

    events.sort(key=lambda e: e[0])
    lines = [orjson.dumps(payload) for _, payload in events]
    # 10. Bad input, interleaved: every kind of failure is dead-lettered, nothing is lost.
    bad = [
        b"this is not json",
        b'{"version": "4", "groupKey": "{}", "status": "firing", "alerts": '
        b'[{"status": "firing", "annotations": {}, "startsAt": "2026-11-27T10:05:00Z"}]}',
        b'{"alertname": "BadTime", "at": "yesterday-ish"}',
        b'{"hello": "world"}',
        b'{"alertname": "WrongTypes", "labels": {"service": ["a", "b"]}}',
    ]
    for i, line in enumerate(bad):
        lines.insert(5 + 9 * i, line)
    return lines


def boutique_storm() -> list[bytes]:
    """The incident demo: a bad cartservice deploy cascading to its callers, and the noise
    around it, on the Online Boutique topology (``demo_assets/boutique-services.yaml``).

    What a responder expects: one P1 incident for the cascade with cartservice as its root
    cause and the 09:58 deploy as the top suspect; a separate, lower-priority incident for an
    unrelated adservice slowdown later; noise suppressed, the flapping alert held.
    """
    events: list[tuple[float, Any]] = []
    add = events.append

    # Change records arrive on the same stream (or from changes_file / the changes topic).
    for t, cid, svc, kind, desc, who in (
        (-12600, "deploy-7713", "redis-cart", "deploy", "redis 7.2.4 patch", "ci-bot"),
        (-5400, "flag-checkout-v2", "frontend", "feature_flag", "new checkout button", "pm"),
        (-2400, "cfg-1182", "adservice", "config", "ad cache TTL 60s", "bob"),
        (-120, "deploy-8812", "cartservice", "deploy", "v2.3.1: new redis client pool",
         "ci-bot"),
        (-60, "deploy-8813", "emailservice", "deploy", "template fix", "ci-bot"),
    ):
        add((t, {"id": cid, "service": svc, "kind": kind, "at": ts(t),
                 "description": desc, "author": who}))

    # 1. The cascade: cartservice errors, then its callers, re-sent every 60 s by both
    #    Alertmanager HA peers until the rollback at 10:20.
    cascade = [
        (60, {"alertname": "HighErrorRate", "service": "cartservice", "severity": "critical"},
         3, 1200),
        (100, {"alertname": "HighErrorRate", "service": "checkoutservice",
               "severity": "error"}, 2, 1260),
        (130, {"alertname": "HighLatencyP99", "service": "frontend", "severity": "critical"},
         3, 1290),
        (150, {"alertname": "KubePodCrashLooping", "service": "cartservice",
               "severity": "warning"}, 1, 1180),
    ]
    for start, base, instances, end in cascade:
        labels = [{**base, "instance": f"{base['service']}-{i}", "job": base["service"],
                   "namespace": "boutique"} for i in range(instances)]
        t = start
        while t <= end:
            resolved = t + 60 > end
            body = am_webhook([am_alert(lbl, start, end=end if resolved else None,
                                        status="resolved" if resolved else "firing")
                               for lbl in labels])
            add((t, envelope(t, body)))
            add((t + 0.3, envelope(t + 0.3, dict(body, receiver="triage-peer-2"))))
            if resolved:
                break
            t = min(t + 60, end)

    # 2. Noise: a disk alert below its tuned threshold, the Watchdog (silenced), a patch
    #    window on shippingservice, a flapping link on a node outside the service graph.
    for t, value, host in ((240, 0.71, "node-3"), (600, 0.74, "node-5")):
        add((t, envelope(t, {"alertname": "HostOutOfDiskSpace", "service": "node",
                             "instance": host, "severity": "warning", "value": value,
                             "at": ts(t)})))
    for t in (30, 330, 630):
        add((t, envelope(t, am_webhook([am_alert({"alertname": "Watchdog",
                                                  "severity": "none"}, 0)]))))
        add((t, envelope(t, am_webhook([am_alert(
            {"alertname": "KubePodNotReady", "service": "shippingservice",
             "severity": "warning", "instance": "shippingservice-0"}, 30)]))))
    for k in range(12):
        t = 200 + 25 * k
        add((t, envelope(t, {"alertname": "NodeNetworkInterfaceFlapping", "service": "node",
                             "instance": "node-7", "severity": "warning",
                             "status": "firing" if k % 2 == 0 else "resolved",
                             "at": ts(t)})))

    # 3. Later and unrelated: adservice slows down after the cascade is over (PagerDuty).
    add((2700, envelope(2700, {
        "routing_key": "R0UT1NGKEY0123456789012345678901", "event_action": "trigger",
        "dedup_key": "adservice-latency", "payload": {
            "summary": "adservice p99 above 500ms", "source": "adservice-5c9f",
            "severity": "warning", "component": "adservice", "class": "SlowResponses",
            "timestamp": ts(2700)}})))
    add((3300, envelope(3300, {"routing_key": "R0UT1NGKEY0123456789012345678901",
                               "event_action": "resolve", "dedup_key": "adservice-latency"})))
    # a last line an hour later moves the clock on, so the adservice incident resolves
    add((4500, envelope(4500, am_webhook([am_alert({"alertname": "Watchdog",
                                                    "severity": "none"}, 0)]))))

    events.sort(key=lambda e: e[0])
    lines = [orjson.dumps(payload) for _, payload in events]
    for i, line in enumerate([b"{not json", b'{"alertname": "NoTime", "at": "soon"}']):
        lines.insert(20 + 40 * i, line)
    return lines


def repeat_storm(n_alerts: int, *, repeat_fraction: float = 0.9, per_payload: int = 10,
                 seed: int = 7) -> Iterator[bytes]:
    """Alertmanager webhook deliveries totalling ``n_alerts`` alerts, of which about
    ``repeat_fraction`` repeat an alert that is already firing (the shape of a storm)."""
    rng = random.Random(seed)
    unique = max(1, int(n_alerts * (1 - repeat_fraction)))
    services = [f"svc-{i:03d}" for i in range(200)]
    rules = ["HighErrorRate", "HighLatencyP99", "PodCrashLooping", "HostHighCpuLoad",
             "KubePodNotReady", "RedisDown", "TargetDown", "HostOutOfMemory"]
    labelsets = []
    for i in range(unique):
        svc = services[i % len(services)]
        labelsets.append({"alertname": rules[(i // len(services)) % len(rules)], "service": svc,
                          "severity": ("critical", "warning", "info")[i % 3],
                          "instance": f"{svc}-{i}:9100", "job": svc, "namespace": "prod"})
    sent = 0
    t = 0.0
    fresh = 0
    while sent < n_alerts:
        batch: list[dict[str, Any]] = []
        for _ in range(min(per_payload, n_alerts - sent)):
            if fresh < unique and (fresh == 0 or rng.random() >= repeat_fraction
                                   or unique - fresh >= n_alerts - sent - len(batch)):
                idx = fresh
                fresh += 1
            else:
                idx = rng.randrange(max(fresh, 1))
            batch.append(am_alert(labelsets[idx], float(idx % 600)))
        sent += len(batch)
        t += 0.01
        yield orjson.dumps(envelope(600 + t, am_webhook(batch)))
