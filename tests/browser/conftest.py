"""Browser fixtures: the real app on a loopback port (fake FHIR behind it) and Debian Chromium via Playwright.

Never runs `playwright install`: the browser is the system chromium (CCM_READY_CHROMIUM overrides).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from smart_app.web.printing import CHROMIUM_COMMON_FLAGS
from tests.unit.test_panel import ALL, busy_scenario, make_app, scenario

CHROMIUM = os.environ.get("CCM_READY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [*CHROMIUM_COMMON_FLAGS, "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


# The people the scenarios reference (Practitioner/dr1, rn1) and a care team, so pages show names.
PEOPLE: list[dict[str, Any]] = [
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"given": ["Grace"], "family": "Hopper"}],
     "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]},
    {"resourceType": "Practitioner", "id": "rn1", "name": [{"given": ["Florence"], "family": "Nightingale"}]},
    {"resourceType": "Practitioner", "id": "rn2", "name": [{"given": ["Mary"], "family": "Seacole"}]},
    {"resourceType": "CareTeam", "id": "team-ready", "status": "active",
     "subject": {"reference": "Patient/p-ready"},
     "participant": [{"member": {"reference": "Practitioner/dr1"}},
                     {"member": {"reference": "Practitioner/rn1"}}]},
]


class LiveApp:
    """The Flask app served by werkzeug in a background thread."""

    def __init__(self, server: BaseWSGIServer) -> None:
        self.server = server
        self.url = f"http://127.0.0.1:{server.server_port}"
        self.thread = threading.Thread(target=server.serve_forever, name="panel-live-app", daemon=True)

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


@contextmanager
def serving(app: Flask) -> Iterator[LiveApp]:
    """Serve `app` on a free loopback port for the duration of the block."""
    live = LiveApp(make_server("127.0.0.1", 0, app, threaded=True))
    live.thread.start()
    try:
        yield live
    finally:
        live.stop()


@pytest.fixture(scope="session")
def live_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveApp]:
    resources = [r for kind in ALL for r in scenario(kind)] + busy_scenario() + PEOPLE
    with serving(make_app(tmp_path_factory.mktemp("panel-live"), resources)) as live:
        yield live


@pytest.fixture(scope="session")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM} (set CCM_READY_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True, timeout=90_000)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


# ------------------------------------------------------------------ accessibility and small-screen gate

AXE_JS = Path(__file__).resolve().parent / "axe" / "node_modules" / "axe-core" / "axe.min.js"
GATE_IMPACTS = ("serious", "critical")


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now (axe is npm-installed by
    scripts/bootstrap.sh test; a missing axe is a failure, not a skip: this is a gate)."""
    assert AXE_JS.exists(), f"axe-core missing at {AXE_JS}: run scripts/bootstrap.sh test"
    if not page.evaluate("() => typeof window.axe !== 'undefined'"):
        # evaluated through the DevTools protocol: the app's CSP (no inline scripts) stays on
        page.evaluate("(src) => { (0, eval)(src); return true; }", AXE_JS.read_text(encoding="utf-8"))
    found = page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
        ".map(v => ({id: v.id, impact: v.impact, help: v.help,"
        " nodes: v.nodes.slice(0, 3).map(n => n.target.join(' '))}))"
    )
    return [v for v in found if v.get("impact") in GATE_IMPACTS]


def horizontal_overflow(page: Any) -> int:
    """How many CSS px the page scrolls sideways (0 = none)."""
    return int(page.evaluate(
        "() => Math.max(document.documentElement.scrollWidth, document.body.scrollWidth)"
        " - document.documentElement.clientWidth"
    ))


def assert_page_ok(page: Any, artifacts: Path | None = None, name: str = "") -> None:
    """The gate every page of the browser suite passes: no serious/critical axe violation, and at 360 px
    no sideways scroll (the page is re-checked at 360 px when its viewport is wider). Screenshots of both
    widths go to tests/artifacts/<name>-360.png / -1280.png when `name` is given."""
    violations = axe_violations(page)
    assert violations == [], f"{page.url}: {violations}"
    size = page.viewport_size or {"width": 1280, "height": 900}
    if artifacts is not None and name and size["width"] != 360:
        page.screenshot(path=str(artifacts / f"{name}-{size['width']}.png"), full_page=True)
    if size["width"] != 360:
        page.set_viewport_size({"width": 360, "height": 800})
    try:
        overflow = horizontal_overflow(page)
        if artifacts is not None and name:
            page.screenshot(path=str(artifacts / f"{name}-360.png"), full_page=True)
        wide = [] if overflow <= 0 else page.evaluate(
            "() => Array.from(document.querySelectorAll('body *'))"
            ".filter(e => e.getBoundingClientRect().right > document.documentElement.clientWidth + 1)"
            ".slice(0, 6).map(e => e.tagName + '.' + e.className + '#' + e.id)"
        )
        assert overflow <= 0, f"{page.url} scrolls {overflow}px sideways at 360 px: {wide}"
    finally:
        if size["width"] != 360:
            page.set_viewport_size(size)
