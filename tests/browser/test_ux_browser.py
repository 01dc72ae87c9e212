"""A care manager's walk through the app in real Chromium: names not ids, actions in place, patient banner on
every page, field-level errors, messages that stay. Every page passes the axe and 360 px gate
(`assert_page_ok`), with screenshots at 360 and 1280 px in tests/artifacts/ux-*.png."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import PEOPLE, LiveApp, assert_page_ok, serving
from tests.browser.test_timelog_browser import ReadWrite
from tests.unit.test_outbox import FakeServer
from tests.unit.test_panel import ALL, BASE, MONTH, busy_scenario, make_app, scenario

pytestmark = pytest.mark.browser
GOOD_NOTE = "Reviewed home glucose log with the patient; adjusted insulin timing; recheck Friday."
UUIDISH = re.compile(r"Practitioner/[0-9a-z-]{2,}")


@pytest.fixture(scope="module")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    """The scenarios plus named people; reads from the panel's fake, writes to the outbox tests' fake."""
    resources = [r for kind in ALL for r in scenario(kind)] + busy_scenario() + PEOPLE
    app = make_app(tmp_path_factory.mktemp("ux-live"), resources, OUTBOX_WORKER=False)
    both = ReadWrite(app.config["FHIR_CLIENT_FACTORY"](None), FakeServer())
    app.config["FHIR_CLIENT_FACTORY"] = lambda ctx: both
    with serving(app) as live:
        yield live


@pytest.fixture(scope="module")
def page(browser: Any, live_app: LiveApp) -> Iterator[Any]:
    """One desktop page for the whole walk (the gate re-checks each page at 360 px)."""
    ctx = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = ctx.new_page()
    pg.set_default_timeout(10_000)
    pg.js_errors = []
    pg.on("pageerror", lambda exc: pg.js_errors.append(str(exc)))
    yield pg
    ctx.close()


def _open(page: Any, live_app: LiveApp, pid: str, path: str = f"/panel?month={MONTH}") -> None:
    page.goto(f"{live_app.url}/open?iss={BASE}&patient={pid}")
    page.goto(f"{live_app.url}{path}")


def _no_ids(text: str) -> None:
    assert not UUIDISH.search(text), UUIDISH.search(text)


def test_blocked_panel_leads_to_consent_with_names_and_banner(
    page: Any, live_app: LiveApp, artifacts: Path
) -> None:
    _open(page, live_app, "p-blocked")
    status = page.locator("#status-heading").inner_text()
    assert "Blocked" in status
    # one voice: nothing about earning codes next to "blocked"
    minutes_card = page.locator("#minutes-heading").locator("xpath=..").inner_text()
    assert "min to 99" not in minutes_card and "Nothing is billable while blocked" in minutes_card
    assert "every threshold met" not in minutes_card
    consent = page.locator(".prereq-consent")
    assert "Missing" in consent.inner_text()
    assert page.get_by_role("link", name="Program worklist").count() >= 1
    _no_ids(page.locator(".status-meta").first.inner_text())
    # a name the session did not know yet is on the page at once (resolved server-side, then cached)
    page.wait_for_selector(".billing-practitioner:not([data-person-ref])")
    assert "Grace Hopper" in page.locator(".billing-practitioner").inner_text()
    assert_page_ok(page, artifacts, "ux-panel-blocked")
    consent.get_by_role("link", name="Record consent").click()
    page.wait_for_selector("#consent-heading")
    assert "Ada Lovelace" in page.locator(".patient-banner").inner_text()
    options = page.locator("#consent-pprf option").all_inner_texts()
    assert any("Grace Hopper" in o for o in options), options
    assert page.locator("#consent-pprf").input_value() == "Practitioner/dr1"  # the GP, preselected
    _no_ids(page.locator("main").inner_text())
    assert_page_ok(page, artifacts, "ux-consent")


def test_time_form_picks_people_and_marks_fields(page: Any, live_app: LiveApp, artifacts: Path) -> None:
    _open(page, live_app, "p-ready", "/time/new")
    assert "Ada Lovelace" in page.locator(".patient-banner").inner_text()
    names = page.locator("#tl-performer option").all_inner_texts()
    assert any("Florence Nightingale" in n for n in names) and any("Grace Hopper" in n for n in names), names
    # find someone else by name: chosen once, offered (and preselected) for the rest of the session
    page.get_by_role("link", name="Find someone else").first.click()
    page.fill("#people-name", "Seacole")
    page.get_by_role("button", name="Search").click()
    assert_page_ok(page, artifacts, "ux-people-search")
    page.get_by_role("button", name="Choose Mary Seacole").click()
    page.wait_for_selector("#tl-performer")
    assert page.locator("#tl-performer").input_value() == "Practitioner/rn2"
    # a missing start time is named on its own field, not as a date problem
    page.fill("#tl-start", "")
    page.fill("#tl-minutes", "15")
    page.fill("#tl-note", GOOD_NOTE)
    page.get_by_role("button", name="Save entry").click()
    page.wait_for_selector("#tl-start[aria-invalid='true']")
    described = page.locator("#tl-start").get_attribute("aria-describedby") or ""
    error_id = described.split()[-1]
    message = page.locator(f"#{error_id}").inner_text()
    assert "start time" in message.lower() and "date" not in message.lower(), message
    assert page.locator("#tl-date").get_attribute("aria-invalid") is None
    assert_page_ok(page, artifacts, "ux-time-errors")
    # fix it: the success message stays until dismissed (it survives the panel's reload)
    page.fill("#tl-start", "00:05")
    page.get_by_role("button", name="Save entry").click()
    notice = page.locator("#tl-result .notice-saved")
    page.wait_for_function(
        "() => { const t = document.getElementById('tl-result');"
        " return t && t.textContent && !/Saving/.test(t.textContent); }"
    )
    assert notice.count() == 1, page.locator("#tl-result").inner_text()
    page.wait_for_timeout(1500)
    assert notice.is_visible() and "Saved" in notice.inner_text()
    page.get_by_role("button", name="Dismiss").click()
    assert page.locator("#tl-result .notice-saved").count() == 0


def test_time_list_and_correction_show_people_and_the_entry(
    page: Any, live_app: LiveApp, artifacts: Path
) -> None:
    _open(page, live_app, "p-busy", f"/time?month={MONTH}")
    table = page.locator("table").inner_text()
    assert "Florence Nightingale" in table
    _no_ids(page.locator("main").inner_text())
    assert "Ada Lovelace" in page.locator(".patient-banner").inner_text()
    assert_page_ok(page, artifacts, "ux-time-list")
    page.locator("table a", has_text="Correct").first.click()
    page.wait_for_selector("#correct-heading")
    heading = page.locator("#correct-heading").inner_text()
    assert "p-busy" not in heading and "Correct a time entry" in heading
    original = page.locator(".original-entry").inner_text()
    assert "Florence Nightingale" in original and "CCM" in original
    assert "Ada Lovelace" in page.locator(".patient-banner").inner_text()
    assert_page_ok(page, artifacts, "ux-correct")


def test_ready_panel_billing_practitioner_choice_and_care_plan(
    page: Any, live_app: LiveApp, artifacts: Path
) -> None:
    _open(page, live_app, "p-ready")
    # the scenario's care plan has no content: a warning, never "Met"
    plan = page.locator(".prereq-care-plan")
    assert "Met, with a warning" in plan.inner_text() and "empty" in plan.inner_text()
    assert plan.get_by_role("link", name="Review care plan").count() == 1
    assert_page_ok(page, artifacts, "ux-panel-ready")
    page.select_option("#bp-choice", "Practitioner/rn2")
    page.get_by_role("button", name="Use this billing practitioner").click()
    page.wait_for_selector("#status-heading")
    assert "Mary Seacole" in page.locator(".billing-practitioner").inner_text()
    # the consent names Grace Hopper: billing as someone else is a blocker, named on the consent line
    assert "Blocked" in page.locator("#status-heading").inner_text()
    page.select_option("#bp-choice", "Practitioner/dr1")  # back to the consent's practitioner
    page.get_by_role("button", name="Use this billing practitioner").click()
    page.wait_for_selector("#status-heading")
    assert "Ready to bill" in page.locator("#status-heading").inner_text()
    # home page shows the program lead's way in
    page.goto(f"{live_app.url}/")
    assert page.locator("#program-entry").count() == 1
    assert_page_ok(page, artifacts, "ux-home")
    assert page.js_errors == []


def test_a_past_month_reads_closed_not_not_yet(page: Any, live_app: LiveApp, artifacts: Path) -> None:
    _open(page, live_app, "p-not-yet", "/panel?month=2026-10")
    heading = page.locator("#status-heading").inner_text()
    assert "Not billed (month closed)" in heading and "Not yet" not in heading
    step = page.locator(".next-step").inner_text()
    assert "month is over" in step and "Log " not in step
    minutes = page.locator("#minutes-heading").locator("xpath=..").inner_text()
    assert "more for 99" not in minutes
    assert "Nothing was billable for October 2026." in page.inner_text("main")
    assert_page_ok(page, artifacts, "ux-panel-past-month")


def test_packet_launch_and_error_pages_pass_the_gate(page: Any, live_app: LiveApp, artifacts: Path) -> None:
    _open(page, live_app, "p-ready", f"/packet?month={MONTH}")
    assert "CCM audit packet" in page.locator("h1").inner_text()
    assert "Grace Hopper" in page.locator("header").inner_text()  # the reviewer sees the name (and the id)
    assert_page_ok(page, artifacts, "ux-packet")
    page.goto(f"{live_app.url}/open")
    assert_page_ok(page, artifacts, "ux-open")
    page.goto(f"{live_app.url}/care-plan/print")  # no plan saved yet: a readable error page
    assert_page_ok(page, artifacts, "ux-error")
    page.context.clear_cookies()
    # No session, no server chosen: the program page asks for one. (With a session it runs the worklist
    # on the session's server and reloads itself when the job ends, which is no page to gate.)
    page.goto(f"{live_app.url}/program")
    assert_page_ok(page, artifacts, "ux-program-choose")
    page.goto(f"{live_app.url}/panel")  # no session: the friendly 401
    assert_page_ok(page, artifacts, "ux-no-session")
