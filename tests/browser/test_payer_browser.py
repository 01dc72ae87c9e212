"""The payer page in headless Chromium at 360 and 1280 px: upload (good and bad 835), denial analytics,
false-ready cases and the what-if, with remittances loaded into a temporary data folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from smart_app.app import create_app
from smart_app.program import selection, worklist_runs
from smart_app.program.jobs import WorklistResult
from smart_app.program.remittance_store import RemittanceStore
from tests.browser.conftest import assert_page_ok, serving
from tests.support.demo_rows import demo_rows
from tests.unit.test_payer_remittance import _claims, files
from tests.unit.test_payer_web import BASE, FakeServer

pytestmark = [pytest.mark.browser]


def test_payer_page_upload_analytics_and_what_if(browser, tmp_path: Path, artifacts: Path) -> None:
    store = RemittanceStore.in_dir(tmp_path / "data")
    store.record_claims(_claims())
    store.close()
    for name, text in files().items():
        (tmp_path / name).write_text(text)
    bad = tmp_path / "bad.835"
    bad.write_text(files()["acme-1.835"].replace("SE*", "SE*7", 1))
    app = create_app(
        {
            "SECRET_KEY": "browser",
            "DATA_DIR": str(tmp_path / "data"),
            "TIMEZONE": "America/Chicago",
            "PROGRAM_FHIR_BASE": BASE,
            "OPEN_SERVERS": [BASE],  # test data: the practice page needs no sign-in
            "PROGRAM_CLIENT_FACTORY": lambda base: FakeServer(),
        }
    )
    built = WorklistResult("2026-10", list(demo_rows().values()))  # the month's worklist, already built
    with app.test_request_context("/program/payer?month=2026-10"):
        worklist_runs.store_result(*selection.chosen(), built)
    with serving(app) as live:
        page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
        page.goto(f"{live.url}/program/payer?month=2026-10")
        assert page.locator("#no-remits").count() == 1
        assert page.inner_text("#ready-count") == "8"
        with page.expect_download() as download:
            page.locator("#handoff-csv").click()
        assert download.value.suggested_filename == "ccm-claims-2026-10.csv"
        assert "1EG4TE5MK73" in Path(download.value.path()).read_text()
        page.set_input_files("#files", [str(bad)])
        page.locator("#remit-upload").click()
        page.wait_for_selector("#payer-problem")
        assert "segment SE" in page.inner_text("#payer-problem")
        assert "Nothing was loaded" in page.inner_text("#payer-problem")
        page.set_input_files("#files", [str(tmp_path / n) for n in files()])
        page.locator("#remit-upload").click()
        page.wait_for_selector("#payer-notice")
        assert "files=3 claims=6 lines=9" in page.inner_text("#payer-notice")
        assert page.inner_text("#denial-rate") == "60.0 %"
        assert page.inner_text("#false-ready-rate") == "50.0 %"
        assert page.locator("#verdict-outcome tr.false-ready").count() == 2
        assert (
            page.locator("svg#chart-outcomes").count() == 1 and page.locator("svg#chart-causes").count() == 1
        )
        page.fill("#patients", "90")
        page.get_by_role("button", name="Recalculate").click()
        page.wait_for_selector("#monthly-gain")
        for width in (1280, 360):
            page.set_viewport_size({"width": width, "height": 800})
            page.screenshot(path=str(artifacts / f"payer-{width}.png"), full_page=True)
            overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
            wide = page.evaluate(
                "[...document.querySelectorAll('main *')].filter(e => e.getBoundingClientRect().right > "
                "window.innerWidth + 1).slice(0, 5).map(e => e.tagName + '#' + e.id + '.' + e.className)"
            )
            assert overflow <= 0, f"horizontal scroll at {width}px: {overflow}px ({wide})"
        assert_page_ok(page)  # the suite's gate: axe (serious/critical) and 360 px
        page.close()
