"""A care manager's walk in real Chromium through what issue 13 left: the initiating visit recorded from its
checklist line, names on first view without JavaScript, the audit packet by name. Every new page passes the
axe and 360 px gate (`assert_page_ok`), with screenshots in tests/artifacts/ux-*-360.png / -1280.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PEOPLE, LiveApp, assert_page_ok, serving
from tests.browser.test_timelog_browser import ReadWrite
from tests.unit.test_outbox import FakeServer
from tests.unit.test_panel import BASE, MONTH, make_app, scenario

pytestmark = pytest.mark.browser
RAW_ID = re.compile(r"Practitioner/[A-Za-z0-9-]{2,}")


def _without_visit(pid: str) -> list[dict[str, Any]]:
    """A ready patient minus the initiating visit: blocked by that one line."""
    return [r for r in scenario("ready", pid, name="Katherine Johnson") if r.get("id") != f"{pid}-visit"]


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    resources = [*scenario("ready"), *_without_visit("p-novisit"), *PEOPLE]
    app = make_app(tmp_path_factory.mktemp("ux-actions"), resources, OUTBOX_WORKER=False)
    both = ReadWrite(app.config["FHIR_CLIENT_FACTORY"](None), FakeServer())
    app.config["FHIR_CLIENT_FACTORY"] = lambda ctx: both
    with serving(app) as live:
        yield live


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser session (no names cached yet) at desktop width; the gate re-checks at 360 px."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    yield pg
    ctx.close()


def _open(page: Any, live_app: LiveApp, pid: str, path: str = f"/panel?month={MONTH}") -> None:
    page.goto(f"{live_app.url}/open?iss={BASE}&patient={pid}")
    page.goto(f"{live_app.url}{path}")


def test_the_initiating_visit_is_recorded_from_its_checklist_line(
    page: Any, live_app: LiveApp, artifacts: Path
) -> None:
    _open(page, live_app, "p-novisit")
    line = page.locator(".prereq-initiating-visit")
    assert "Missing" in line.inner_text()
    line.get_by_role("link", name="Record the initiating visit").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "ux-visit-checklist-1280.png"))  # the line and its action
    line.get_by_role("link", name="Record the initiating visit").click()
    page.wait_for_selector("#visit-heading")
    assert page.locator(".patient-banner .patient-name").inner_text() == "Katherine Johnson"
    # people are picked by name: the patient's GP (the billing practitioner) is preselected
    chosen = page.locator("#visit-practitioner option:checked").inner_text()
    assert chosen.startswith("Grace Hopper"), chosen
    assert not RAW_ID.search(page.locator("main").inner_text())
    assert_page_ok(page, artifacts, "ux-visit-form")
    # what is missing is said at the field, and the form keeps what was typed
    page.fill("#visit-date", "2025-12-01")
    page.locator("button", has_text="Record the visit").click()
    page.wait_for_selector("#error-summary")
    assert page.locator("#visit-code-error").is_visible()
    assert page.locator("#visit-ccm-discussed-error").is_visible()
    assert page.locator("#visit-code").get_attribute("aria-invalid") == "true"
    assert page.input_value("#visit-date") == "2025-12-01"
    assert_page_ok(page, artifacts, "ux-visit-errors")
    page.select_option("#visit-code", label="Annual wellness visit (AWV), initial (G0438)")
    page.check("#visit-ccm-discussed")
    page.locator("button", has_text="Record the visit").click()
    page.wait_for_selector(".timelog-answer")
    assert "Saved" in page.locator(".timelog-answer h1").inner_text()
    summary = page.locator(".visit-summary").inner_text()
    assert "Annual wellness visit (AWV), initial (G0438) on 2025-12-01, seen by Grace Hopper" in summary
    assert_page_ok(page, artifacts, "ux-visit-saved")
    page.get_by_role("link", name="Back to the readiness panel").click()
    page.wait_for_selector("#status-heading")
    assert page.url.endswith(f"/panel?month={MONTH}")
    line = page.locator(".prereq-initiating-visit")
    assert "Met" in line.inner_text() and "Missing" not in line.inner_text()
    assert "Ready to bill" in page.locator("#status-heading").inner_text()
    assert_page_ok(page, artifacts, "ux-visit-panel-after")
    # the printable ledger summary (what a practice files when the EHR takes nothing) lists the visit by name
    page.goto(f"{live_app.url}/ledger/summary?month={MONTH}")
    assert "seen by Grace Hopper" in page.locator(".ledger-visit").first.inner_text()
    assert not RAW_ID.search(page.locator("main").inner_text())
    assert_page_ok(page, artifacts, "ux-ledger-summary")


def test_names_are_on_the_first_view_without_javascript(
    browser: Any, live_app: LiveApp, artifacts: Path
) -> None:
    ctx = browser.new_context(viewport={"width": 1280, "height": 900}, java_script_enabled=False)
    try:
        pg = ctx.new_page()
        pg.set_default_timeout(10_000)
        _open(pg, live_app, "p-ready")
        assert pg.locator(".billing-practitioner").inner_text() == "Grace Hopper"
        assert pg.locator("[data-person-ref]").count() == 0  # nothing left for a script to fill in
        options = pg.locator("#bp-choice option").all_inner_texts()
        assert any(o.startswith("Grace Hopper") for o in options), options
        assert "Unnamed practitioner" not in pg.locator("main").inner_text()
        pg.screenshot(path=str(artifacts / "ux-panel-nojs-1280.png"), full_page=True)
        pg.set_viewport_size({"width": 360, "height": 800})
        pg.screenshot(path=str(artifacts / "ux-panel-nojs-360.png"))  # the top: banner and status
    finally:
        ctx.close()


def test_the_audit_packet_shows_people_by_name(page: Any, live_app: LiveApp, artifacts: Path) -> None:
    _open(page, live_app, "p-ready", f"/packet?month={MONTH}")
    page.wait_for_selector("h1")
    readable = page.locator("main").inner_text().split("Integrity")[0]  # the hashes list ids on purpose
    assert not RAW_ID.search(readable), RAW_ID.search(readable)
    assert "Grace Hopper" in readable and "Florence Nightingale" in readable
    time_table = page.locator("section", has=page.locator("h2", has_text="Time log")).inner_text()
    assert "Florence Nightingale" in time_table
    assert_page_ok(page, artifacts, "ux-packet-names")
