"""The dedup and flap settings reach the pipeline every runtime builds (``build_pipeline``).

A regression test: ``Pipeline`` once replaced the configured, still empty ``DedupStore``
(falsy: it has a length) by a default one, so every dedup and flap setting was ignored.
"""

from __future__ import annotations

from pathlib import Path

import orjson

from triage.app.bootstrap import build_pipeline
from triage.app.settings import load_settings


def line(at: float) -> bytes:
    return orjson.dumps({"alertname": "DiskFull", "service": "db", "at": at})


def test_the_configured_resolve_timeout_resolves_a_silent_alert(tmp_path: Path) -> None:
    cfg = tmp_path / "triage.yaml"
    cfg.write_text("dedup:\n  resolve_timeout: 60s\nintake:\n  sweep_interval: 5s\n")
    pipeline = build_pipeline(load_settings(cfg))
    assert [o.kind for o in pipeline.process(line(1000.0))] == ["triaged"]
    # 61 s without a repeat: resolved by the timeout (the default, 300 s, would not have)
    swept = pipeline.tick(1061.0)
    assert [(o.kind, o.alert.status) for o in swept] == [("triaged", "resolved")]


def test_the_configured_flap_policy_is_used(tmp_path: Path) -> None:
    cfg = tmp_path / "triage.yaml"
    cfg.write_text("flap:\n  enabled: false\n")
    pipeline = build_pipeline(load_settings(cfg))
    assert pipeline.dedup.flap.enabled is False
    assert build_pipeline(load_settings(None)).dedup.flap.enabled is True
