"""The readiness panel in real headless Chromium: content, ARIA, 360 px layout, keyboard, screenshots."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.browser.conftest import LiveApp, assert_page_ok
from tests.unit.test_panel import BASE, MONTH

pytestmark = pytest.mark.browser

VIEWPORTS = {"narrow": (360, 800), "desktop": (1280, 900)}


@pytest.fixture
def page_for(browser: Any, live_app: LiveApp) -> Iterator[Any]:
    contexts: list[Any] = []

    def open_panel(pid: str, viewport: str) -> Any:
        width, height = VIEWPORTS[viewport]
        ctx = browser.new_context(viewport={"width": width, "height": height})
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
        page.goto(f"{live_app.url}/open?iss={BASE}&patient={pid}")  # starts the session, redirects to /panel
        page.goto(f"{live_app.url}/panel?month={MONTH}")
        page.wait_for_load_state("load")
        page.js_errors = errors
        return page

    yield open_panel
    for ctx in contexts:
        ctx.close()


def _bars(page: Any) -> dict[str, dict[str, str | None]]:
    out = {}
    for el in page.locator('[role="progressbar"]').all():
        names = ("aria-valuenow", "aria-valuemin", "aria-valuemax", "aria-valuetext")
        out[el.get_attribute("data-track")] = {k: el.get_attribute(k) for k in names}
    return out


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_ready_patient(page_for: Any, artifacts: Path, viewport: str) -> None:
    page = page_for("p-ready", viewport)
    page.screenshot(path=str(artifacts / f"panel-ready-{viewport}.png"), full_page=True)
    assert "Ready to bill" in page.locator("#status-heading").inner_text()
    codes = page.locator("table.codes").inner_text()
    assert "99490" in codes and "$66.13" in codes
    bars = _bars(page)
    assert bars["clinical-staff"]["aria-valuenow"] == "25"
    assert bars["clinical-staff"]["aria-valuemin"] == "0"
    assert bars["clinical-staff"]["aria-valuemax"] == "60"
    assert "25 of 60 min" in (bars["clinical-staff"]["aria-valuetext"] or "")
    assert bars["practitioner"]["aria-valuemax"] == "90"
    assert page.js_errors == []
    assert_page_ok(page)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_blocked_patient(page_for: Any, artifacts: Path, viewport: str) -> None:
    page = page_for("p-blocked", viewport)
    page.screenshot(path=str(artifacts / f"panel-blocked-{viewport}.png"), full_page=True)
    assert "Blocked" in page.locator("#status-heading").inner_text()
    assert "No CCM consent" in page.locator(".next-step").inner_text()
    consent = page.locator(".prereq-consent")
    assert "Missing" in consent.inner_text() and "consent.missing" in consent.inner_text()
    assert page.locator("table.codes").count() == 0
    # the action is on the line that names the problem, and nothing talks of earning codes
    assert consent.get_by_role("link", name="Record consent").count() == 1
    assert "more for 99" not in page.locator("#minutes-heading").locator("xpath=..").inner_text()
    assert_page_ok(page)


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
def test_busy_patient_details_toggle(page_for: Any, artifacts: Path, viewport: str) -> None:
    page = page_for("p-busy", viewport)
    skipped = page.locator("details.skipped")
    assert not skipped.evaluate("d => d.open")
    page.click("button.toggle-details")  # panel.js: one button opens every <details>
    assert skipped.evaluate("d => d.open")
    assert page.locator("button.toggle-details").get_attribute("aria-expanded") == "true"
    page.screenshot(path=str(artifacts / f"panel-busy-{viewport}.png"), full_page=True)
    assert "RPM: 30 min" in page.locator(".other-programs").inner_text()
    assert page.js_errors == []


@pytest.mark.parametrize("pid", ["p-ready", "p-blocked", "p-not-eligible", "p-busy"])
def test_no_horizontal_scroll_at_360(page_for: Any, pid: str) -> None:
    page = page_for(pid, "narrow")
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    # every card stays inside the viewport too (overflow hidden inside a card would also be a defect)
    widest = page.evaluate(
        "Math.max(...[...document.querySelectorAll('main *')].map(e => e.getBoundingClientRect().right))")
    assert widest <= 360
    assert_page_ok(page)  # axe: no serious or critical violation


def test_keyboard_reaches_the_month_switcher(page_for: Any, live_app: LiveApp) -> None:
    page = page_for("p-ready", "desktop")
    seen = []
    for _ in range(12):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.id || document.activeElement.className"))
        if seen[-1] == "month-prev":
            break
    assert "month-prev" in seen, seen
    focus_style = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert focus_style != "none"
    page.keyboard.press("ArrowRight")  # panel.js: arrows move within the switcher
    assert page.evaluate("document.activeElement.id") == "month-input"
    for _ in range(6):  # the month input has a focus stop per field (month, year), then the button
        page.keyboard.press("Tab")
        if page.evaluate("document.activeElement.id") == "month-next":
            break
    assert page.evaluate("document.activeElement.id") == "month-next"
    page.keyboard.press("Enter")
    page.wait_for_url("**/panel?month=2026-12")
    assert "December 2026" in page.locator("#status-heading").inner_text()
    page.keyboard.press("[")  # panel.js shortcut: previous month
    page.wait_for_url("**/panel?month=2026-11")
    assert "November 2026" in page.locator("#status-heading").inner_text()


def test_month_form_works_without_javascript(browser: Any, live_app: LiveApp) -> None:
    ctx = browser.new_context(java_script_enabled=False, viewport={"width": 360, "height": 800})
    try:
        page = ctx.new_page()
        page.goto(f"{live_app.url}/open?iss={BASE}&patient=p-not-yet")
        page.goto(f"{live_app.url}/panel?month={MONTH}")
        page.fill("#month-input", "2026-10")
        page.click("form.month-form button[type=submit]")
        page.wait_for_url("**/panel?month=2026-10")
        assert "October 2026" in page.locator("#status-heading").inner_text()
        assert page.locator("details.skipped, .findings").count() >= 0
    finally:
        ctx.close()


CONTRAST_JS = """
() => {
  const rgb = s => (s.match(/[\\d.]+/g) || []).map(Number);
  const lum = ([r, g, b]) => {
    const f = c => { c /= 255; return c <= 0.03928 ? c / 12.92 : Math.pow((c + 0.055) / 1.055, 2.4); };
    return 0.2126 * f(r) + 0.7152 * f(g) + 0.0722 * f(b);
  };
  const background = el => {
    for (let e = el; e; e = e.parentElement) {
      const c = rgb(getComputedStyle(e).backgroundColor);
      if (c.length === 3 || (c.length === 4 && c[3] > 0.5)) { return c.slice(0, 3); }
    }
    return [255, 255, 255];
  };
  const worst = [];
  for (const el of document.querySelectorAll("body *")) {
    const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
    const style = getComputedStyle(el);
    if (!own || style.visibility === "hidden" || el.closest(".visually-hidden, .skip-link")) { continue; }
    const a = lum(rgb(style.color).slice(0, 3)), b = lum(background(el));
    const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
    if (ratio < 4.5) { worst.push(el.tagName + "." + el.className + " " + ratio.toFixed(2)); }
  }
  return worst;
}
"""


@pytest.mark.parametrize("pid", ["p-ready", "p-not-yet", "p-blocked", "p-not-eligible"])
def test_text_contrast_is_at_least_4_5(page_for: Any, pid: str) -> None:
    page = page_for(pid, "desktop")
    assert page.evaluate(CONTRAST_JS) == []
    # status is never colour alone: the headline carries an icon and words
    assert page.locator("#status-heading .status-icon").inner_text().strip()


def test_bad_month_page_is_readable_at_360(page_for: Any, live_app: LiveApp, artifacts: Path) -> None:
    page = page_for("p-not-eligible", "narrow")
    page.screenshot(path=str(artifacts / "panel-not-eligible-narrow.png"), full_page=True)
    response = page.goto(f"{live_app.url}/panel?month=2026-13")
    assert response is not None and response.status == 400
    page.screenshot(path=str(artifacts / "panel-bad-month-narrow.png"), full_page=True)
    assert "Month not understood" in page.locator("h1").inner_text()
    assert page.evaluate("document.documentElement.scrollWidth") <= 360
    assert_page_ok(page)
