"""Flask application factory."""

from __future__ import annotations

from typing import Any

from flask import Flask

from rules import rule_ids
from smart_app import config, errors
from smart_app.auth import views as launch
from smart_app.capture import blueprint as capture
from smart_app.capture import (  # noqa: F401  (routes on capture.bp)
    consent_views,
    ledger_views,
    time_views,
    visit_views,
)
from smart_app.careplan import pages as careplan
from smart_app.careplan import patient_copy, views  # noqa: F401  (routes on careplan.bp)
from smart_app.cds import service as cds_hooks
from smart_app.config import PROJECT_ROOT
from smart_app.packet import views as packet
from smart_app.panel import views as panel
from smart_app.program import payer_views
from smart_app.program import views as program
from smart_app.readiness import wording
from smart_app.web import health, home, people, request_log, security, sessions


def create_app(test_config: dict[str, Any] | None = None) -> Flask:
    """Build the app: config, server-side sessions, security headers, blueprints."""
    app = Flask(
        __name__,
        static_folder=str(PROJECT_ROOT / "static"),
        static_url_path="/static",
        template_folder=str(config.TEMPLATES),
    )
    app.config.from_mapping(config.defaults())
    if test_config:
        app.config.update(test_config)

    errors.init_app(app)
    app.jinja_env.globals["rule_ids"] = rule_ids  # templates name rules by constant, never by literal
    app.jinja_env.globals["wording"] = wording
    request_log.init_app(app)
    sessions.init_app(app)
    security.init_app(app)
    people.init_app(app)  # template globals: person names, the patient banner
    app.register_blueprint(launch.bp)
    app.register_blueprint(panel.bp)
    app.register_blueprint(home.bp)
    app.register_blueprint(cds_hooks.bp)
    cds_hooks.init_app(app)
    app.register_blueprint(program.bp)
    app.register_blueprint(payer_views.bp)
    app.register_blueprint(capture.bp)
    capture.init_app(app)  # the ledger, the outbox and its worker
    app.register_blueprint(careplan.bp)
    app.register_blueprint(packet.bp)
    app.register_blueprint(health.bp)
    return app
