"""The care-plan editor in real Chromium against a real sekmet-fhir: build from a template, save, print.

Screenshots and the PDF's first page (PNG, via pdftoppm) go to tests/artifacts/ to be looked at.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from smart_app.app import create_app
from smart_app.fhir.client import FhirClient
from tests.browser.conftest import LiveApp, assert_page_ok, serving
from tests.integration.test_careplan import seed_patient
from tests.support.sekmet import SekmetServer

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def cp_app(sekmet: SekmetServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    app = create_app(
        {
            "TESTING": True,
            "SECRET_KEY": "browser-test",
            "DATA_DIR": str(tmp_path_factory.mktemp("careplan-live")),
            "TIMEZONE": "UTC",
            "OPEN_SERVERS": [sekmet.base],
        }
    )
    with serving(app) as live:
        yield live


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1100, "height": 900})
    p = context.new_page()
    p.set_default_timeout(20_000)
    try:
        yield p
    finally:
        context.close()


def open_patient(page: Any, cp_app: LiveApp, sekmet: SekmetServer, pid: str) -> None:
    page.goto(f"{cp_app.url}/open?" + urlencode({"iss": sekmet.base, "patient": pid}))
    page.wait_for_url("**/panel**")


def build_from_template(page: Any) -> None:
    """On the editor: accept the diabetes suggestions, fill the remaining sections, save."""
    page.check("input[value='diabetes:goal:0']")
    page.check("input[value='diabetes:intervention:0']")
    page.check("input[value='diabetes:symptoms']")
    page.click("button[value='add']")
    page.wait_for_selector("#cp-notice")
    assert "3 suggestions added" in page.inner_text("#cp-notice")
    assert page.input_value("#f-goal-1-measure") == "HbA1c"
    page.fill("#f-goal-1-target", "< 7.5 %")  # suggestions are editable
    for field, text in {
        "prognosis": "Stable if glucose stays in range.",
        "functional": "Independent; no memory concerns.",
        "caregiver": "No caregiver; lives independently.",
        "environment": "Safe home; drives.",
        "community": "Diabetes education class at the library.",
        "review": "Every 6 months.",
    }.items():
        page.fill(f"#f-{field}", text)
    page.click("#cp-save")
    page.wait_for_selector("#cp-notice")


def test_build_plan_from_template_clears_the_blocker(
    page: Any, cp_app: LiveApp, sekmet: SekmetServer, artifacts: Path
) -> None:
    chart = seed_patient(sekmet.base)
    open_patient(page, cp_app, sekmet, chart["patient"])
    assert "No CCM care plan is recorded" in page.inner_text("body")
    page.screenshot(path=str(artifacts / "careplan-1-panel-blocked.png"), full_page=True)
    assert_page_ok(page, artifacts, "careplan-panel-blocked")
    page.click("#care-plan-link")
    page.wait_for_url("**/care-plan**")
    assert "Build the CCM care plan" in page.inner_text("h1")
    assert "Care Testperson" in page.inner_text(".patient-banner")
    assert_page_ok(page, artifacts, "careplan-editor-new")
    assert "Metformin 500 mg tablet" in page.input_value("#f-medications")

    # An empty required section and a goal without a measure are refused with clear messages; nothing lost.
    page.fill("#f-goal-1-description", "Walk every day")
    page.fill("#f-goal-1-target", "30 min")
    page.click("#cp-save")
    page.wait_for_selector("#cp-problems")
    problems = page.inner_text("#cp-problems")
    assert "a goal needs a measure" in problems and "Caregiver assessment: this section is empty" in problems
    assert page.input_value("#f-goal-1-description") == "Walk every day"
    page.screenshot(path=str(artifacts / "careplan-1b-errors.png"))
    assert_page_ok(page)
    page.check("input[name='goal-1-remove']")

    build_from_template(page)
    assert "Saved: the care plan is in the chart" in page.inner_text("#cp-notice")
    assert page.input_value("#f-goal-1-target") == "< 7.5 %"
    assert "ADA Standards of Care" in page.inner_text("#goal-1")
    page.screenshot(path=str(artifacts / "careplan-2-saved.png"), full_page=True)
    # "Review" shows the plan on file, read back from the server
    on_file = page.inner_text("#plan-on-file")
    assert "The plan on file" in on_file and "is empty" not in on_file and "Goals" in on_file
    assert_page_ok(page, artifacts, "careplan-editor-on-file")

    page.click("text=Back to the panel")
    page.wait_for_url("**/panel**")
    body = page.inner_text("body")
    assert "No CCM care plan is recorded" not in body
    assert "care-plan.missing" not in body
    assert page.inner_text("#care-plan-link") == "Review care plan"
    page.screenshot(path=str(artifacts / "careplan-3-panel-after.png"), full_page=True)


def test_print_patient_copy_pdf(page: Any, cp_app: LiveApp, sekmet: SekmetServer, artifacts: Path) -> None:
    if not shutil.which("pdftoppm"):
        pytest.skip("pdftoppm (poppler-utils) is not installed")
    chart = seed_patient(sekmet.base)
    FhirClient(sekmet.base).create(  # how to reach the care team: the team's own number
        {
            "resourceType": "CareTeam", "status": "active", "name": "Diabetes team",
            "subject": {"reference": f"Patient/{chart['patient']}"},
            "telecom": [{"system": "phone", "value": "555-0100", "use": "work"}],
        }
    )
    open_patient(page, cp_app, sekmet, chart["patient"])
    page.goto(f"{cp_app.url}/care-plan")
    build_from_template(page)
    assert "Saved" in page.inner_text("#cp-notice")

    page.goto(f"{cp_app.url}/care-plan/print")
    assert page.inner_text("h1") == "Your care plan"
    assert "Care Testperson" in page.inner_text("body")
    # The inline stylesheet is allowed by the page's CSP hash (large type: 15pt = 20px).
    assert page.evaluate("getComputedStyle(document.body).fontSize") == "20px"
    page.screenshot(path=str(artifacts / "careplan-4-print.png"), full_page=True)
    body = page.inner_text("body")
    assert "How to reach your care team" in body and "Phone: 555-0100 (work)" in body
    assert "HbA1c" in body  # the plan's content, and no empty headings
    for heading in page.locator("h2").all():
        following = heading.evaluate("h => (h.nextElementSibling && h.nextElementSibling.textContent) || ''")
        assert following.strip(), f"empty section {heading.inner_text()}"
    assert_page_ok(page, artifacts, "careplan-print")

    pdf = page.request.get(f"{cp_app.url}/care-plan/print?format=pdf", timeout=120_000)
    assert pdf.status == 200 and pdf.headers["content-type"] == "application/pdf"
    path = artifacts / "careplan-patient-copy.pdf"
    path.write_bytes(pdf.body())
    assert path.read_bytes().startswith(b"%PDF")
    out = artifacts / "careplan-patient-copy-page1"
    subprocess.run(
        ["pdftoppm", "-png", "-r", "70", "-f", "1", "-l", "1", "-singlefile", str(path), str(out)],
        check=True,
        timeout=60,
    )
    png = out.with_suffix(".png")
    assert png.stat().st_size > 10_000  # a rendered page, not a blank one
    if shutil.which("pdftotext"):
        text = subprocess.run(
            ["pdftotext", "-l", "1", str(path), "-"], capture_output=True, text=True, check=True, timeout=60
        ).stdout
        assert "Your care plan" in text and "HbA1c" in text

    # Record that the copy was given on paper: the warning goes away.
    page.goto(f"{cp_app.url}/care-plan")
    assert "No record shows that a copy" in page.inner_text("body")
    page.check("input[name='method'][value='paper']")
    page.click("#cp-share-button")
    page.wait_for_url("**/care-plan?shared=paper")
    assert "Recorded: a copy of the care plan was given (on paper)" in page.inner_text("body")
    assert "No record shows that a copy" not in page.inner_text("body")


def test_editor_fits_a_phone_width(
    browser: Any, cp_app: LiveApp, sekmet: SekmetServer, artifacts: Path
) -> None:
    chart = seed_patient(sekmet.base)
    context = browser.new_context(viewport={"width": 360, "height": 800})
    try:
        page = context.new_page()
        open_patient(page, cp_app, sekmet, chart["patient"])
        page.goto(f"{cp_app.url}/care-plan")
        page.click("#cp-save")  # the error summary must fit too
        page.wait_for_selector("#cp-problems")
        width = page.evaluate("document.documentElement.scrollWidth")
        assert width <= 360, f"horizontal scroll at 360 px ({width} px)"
        page.screenshot(path=str(artifacts / "careplan-5-phone.png"))
        assert_page_ok(page)
    finally:
        context.close()
