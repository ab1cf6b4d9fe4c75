"""The desk's web console in a real headless Chromium (Debian's chromium and chromium-driver,
through Selenium): sign in, find the P1, acknowledge it with a key, post a note with
Ctrl+Enter, take command; on a real server over SQLite.

Without Chromium the test skips, except under ``CI=true``, where it fails (``make test``
installs it: ``deploy/test-tools``). ``TRIAGE_SCREENSHOTS=DIR`` also saves the pages'
screenshots there (``docs/desk-*.png`` were taken so)."""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import web

from triage.desk.api import Token, create_desk_app
from triage.desk.store import DeskStore

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
DRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
TOKEN = Token("ana", "responder-token-0001", "responder")


def demo_events() -> list[dict[str, Any]]:
    """The demo storm's incident events before triage saw them resolve: a P1 and a P3,
    both still firing, as an on-call engineer finds them."""
    from rich.console import Console

    from triage.app.demo import run_demo
    with tempfile.TemporaryDirectory() as tmp:
        run_demo(Path(tmp), Console(quiet=True))
        events = [orjson.loads(line) for line in
                  (Path(tmp) / "incidents.jsonl").read_bytes().splitlines()]
    return [e for e in events if e["type"] != "incident.resolved"]


@pytest.fixture
def desk_server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A desk on a real port over a SQLite store holding the demo's incidents: (base URL,
    the P1's id). The clock is the P1's time plus 15 minutes (it has no commander yet)."""
    events = demo_events()
    p1 = next(e for e in events if e["incident"]["priority"] == "P1")
    store = DeskStore(f"sqlite:///{tmp_path / 'desk.db'}")
    store.ingest(events)
    t0 = store.incident(p1["incident"]["id"])["triggered_at"]  # type: ignore[index]
    app = create_desk_app(store, [TOKEN], clock=lambda: t0 + 900)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(app)
    started = threading.Event()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(runner.setup())
        loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", port).start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(30)
    try:
        yield f"http://127.0.0.1:{port}", p1["incident"]["id"]
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
        store.close()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    if not (os.path.exists(CHROMIUM) and os.path.exists(DRIVER)):
        message = ("Chromium and its driver not found (install: sudo apt-get install "
                   "chromium chromium-driver; make test does it as root)")
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                 "--window-size=1200,900", f"--user-data-dir={tmp_path / 'chromium'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def shot(driver: Any, name: str) -> None:
    where = os.environ.get("TRIAGE_SCREENSHOTS")
    if where:
        driver.save_screenshot(str(Path(where) / f"desk-{name}.png"))


def test_an_on_call_engineer_takes_up_the_p1_in_the_browser(
        desk_server: tuple[str, str], browser: Any) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    base, p1 = desk_server
    wait = WebDriverWait(browser, 15)
    browser.get(base + "/")
    wait.until(ec.presence_of_element_located((By.ID, "token")))  # signed out: login
    shot(browser, "login")
    browser.find_element(By.ID, "token").send_keys(TOKEN.secret + Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.ID, "incidents")))
    rows = browser.find_elements(By.CSS_SELECTOR, "#incidents tbody tr")
    assert len(rows) == 2
    first = rows[0].text
    assert "P1" in first and "cartservice" in first
    assert "none (15 min ago)" in first  # a P1 with no commander after 10 minutes: flagged
    shot(browser, "list")

    browser.find_element(By.CSS_SELECTOR, f"a[href='/incidents/{p1}']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "triggered"))
    assert "proposed: zoe.martin" in browser.find_element(By.ID, "commander").text
    # the failing part of the dependency graph, root cause marked, callers above callees
    graph = browser.find_element(By.ID, "dependencies")
    nodes = {g.get_attribute("data-service"): g for g in
             graph.find_elements(By.CSS_SELECTOR, "g.node")}
    assert "root" in nodes["cartservice"].get_attribute("class").split()
    assert len(nodes) >= 2 and graph.find_elements(By.CSS_SELECTOR, "line.calls")
    y = {name: float(g.find_element(By.TAG_NAME, "rect").get_attribute("y"))
         for name, g in nodes.items()}
    assert any(y[name] < y["cartservice"] for name in nodes)  # its callers, above it
    browser.find_element(By.TAG_NAME, "body").send_keys("a")  # the key acknowledges
    wait.until(ec.text_to_be_present_in_element((By.ID, "status"), "acknowledged"))

    browser.find_element(By.TAG_NAME, "body").send_keys("n")  # the key goes to the note box
    note = browser.switch_to.active_element
    assert note.get_attribute("id") == "note-text"
    note.send_keys("checkout errors follow cart latency")
    note.send_keys(Keys.CONTROL, Keys.ENTER)
    wait.until(ec.text_to_be_present_in_element((By.ID, "timeline"),
                                                "checkout errors follow cart latency"))
    entry = browser.find_elements(By.CSS_SELECTOR, "#timeline li")[0]
    assert "observation" in entry.text.lower() and "ana" in entry.text

    browser.find_element(By.CSS_SELECTOR, "form[action$='/roles'] button").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "commander"), "ana"))

    # a status update to customers, from the template; one naming a service is refused
    from selenium.webdriver.support.ui import Select
    Select(browser.find_element(By.NAME, "audience")).select_by_value("customers")
    browser.find_element(By.XPATH, "//button[text()='Use template']").click()
    wait.until(ec.presence_of_element_located(
        (By.XPATH, "//button[text()='Record as sent to customers']")))
    box = browser.find_element(By.ID, "update-text")
    draft = box.get_attribute("value")
    assert draft.startswith("We are looking into a problem") and "cartservice" not in draft
    box.clear()
    box.send_keys("cartservice is slow")
    box.send_keys(Keys.CONTROL, Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.ID, "error")))
    assert "internal name" in browser.find_element(By.ID, "error").text
    Select(browser.find_element(By.NAME, "audience")).select_by_value("customers")
    browser.find_element(By.XPATH, "//button[text()='Use template']").click()
    wait.until(ec.presence_of_element_located(
        (By.XPATH, "//button[text()='Record as sent to customers']")))
    browser.find_element(By.XPATH, "//button[starts-with(text(), 'Record as sent')]").click()
    wait.until(ec.presence_of_element_located((By.ID, "comms")))
    sent = browser.find_element(By.ID, "comms").text
    assert "customers (desk)" in sent and "ana" in sent

    # a mitigation with a manual check gates the resolution until it has held 10 minutes
    form = browser.find_element(By.CSS_SELECTOR, "form[action$='/mitigations']")
    form.find_element(By.NAME, "action").send_keys("roll back deploy-8812")
    form.find_element(By.NAME, "manual").send_keys("checkout errors under 1%" + Keys.ENTER)
    wait.until(ec.presence_of_element_located((By.ID, "mitigations")))
    assert "roll back deploy-8812" in browser.find_element(By.ID, "mitigations").text
    browser.find_element(By.XPATH, "//button[text()='holds now']").click()
    wait.until(ec.text_to_be_present_in_element((By.ID, "mitigations"), "since"))
    browser.find_element(By.XPATH, "//form[contains(@action, '/status')]"
                                   "/button[text()='resolved']").click()
    wait.until(ec.presence_of_element_located((By.ID, "error")))
    assert "held for 0 of 10 minutes" in browser.find_element(By.ID, "error").text
    assert browser.find_element(By.ID, "status").text == "acknowledged"
    shot(browser, "incident")

    # a move the rules refuse is said on the page, not as an error page
    browser.get(f"{base}/incidents/{p1}?error=status%3A+example")
    assert browser.find_element(By.ID, "error").text == "status: example"
