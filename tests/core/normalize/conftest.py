"""Payload loaders for the normalizer tests.

Real payloads live in the shared data folder beside the repository (never copied in);
payloads written from vendor documentation live in ``tests/fixtures/payloads``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[3]
SHARED_PAYLOADS = REPO / ".." / "shared" / "data" / "payloads"
FIXTURE_PAYLOADS = REPO / "tests" / "fixtures" / "payloads"


def read_payload(name: str) -> Any:
    """A payload by file name, from the shared real payloads or the repo's fixtures. A real
    payload in a clone without the shared folder beside it skips the test, except under
    ``CI=true``, where the folder must be there."""
    for folder in (SHARED_PAYLOADS, FIXTURE_PAYLOADS):
        path = folder / name
        if path.exists():
            return json.loads(path.read_text(encoding="utf-8"))
    if not SHARED_PAYLOADS.is_dir() and os.environ.get("CI") != "true":
        pytest.skip(f"{name}: ../shared/data is not beside the repository",
                    allow_module_level=True)
    raise FileNotFoundError(name)


@pytest.fixture
def payload() -> Callable[[str], Any]:
    """Factory: ``payload("grafana-webhook-docs-example.json")`` gives a fresh decoded copy."""
    return read_payload
