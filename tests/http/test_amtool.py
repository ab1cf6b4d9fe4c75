"""Alertmanager's read and silence API on `triage serve`, driven by the real `amtool`
(Debian prometheus-alertmanager): silences with their own permission, kept across restarts,
expired like Alertmanager's; alerts readable; silences from alert senders refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson

from tests.http.tools import free_port, http, require_binary, triage_serve

CONFIG = "http:\n  token: sender-token\n  admin_token: admin-token\n"
SENDER = {"Authorization": "Bearer sender-token"}


def amtool(binary: str, port: int, auth: Path | None, *args: str) -> tuple[int, str]:
    extra = [f"--http.config.file={auth}"] if auth else []
    proc = subprocess.run([binary, f"--alertmanager.url=http://127.0.0.1:{port}", *extra,
                           *args], capture_output=True, timeout=60, check=False)
    out = "\n".join(line for line in (proc.stdout + proc.stderr).decode().splitlines()
                    if not line.startswith("Warning: amtool version"))
    return proc.returncode, out


def post_alert(port: int, name: str) -> dict[str, object]:
    status, body = http("POST", f"http://127.0.0.1:{port}/api/v2/alerts",
                        orjson.dumps([{"labels": {"alertname": name, "service": "db"}}]),
                        headers=SENDER)
    assert status == 200, body
    return orjson.loads(body)["alerts"][0]  # type: ignore[no-any-return]


def test_amtool_silences_and_queries_triage(tmp_path: Path) -> None:
    binary = require_binary("amtool")
    auth = tmp_path / "amtool-auth.yml"
    auth.write_text("authorization:\n  credentials: admin-token\n")
    port = free_port()
    with triage_serve(tmp_path, port=port, config=CONFIG):
        post_alert(port, "DiskFull")
        code, out = amtool(binary, port, auth, "alert", "query")
        assert code == 0 and "DiskFull" in out and "active" in out
        # the senders' token does not grant silences; an alert POST cannot smuggle one in
        code, out = amtool(binary, port, None, "silence", "add", "alertname=DiskFull",
                           "--comment=x")
        assert code != 0
        smuggled = orjson.dumps({"matchers": [{"name": "service", "value": "db",
                                               "isRegex": False}],
                                 "startsAt": "2026-01-01T00:00:00Z",
                                 "endsAt": "2099-01-01T00:00:00Z", "createdBy": "evil",
                                 "comment": "mute it all"})
        status, body = http("POST", f"http://127.0.0.1:{port}/api/v2/alerts", smuggled,
                            headers=SENDER)
        assert status == 403 and orjson.loads(body)["error"] == "UntrustedSilence"
        dead = [orjson.loads(x) for x in (tmp_path / "dead.jsonl").read_bytes().splitlines()]
        assert dead[-1]["error"] == "UntrustedSilence" and "mute it all" in dead[-1]["raw"]
        # a silence matching everything needs force, which amtool cannot send
        code, out = amtool(binary, port, auth, "silence", "add", 'alertname=~".+"',
                           "--comment=all")
        assert code != 0 and "matches every alert" in out
        code, silence_id = amtool(binary, port, auth, "silence", "add", "alertname=DiskFull",
                                  "--comment=db failover", "--duration=2h")
        assert code == 0 and silence_id.strip()
        assert post_alert(port, "DiskFull")["outcome"] == "suppressed"
        assert post_alert(port, "DiskFull2")["outcome"] == "accepted"
        code, out = amtool(binary, port, auth, "alert", "query", "-s", "alertname=DiskFull")
        assert "suppressed" in out
    # across a restart (same --state): still there, and expired like Alertmanager does
    with triage_serve(tmp_path, port=port, config=CONFIG):
        code, out = amtool(binary, port, auth, "silence", "query")
        assert silence_id.strip() in out and "db failover" in out
        code, _ = amtool(binary, port, auth, "silence", "expire", silence_id.strip())
        assert code == 0
        code, out = amtool(binary, port, auth, "silence", "query")
        assert silence_id.strip() not in out
        code, out = amtool(binary, port, auth, "silence", "query", "--expired")
        assert silence_id.strip() in out


def test_silences_need_their_own_token(tmp_path: Path) -> None:
    port = free_port()
    body = orjson.dumps({"matchers": [{"name": "alertname", "value": "X", "isRegex": False}],
                         "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
                         "createdBy": "me", "comment": "c"})
    url = f"http://127.0.0.1:{port}/api/v2/silences"
    with triage_serve(tmp_path, port=port, config="http:\n  token: sender-token\n"):
        status, answer = http("POST", url, body, headers=SENDER)
        assert status == 403 and b"http.admin_token" in answer
        assert http("GET", url, headers=SENDER)[0] == 200  # reading is not silencing
        assert http("GET", url)[0] == 401
        assert http("GET", f"http://127.0.0.1:{port}/api/v2/alerts", headers=SENDER)[0] == 200
        assert http("GET", f"http://127.0.0.1:{port}/api/v2/status", headers=SENDER)[0] == 200
