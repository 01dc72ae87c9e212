"""Time capture in the panel, in real Chromium: the timer survives a reload and a second tab, the vague-note
warning appears while typing, and "saved" / "pending" are told only as the server answers."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect
from werkzeug.serving import make_server

from smart_app.fhir.client import FhirUnavailable
from tests.browser.conftest import LiveApp
from tests.unit.test_outbox import FakeServer
from tests.unit.test_panel import BASE, FakeFhir, make_app, scenario

pytestmark = pytest.mark.browser

GOOD = "Reviewed BP log (hypertension); raised lisinopril to 20 mg; recheck readings Friday."


class ReadWrite:
    """Panel reads from the panel's fake; writes go to the outbox tests' fake, on the same resources."""

    def __init__(self, reads: FakeFhir, writes: FakeServer) -> None:
        self.reads = reads
        self.writes = writes
        writes.resources = reads.resources

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writes if name in ("transaction", "create") else self.reads, name)


@pytest.fixture
def capture_app(tmp_path: Path) -> Iterator[tuple[LiveApp, FakeServer]]:
    app = make_app(tmp_path, scenario("ready"), OUTBOX_WORKER=False)
    reads = app.config["FHIR_CLIENT_FACTORY"](None)
    writes = FakeServer()
    both = ReadWrite(reads, writes)
    app.config["FHIR_CLIENT_FACTORY"] = lambda ctx: both
    live = LiveApp(make_server("127.0.0.1", 0, app, threaded=True))
    live.thread.start()
    try:
        yield live, writes
    finally:
        live.stop()


def test_timer_note_warning_and_honest_save_state(
    browser: Any, capture_app: tuple[LiveApp, FakeServer]
) -> None:
    live, writes = capture_app
    context = browser.new_context(viewport={"width": 1000, "height": 1200})
    errors: list[str] = []
    try:
        page = context.new_page()
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{live.url}/open?iss={BASE}&patient=p-ready")
        assert page.url.endswith("/panel")
        page.click("#timer-start")
        time.sleep(1.2)
        page.reload()
        assert "running" in page.inner_text("#timer-status")
        assert page.is_disabled("#timer-start")
        other = context.new_page()  # a second tab sees the same timer
        other.goto(f"{live.url}/panel")
        assert other.is_disabled("#timer-start") and not other.is_disabled("#timer-pause")
        other.click("#timer-pause")
        expect(page.locator("#timer-status")).to_contain_text(
            "paused"
        )  # (no eval: the page's CSP forbids it)
        page.click("#timer-stop")
        assert page.input_value("#tl-minutes") == "1"
        assert page.input_value("#tl-start") and page.input_value("#tl-date")

        page.select_option("#tl-performer", "Practitioner/dr1")  # open mode: no signed-in user; the GP
        page.type("#tl-note", "followed up")
        page.wait_for_selector("#tl-note-warning:not([hidden])")
        assert "problem addressed" in page.inner_text("#tl-note-warning")
        page.fill("#tl-note", GOOD)
        page.type("#tl-note", " ")
        page.wait_for_selector("#tl-note-warning", state="hidden")

        with page.expect_navigation():  # saved: the panel reloads to count the minutes
            page.click("#timelog-form button[type=submit]")
        assert len([e for e in writes.of("Encounter") if e.get("identifier")]) == 1  # ours, by identifier

        writes.failures = [FhirUnavailable(None, "FHIR server could not connect")]
        assert page.input_value("#tl-performer") == "Practitioner/dr1"  # remembered for the session
        # Yesterday, so the start is in the past whatever the time of day the test runs.
        page.fill("#tl-date", (datetime.now(UTC) - timedelta(days=1)).date().isoformat())
        page.fill("#tl-start", "00:05")
        page.fill("#tl-minutes", "10")
        page.fill("#tl-note", GOOD)
        page.click("#timelog-form button[type=submit]")
        expect(page.locator("#tl-result")).to_have_text(re.compile(r"^Pending"), timeout=15_000)
        assert "Saved" not in page.inner_text("#tl-result")
        page.reload()
        assert page.is_visible("#timelog-outbox")
        assert "pending" in page.inner_text("#timelog-outbox-list").lower()
        assert errors == []
    finally:
        context.close()
