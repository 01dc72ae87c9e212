"""The program lead page in headless Chromium on a real sekmet-fhir: progress, filters, CSV, charts."""

from __future__ import annotations

import csv
import io
import re
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlencode

import pytest
from werkzeug.serving import make_server

from rules.month import Month
from smart_app.app import create_app
from smart_app.fhir.client import FhirClient
from tests.browser.conftest import LiveApp, assert_page_ok
from tests.support.population import SeededPopulation, seed_population
from tests.support.sekmet import SekmetServer

pytestmark = [pytest.mark.browser, pytest.mark.integration]

MONTH = str(Month.of(datetime.now(UTC)))


@pytest.fixture(scope="module")
def pop(sekmet: SekmetServer) -> SeededPopulation:
    """44 patients of our own (unique identifiers) and a Group: the shared server holds others' data too."""
    return seed_population(FhirClient(sekmet.base, timeout=60.0), 44, f"pb-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def program_app(sekmet: SekmetServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    app = create_app(
        {
            "SECRET_KEY": "browser",
            "DATA_DIR": str(tmp_path_factory.mktemp("program-live")),
            "TIMEZONE": "UTC",
            "PROGRAM_FHIR_BASE": sekmet.base,
            "OPEN_SERVERS": [sekmet.base],  # public test data: the page needs no sign-in
        }
    )
    live = LiveApp(make_server("127.0.0.1", 0, app, threaded=True))
    live.thread.start()
    try:
        yield live
    finally:
        live.stop()


def test_program_page_filters_csv_and_charts(
    browser, program_app: LiveApp, pop: SeededPopulation, artifacts: Path
) -> None:
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    query = urlencode({"month": MONTH, "group": f"Group/{pop.group_id}"})
    page.goto(f"{program_app.url}/program?{query}")
    page.wait_for_selector("table#worklist", timeout=60_000)  # progress, then program.js reloads
    everyone = page.locator("table#worklist tbody tr").count()
    assert everyone == 44

    page.get_by_role("link", name="Ready to bill (16)").click()
    page.wait_for_selector('a.filter.current[data-filter="ready"]')
    assert page.locator("table#worklist tbody tr.state-ready").count() == 16
    assert page.locator("table#worklist tbody tr").count() == 16

    page.locator('a.filter[data-filter="blocked"]').click()
    page.locator('a.filter[data-reason="conflict"]').click()
    assert page.locator("table#worklist tbody tr").count() == 8
    assert page.locator('table#worklist .blocker[data-category="conflict"]').count() >= 8

    page.locator('a.filter[data-filter="close"]').click()
    page.fill("#n", "5")
    page.get_by_role("button", name="Show").click()
    page.wait_for_selector('a.filter.current[data-filter="close"]')
    assert page.locator("table#worklist tbody tr").count() == 2  # mid-month consent: 5 minutes to go

    page.locator('a.filter[data-filter="enroll"]').click()
    with page.expect_download() as info:
        page.locator("#csv-link").click()
    download = info.value
    rows = list(csv.reader(io.StringIO(Path(download.path()).read_text(encoding="utf-8"))))
    assert rows[0][:3] == ["patient", "name", "status"] and len(rows) == 1 + 2
    assert {r[2] for r in rows[1:]} == {"blocked"}
    assert {"warnings", "next_step", "month_state"} <= set(rows[0])

    for chart in ("chart-funnel", "chart-minutes", "chart-revenue", "chart-trend"):
        box = page.locator(f"svg#{chart}").bounding_box()
        assert box and box["width"] > 100 and box["height"] > 40, chart
        assert page.locator(f"svg#{chart} > title").count() == 1
    assert "consented / eligible" in page.locator(".metrics").inner_text()
    page.locator(".metrics").scroll_into_view_if_needed()
    page.screenshot(path=str(artifacts / "program-desktop.png"), full_page=True)
    assert not errors, errors
    page.close()


def test_program_lead_marks_billed_with_confirmation_and_undo(
    browser, program_app: LiveApp, pop: SeededPopulation, artifacts: Path
) -> None:
    """Compact rows with one next step and chips; mark as billed names patient, codes and amount, updates
    only that row, and can be undone; every page passes the axe and 360 px gate."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(20_000)
    query = urlencode({"month": MONTH, "group": f"Group/{pop.group_id}", "filter": "ready"})
    page.goto(f"{program_app.url}/program?{query}")
    page.wait_for_selector("table#worklist", timeout=60_000)
    assert "As of" in page.locator("#as-of").inner_text()
    row = page.locator("table#worklist tbody tr").first
    name = row.locator("a.patient-link").inner_text()
    assert name and "Patient/" not in name
    assert row.locator("td.next-step").inner_text().startswith("Bill ")
    assert row.locator("a.patient-link").get_attribute("href").startswith("/open?")
    # a blocked row: a chip per category with its count, details on demand (one row stays short)
    page.goto(f"{program_app.url}/program?" + urlencode({"month": MONTH, "group": f"Group/{pop.group_id}",
                                                        "filter": "blocked"}))
    blocked = page.locator("table#worklist tbody tr").first
    assert blocked.locator(".chip-blocker").count() >= 1
    assert blocked.locator("details.row-details").evaluate("d => !d.open")
    box = blocked.bounding_box()
    assert box and box["height"] < 220, box
    assert_page_ok(page, artifacts, "program-blocked")
    page.goto(f"{program_app.url}/program?{query}")
    page.wait_for_selector("table#worklist")
    assert_page_ok(page, artifacts, "program-ready")
    before = page.locator("table#worklist tbody tr").count()
    row = page.locator("table#worklist tbody tr").first
    name = row.locator("a.patient-link").inner_text()
    payment = row.locator("td.num").inner_text()
    row.get_by_role("button", name=re.compile("^Mark as billed")).click()
    page.wait_for_selector("#confirm-heading")
    assert page.locator("#confirm-patient").inner_text() == name
    assert page.locator("#confirm-codes").inner_text().startswith("99")
    assert payment in page.locator("#confirm-amount").inner_text()
    assert_page_ok(page, artifacts, "program-confirm")
    page.locator("#confirm-mark").click()
    page.wait_for_selector("#notice")
    notice = page.locator("#notice").inner_text()
    assert f"Marked as billed for {name}" in notice and payment in notice
    # no rebuild: the page is the finished worklist at once, the row has left the "ready" filter
    assert page.locator(".progress").count() == 0
    assert page.locator("table#worklist tbody tr").count() == before - 1
    page.goto(f"{program_app.url}/program?" + urlencode({"month": MONTH, "group": f"Group/{pop.group_id}",
                                                        "filter": "all", "undo": page.url.split("undo=")[-1]
                                                        .split("&")[0]}))
    undo = page.locator("#undo-billed")
    assert undo.count() == 1
    undo.click()
    page.wait_for_selector("#notice")
    assert f"Undone: {name} is no longer marked as billed" in page.locator("#notice").inner_text()
    page.goto(f"{program_app.url}/program?{query}")
    assert page.locator("table#worklist tbody tr").count() == before
    # refresh only what changed since "as of": the patient whose ChargeItems were written and withdrawn
    page.locator("#refresh-changed").click()
    page.wait_for_selector("#notice")
    assert re.search(r"Refreshed [1-9]\d* changed patient", page.locator("#notice").inner_text())
    assert page.locator(".progress").count() == 0
    assert page.locator("table#worklist tbody tr").count() == before
    page.close()


def test_a_patient_link_opens_the_panel_on_the_worklist_month(
    browser, program_app: LiveApp, pop: SeededPopulation, artifacts: Path
) -> None:
    """A program lead looking at last month clicks a patient: the panel opens on last month, not this one."""
    last = str(Month.parse(MONTH).previous())
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.set_default_timeout(20_000)
    page.goto(f"{program_app.url}/program?" + urlencode({"month": last, "group": f"Group/{pop.group_id}",
                                                        "filter": "all"}))
    page.wait_for_selector("table#worklist", timeout=60_000)
    link = page.locator("table#worklist tbody tr a.patient-link").first
    assert f"month={last}" in (link.get_attribute("href") or "")
    name = link.inner_text()
    link.click()
    page.wait_for_selector("#status-heading")
    assert page.url.endswith(f"/panel?month={last}")
    assert page.input_value("#month-input") == last
    assert name in page.locator(".patient-banner .patient-name").inner_text()
    assert_page_ok(page, artifacts, "program-link-month-panel")
    page.close()
