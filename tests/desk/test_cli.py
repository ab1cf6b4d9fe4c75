"""``triage desk ingest`` and ``triage incident ...`` as a user runs them, on a SQLite file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson

TRIAGE = str(Path(sys.executable).with_name("triage"))


def triage(*args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run([TRIAGE, *args], capture_output=True, text=True, timeout=120,
                          env={"PATH": "/usr/bin:/bin", "TRIAGE_ACTOR": "ana"})
    if ok:
        assert done.returncode == 0, done.stderr
    return done


def test_a_responder_works_an_incident_from_the_command_line(
        tmp_path: Path, events: list[dict[str, Any]]) -> None:
    created = next(e for e in events if e["type"] == "incident.created")
    iid = created["incident"]["id"]
    path = tmp_path / "incidents.jsonl"
    path.write_bytes(orjson.dumps(created) + b"\n" + b"{broken\n")
    db = str(tmp_path / "desk.db")
    dead = tmp_path / "dead.jsonl"
    said = triage("desk", "ingest", "--db", db, "-i", str(path), "--dead-letter", str(dead))
    assert "1 events applied, 0 seen before, 1 dead-lettered" in said.stderr
    letter = orjson.loads(dead.read_bytes())
    assert letter["raw"] == "{broken" and letter["line"] == 2 and letter["error"]
    triage("incident", "ack", iid, "--db", db)
    triage("incident", "note", iid, "error rate at baseline", "--type", "negative_finding",
           "--pin", "--db", db)
    triage("incident", "role", iid, "incident_commander", "bo", "--note", "takes over",
           "--db", db)
    refused = triage("incident", "status", iid, "closed", "--db", db, ok=False)
    assert refused.returncode == 1 and "closed only follows resolved" in refused.stderr
    listed = [orjson.loads(line) for line in triage(
        "incident", "list", "--db", db, "--json").stdout.splitlines()]
    assert [(i["id"], i["status"], i["commander"]) for i in listed] == [
        (iid, "acknowledged", "bo")]
    shown = orjson.loads(triage("incident", "show", iid, "--db", db, "--json").stdout)
    kinds = [(e["type"], e["author"]) for e in shown["timeline"]]
    assert kinds == [("alert", "triage"), ("status_update", "ana"),
                     ("negative_finding", "ana"), ("role_change", "ana")]
    assert shown["timeline"][2]["pinned"] is True
    missing = triage("incident", "show", "inc-nope", "--db", db, ok=False)
    assert missing.returncode == 1 and "no incident" in missing.stderr


def test_the_demo_opens_the_desk_and_the_storm_s_incidents_arrive_in_it(
        tmp_path: Path) -> None:
    """``triage demo --desk``: the demo's incidents arrive in a desk served on a port, which
    a browser signs in to with the token the demo prints."""
    import http.cookiejar
    import re
    import socket
    import time
    import urllib.parse
    import urllib.request

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([TRIAGE, "demo", "--out", str(tmp_path / "demo"), "--desk",
                             "--port", str(port), "--speed", "600"],
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={"PATH": "/usr/bin:/bin", "COLUMNS": "200"})
    try:
        said = ""
        deadline = time.monotonic() + 60
        while "token" not in said and time.monotonic() < deadline:
            said += proc.stderr.readline() if proc.stderr else ""
        token = re.search(r"token (\S+)", said)
        assert token, said
        jar = http.cookiejar.CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                opener.open(base + "/login", data=urllib.parse.urlencode(
                    {"token": token.group(1)}).encode(), timeout=5)
                break
            except OSError:
                time.sleep(0.2)
        page = ""
        for _ in range(100):  # the storm's 45 minutes at 600x: under 5 s
            page = opener.open(base + "/?status=all", timeout=5).read().decode()
            if page.count('href="/incidents/') == 2:
                break
            time.sleep(0.2)
        assert page.count('href="/incidents/') == 2 and "cartservice" in page
    finally:
        proc.terminate()
        proc.wait(30)


def test_desk_serve_tells_a_webhook_receiver_of_a_new_incident(
        tmp_path: Path, events: list[dict[str, Any]]) -> None:
    """``desk serve`` with a route in ``desk.notify``: triage's events posted to the API,
    and the receiver gets the incident, in the Alertmanager webhook format."""
    import http.server
    import socket
    import threading
    import time
    import urllib.request

    import yaml

    got: list[dict[str, Any]] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(orjson.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    receiver = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=receiver.serve_forever, daemon=True).start()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    config = tmp_path / "desk.yaml"
    config.write_text(yaml.safe_dump({"desk": {
        "url": f"sqlite:///{tmp_path / 'desk.db'}", "port": port,
        "tokens": [{"name": "triage", "token": "admin-token-000001", "role": "admin"}],
        "notify": [{"name": "tickets", "format": "alertmanager", "kinds": ["triggered"],
                    "url": f"http://127.0.0.1:{receiver.server_address[1]}/hook"}]}}))
    proc = subprocess.Popen([TRIAGE, "desk", "serve", "--config", str(config)],
                            stderr=subprocess.PIPE, env={"PATH": "/usr/bin:/bin"})
    created = next(e for e in events if e["type"] == "incident.created")
    try:
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/api/v1/events", data=orjson.dumps(created),
            headers={"Authorization": "Bearer admin-token-000001"})
        for _ in range(100):
            try:
                urllib.request.urlopen(request, timeout=5)
                break
            except OSError:
                time.sleep(0.2)
        deadline = time.monotonic() + 30
        while not got and time.monotonic() < deadline:
            time.sleep(0.2)
        assert got and got[0]["version"] == "4"
        assert got[0]["alerts"][0]["labels"]["incident"] == created["incident"]["id"]
    finally:
        proc.terminate()
        proc.wait(30)
        receiver.shutdown()


def test_a_bad_route_is_named_in_the_config_error(tmp_path: Path) -> None:
    config = tmp_path / "desk.yaml"
    config.write_text("desk:\n  notify:\n    - {name: x, url: 'ftp://nope', format: slack}\n")
    done = triage("incident", "list", "--config", str(config), ok=False)
    assert done.returncode == 2 and "desk.notify[0].url" in done.stderr


def test_the_command_line_goes_through_the_api_when_one_is_configured(
        tmp_path: Path, events: list[dict[str, Any]]) -> None:
    """``desk.api_url`` and ``desk.api_token`` set: ``triage incident`` calls the desk's API
    (a real ``desk serve``), and what it writes is recorded under the token's name."""
    import socket
    import time

    import yaml

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    db = f"sqlite:///{tmp_path / 'desk.db'}"
    created = next(e for e in events if e["type"] == "incident.created")
    iid = created["incident"]["id"]
    path = tmp_path / "incidents.jsonl"
    path.write_bytes(orjson.dumps(created) + b"\n")
    triage("desk", "ingest", "--db", db, "-i", str(path))
    server_config = tmp_path / "server.yaml"
    server_config.write_text(yaml.safe_dump({"desk": {"url": db, "port": port, "tokens": [
        {"name": "oncall-bot", "token": "responder-token-0009", "role": "responder"}]}}))
    proc = subprocess.Popen([TRIAGE, "desk", "serve", "--config", str(server_config)],
                            stderr=subprocess.DEVNULL, env={"PATH": "/usr/bin:/bin"})
    env = {"PATH": "/usr/bin:/bin", "TRIAGE_ACTOR": "ana",
           "TRIAGE_DESK__API_URL": f"http://127.0.0.1:{port}",
           "TRIAGE_DESK__API_TOKEN": "responder-token-0009"}

    def call(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([TRIAGE, "incident", *args], capture_output=True, text=True,
                              timeout=60, env=env)

    try:
        for _ in range(100):
            if call("list").returncode == 0:
                break
            time.sleep(0.2)
        assert call("ack", iid).returncode == 0
        again = call("ack", iid)
        assert again.returncode == 1 and "acknowledged already" in again.stderr
        assert call("note", iid, "checkout latency is up", "--type", "observation")\
            .returncode == 0
        assert call("mitigate", iid, "roll back", "--manual", "errors down").returncode == 0
        assert call("change", iid, "cartservice", "--what", "pool 50 -> 200", "--why",
                    "exhausted", "--rollback", "back to 50").returncode == 0
        assert call("access", iid, "prod-db", "--why", "slow query log").returncode == 0
        shown = orjson.loads(call("show", iid, "--json").stdout)
        assert shown["incident"]["status"] == "acknowledged"
        # (the desk's own reminders are "desk"; what the command line did is the token's)
        posted = [e for e in shown["timeline"] if e["author"] not in ("triage", "desk")]
        assert posted and {e["author"] for e in posted} == {"oncall-bot"}
        listed = call("list", "--unattended", "0")
        assert listed.returncode == 0
        missing = call("show", "inc-nope")
        assert missing.returncode == 1 and "no incident" in missing.stderr
    finally:
        proc.terminate()
        proc.wait(30)


def test_triage_run_hands_its_incidents_to_the_desk_once(tmp_path: Path) -> None:
    """``triage run --desk``: the run's incident events land on the desk; running it again
    (a replay) changes nothing there."""
    from rich.console import Console

    from triage.app.demo import demo_config_path, run_demo
    from triage.desk.store import DeskStore

    run_demo(tmp_path / "demo", Console(quiet=True))  # writes the demo's storm.jsonl
    storm = tmp_path / "demo" / "storm.jsonl"
    db = tmp_path / "desk.db"
    args = ("run", "--config", str(demo_config_path()), "-i", str(storm), "-o",
            str(tmp_path / "incidents.jsonl"), "--desk", str(db), "--force")
    assert "desk: 6 incident events applied, 0 seen before" in triage(*args).stderr
    assert "desk: 0 incident events applied, 6 seen before" in triage(*args).stderr
    with DeskStore(f"sqlite:///{db}") as store:
        assert {r["priority"] for r in store.incidents()} == {"P1", "P3"}
    refused = triage("run", "-i", str(storm), "--desk", str(db), ok=False)
    assert refused.returncode == 2 and "give --output FILE" in refused.stderr


def test_the_config_examples_in_docs_desk_md_are_valid(tmp_path: Path) -> None:
    import re

    from triage.app.settings import load_settings

    doc = (Path(__file__).resolve().parents[2] / "docs" / "desk.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", doc, re.S)
    assert len(blocks) >= 2
    for i, block in enumerate(blocks):
        path = tmp_path / f"example-{i}.yaml"
        path.write_text(block)
        assert load_settings(path).desk is not None


def test_emergency_changes_and_access_from_the_command_line(
        tmp_path: Path, events: list[dict[str, Any]]) -> None:
    created = next(e for e in events if e["type"] == "incident.created")
    iid = created["incident"]["id"]
    path = tmp_path / "incidents.jsonl"
    path.write_bytes(orjson.dumps(created) + b"\n")
    db = str(tmp_path / "desk.db")
    triage("desk", "ingest", "--db", db, "-i", str(path))
    triage("incident", "change", iid, "cartservice", "--what", "pool size 50 -> 200",
           "--why", "connections exhausted", "--rollback", "set it back to 50",
           "--risk", "high", "--db", db)
    change = orjson.loads(triage("incident", "show", iid, "--db", db, "--json").stdout)[
        "timeline"][-1]
    own = triage("incident", "approve", iid, str(change["seq"]), "--db", db, ok=False)
    assert own.returncode == 1 and "needs an approver other than ana" in own.stderr
    triage("incident", "approve", iid, str(change["seq"]), "--db", db, "--as", "bo")
    triage("incident", "access", iid, "prod-db", "--why", "read the slow query log",
           "--minutes", "30", "--db", db)
    shown = orjson.loads(triage("incident", "show", iid, "--db", db, "--json").stdout)
    request = shown["timeline"][-1]["seq"]
    refused = triage("incident", "grant", iid, str(request), "--db", db, ok=False)
    assert refused.returncode == 1  # nobody grants their own access
    triage("incident", "grant", iid, str(request), "--db", db, "--as", "bo")
    triage("incident", "revoke", iid, str(request), "--reason", "done", "--db", db)
    bad = triage("incident", "access", iid, "prod-db", "--why", "x", "--level", "root",
                 "--db", db, ok=False)
    assert bad.returncode == 1 and "level" in bad.stderr
    shown = orjson.loads(triage("incident", "show", iid, "--db", db, "--json").stdout)
    kinds = [(e["type"], e["author"]) for e in shown["timeline"]][1:]
    assert kinds[0] == ("change", "ana") and ("change", "bo") in kinds
    assert [k for k in kinds if k[0] == "access_grant"][-3:] == [
        ("access_grant", "ana"), ("access_grant", "bo"), ("access_grant", "ana")]
