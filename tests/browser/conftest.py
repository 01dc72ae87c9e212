"""Browser fixtures: the real app on a loopback port (fake FHIR behind it) and Debian Chromium via Playwright.

Never runs `playwright install`: the browser is the system chromium (CCM_READY_CHROMIUM overrides).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.serving import BaseWSGIServer, make_server

from smart_app.web.printing import CHROMIUM_COMMON_FLAGS
from tests.unit.test_panel import ALL, busy_scenario, make_app, scenario

CHROMIUM = os.environ.get("CCM_READY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [*CHROMIUM_COMMON_FLAGS, "--disable-quic"]
ARTIFACTS = Path(__file__).resolve().parents[1] / "artifacts"


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
    resources = [r for kind in ALL for r in scenario(kind)] + busy_scenario()
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
