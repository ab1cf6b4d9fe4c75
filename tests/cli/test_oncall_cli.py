"""``triage oncall check``: exit codes, the gap table, the bundled demo rotations."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import Result
from typer.testing import CliRunner

from triage.cli import app

DEMO = Path(__file__).resolve().parents[2] / "src" / "triage" / "demo_assets" / "oncall.yaml"
GAPPY = """
oncall:
  rotations:
    - team: web
      members: [ana, bo]
      length: 1d
      handoff: "09:00"
      timezone: UTC
      start: 2026-11-02
      hours: "09:00-17:00"
    - team: db
      members: [cy]
      length: 7d
      handoff: "00:00"
      timezone: UTC
      start: 2026-11-01
"""


@pytest.fixture
def invoke(tmp_path: Path) -> Callable[..., Result]:
    """Run ``triage oncall check`` on a config text; returns the click Result."""

    def run(text: str, *args: str) -> Result:
        path = tmp_path / "triage.yaml"
        path.write_text(text)
        # A wide terminal, so rich does not wrap the table cells the tests look for.
        return CliRunner().invoke(app, ["oncall", "check", "--config", str(path), *args],
                                  env={"COLUMNS": "200"})

    return run


def test_a_gap_is_printed_and_exits_1(invoke: Callable[..., Result]) -> None:
    result = invoke(GAPPY, "--days", "2", "--start", "2026-11-02T00:00:00Z")
    assert result.exit_code == 1, result.output
    assert "2026-11-02 17:00" in result.output and "2026-11-03 09:00" in result.output
    assert "web" in result.output and "gap" in result.output
    assert "✗ 3 gap(s)" in result.output  # 00-09, 17-09 (next day), 17-24
    assert "db" in result.output and "covered" in result.output


def test_the_bundled_demo_rotations_cover_28_days(invoke: Callable[..., Result]) -> None:
    result = invoke(f"oncall_file: {DEMO}\n", "--days", "28", "--start", "2026-11-27")
    assert result.exit_code == 0, result.output
    assert "full coverage" in result.output
    for team in ("storefront", "checkout", "catalog", "cart", "platform"):
        assert team in result.output


def test_oncall_file_relative_to_the_config_and_key_errors_exit_2(
        invoke: Callable[..., Result], tmp_path: Path) -> None:
    (tmp_path / "rota.yaml").write_text(
        "rotations:\n  - {team: web, members: [a], length: 7d, handoff: '09:00',\n"
        "     timezone: Mars/Olympus, start: 2026-11-02}\n")
    result = invoke("oncall_file: rota.yaml\n", "--days", "1")
    assert result.exit_code == 2
    assert "oncall.rotations[0].timezone" in result.output


def test_bad_start_and_no_rotations(invoke: Callable[..., Result]) -> None:
    result = invoke(GAPPY, "--start", "next tuesday")
    assert result.exit_code == 2 and "--start" in result.output
    result = invoke("oncall: {}\n", "--days", "1")
    assert result.exit_code == 1 and "no on-call rotations" in result.output


def test_start_defaults_to_now(invoke: Callable[..., Result]) -> None:
    result = invoke(f"oncall_file: {DEMO}\n", "--days", "1")
    assert result.exit_code == 0, result.output
