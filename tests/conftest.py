"""Shared fixtures. Fixtures are factories; time is a plain float passed in."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from triage.core.types import Alert

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


def make_alert(
    name: str = "HighErrorRate",
    *,
    status: str = "firing",
    starts_at: float = 1000.0,
    ends_at: float | None = None,
    at: float | None = None,
    source: str = "alertmanager-webhook",
    value: float | None = None,
    fingerprint: str | None = None,
    **labels: str,
) -> Alert:
    """An Alert with sensible defaults; extra keyword arguments become labels."""
    lbls = {"alertname": name, "service": "cartservice", **labels}
    alert = Alert(labels=lbls, annotations={}, status=status,  # type: ignore[arg-type]
                  starts_at=starts_at, ends_at=ends_at,
                  at=at if at is not None else starts_at, source=source, value=value)
    alert.fingerprint = fingerprint or "fp-" + ",".join(f"{k}={v}" for k, v in sorted(lbls.items()))
    return alert


@pytest.fixture
def alert_factory() -> Callable[..., Alert]:
    return make_alert


@pytest.fixture
def shared_data() -> Path:
    """The real data beside the repository; without it the test skips, except under
    ``CI=true``, where it must be there."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"{SHARED_DATA} is missing (CI runs with ../shared beside the clone)")
        pytest.skip("../shared/data is not beside the repository")
    return SHARED_DATA


def webhook(*alerts: dict[str, Any]) -> dict[str, Any]:
    """A minimal Alertmanager webhook v4 body."""
    return {"version": "4", "groupKey": "{}:{}", "status": "firing", "receiver": "triage",
            "groupLabels": {}, "commonLabels": {}, "commonAnnotations": {},
            "externalURL": "http://am", "alerts": list(alerts)}


def pytest_sessionstart(session: pytest.Session) -> None:
    if not hasattr(session.config, "workerinput"):  # the xdist controller, or no xdist
        from tests.faults import report
        report.REPORT.unlink(missing_ok=True)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    from tests.faults import report
    rows = report.read()
    if not rows:
        return
    terminalreporter.section("fault injection: losses (must all be 0)")
    for fault, expected, kept in rows:
        terminalreporter.write_line(f"{fault:<66} expected {expected:>5}  kept {kept:>5}  "
                                    f"lost {expected - kept}")
