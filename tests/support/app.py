"""The app as the tests build it, and a test client already inside a launch.

`make_app(data_dir, fhir=..., **config)` is the real `create_app` with TESTING on, its state under
`data_dir`, no background outbox sender, and `fhir` (a FakeFhir, or any client) behind
FHIR_CLIENT_FACTORY; `config` overrides any of it. `start_session(client, ctx)` binds a LaunchContext to
the client's session the way a finished SMART or open launch does and returns the session's CSRF token;
`launched(app, ctx)` is a new client started so. The session is started by a test-only route,
`/_test/start`, added to the app before its first request.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask
from flask.testing import FlaskClient

from smart_app.app import create_app
from smart_app.context import LaunchContext
from smart_app.web import security, sessions

START = "/_test/start"
_LAUNCH = "test_launch"  # app.extensions key: the LaunchContext the next GET /_test/start binds


def make_app(data_dir: Path | str | None = None, *, fhir: Any = None, **config: Any) -> Flask:
    """The app for a test: TESTING, DATA_DIR=`data_dir`, no outbox sender, `fhir` as every launch's client."""
    settings: dict[str, Any] = {"TESTING": True, "OUTBOX_WORKER": False}
    if data_dir is not None:
        settings["DATA_DIR"] = str(data_dir)
    if fhir is not None:
        settings["FHIR_CLIENT_FACTORY"] = lambda ctx: fhir
    settings.update(config)
    app = create_app(settings)
    add_start_route(app)
    return app


def add_start_route(app: Flask) -> None:
    """Add `/_test/start` to an app built elsewhere (before its first request); once per app."""
    if _LAUNCH in app.extensions:
        return
    app.extensions[_LAUNCH] = None

    @app.get(START)
    def _test_start() -> str:
        sessions.start_session(app.extensions[_LAUNCH])
        return security.csrf_token()


def start_session(client: FlaskClient, ctx: LaunchContext) -> str:
    """Start a session for `ctx` on `client` (a new session key and CSRF token); the CSRF token."""
    app = client.application
    add_start_route(app)
    app.extensions[_LAUNCH] = ctx
    resp = client.get(START)
    assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
    return resp.get_data(as_text=True)


def launched(app: Flask, ctx: LaunchContext) -> tuple[FlaskClient, str]:
    """A new test client with a session started for `ctx`, and its CSRF token."""
    client = app.test_client()
    return client, start_session(client, ctx)


def open_launch(fhir_base: str, patient_id: str, user: str | None = None, **fields: Any) -> LaunchContext:
    """The LaunchContext of an open-mode launch (no authorization server) for one patient."""
    return LaunchContext(mode="open", fhir_base=fhir_base, patient_id=patient_id, user=user, **fields)
