"""The readiness panel: this patient's CCM month at a glance (HTML) and as JSON."""

from __future__ import annotations

import json
import logging
import re
from datetime import date
from typing import Any
from urllib.parse import parse_qs

from flask import Blueprint, current_app, jsonify, render_template, request
from werkzeug.wrappers import Response

from rules.month import BadMonth, BadTimezone, Month
from rules.packs import UnknownPolicy, load_pack, pack_for_month
from rules.verdict import Verdict, to_json
from smart_app.context import LaunchContext
from smart_app.fhir.client import FhirError
from smart_app.fhir.patient_scope import PatientScopeError
from smart_app.panel import view_model as panel_view
from smart_app.readiness import fetch as readiness
from smart_app.web import sessions

bp = Blueprint("panel", __name__)
log = logging.getLogger(__name__)

_MONTH_IN_TEXT = re.compile(r"\b(\d{4}-(?:0[1-9]|1[0-2]))\b")


class PanelError(Exception):
    """A problem the panel shows as a readable page with an HTTP status."""

    def __init__(self, status: int, title: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message


def month_from_app_context(app_context: str | None) -> str | None:
    """The month a launch's appContext carries: JSON {"month": ...}, "month=YYYY-MM" or a bare YYYY-MM."""
    if not app_context:
        return None
    text = app_context.strip()
    try:
        obj = json.loads(text)
    except ValueError:
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("month"), str):
        return obj["month"]
    values = parse_qs(text).get("month")
    if values:
        return values[0]
    m = _MONTH_IN_TEXT.search(text)
    return m.group(1) if m else None


def _today() -> date:
    try:
        return panel_view.practice_today(current_app.config.get("TIMEZONE", "UTC"))
    except BadTimezone as exc:
        raise PanelError(500, "Configuration problem", str(exc)) from exc


def requested_month(ctx: LaunchContext, today: date) -> Month:
    """?month=, else the launch's appContext month, else this month in the practice's time zone."""
    raw = request.args.get("month", "").strip()
    if raw:
        try:
            return Month.parse(raw)
        except BadMonth as exc:
            example = f"{exc}. Example: ?month={Month.of(today)}"
            raise PanelError(400, "Month not understood", example) from exc
    carried = month_from_app_context(ctx.app_context)
    if carried:
        try:
            return Month.parse(carried)
        except BadMonth:
            log.info("ignoring an appContext month that is not YYYY-MM")
    return Month.of(today)


def policy_for(month: Month, configured: str | None) -> str:
    """The configured pack when it covers `month`, else the pack in effect for the month.

    PanelError (400) when no shipped pack covers the month: another year's rules would mislead.
    """
    try:
        if configured and load_pack(configured).covers(month):
            return configured
        return pack_for_month(month).id
    except UnknownPolicy as exc:
        raise PanelError(400, f"No billing rules for {panel_view.month_label(month)}", str(exc)) from exc


def _evaluate(
    ctx: LaunchContext, month: Month, *, with_patient: bool
) -> tuple[Verdict, dict[str, Any] | None]:
    """The verdict for the launch patient (and the Patient resource when a banner is wanted)."""
    cfg = current_app.config
    policy = policy_for(month, cfg.get("POLICY"))
    try:
        client = sessions.fhir_client()
        verdict = readiness.patient_month(
            client,
            ctx.patient_id,
            str(month),
            tz=cfg.get("TIMEZONE", "UTC"),
            policy=policy,
            billing_practitioner=cfg.get("BILLING_PRACTITIONER"),
        )
        patient = client.read("Patient", ctx.patient_id) if with_patient else None
    except FhirError as exc:
        log.warning("FHIR error while building the panel: status %s", getattr(exc, "status", "?"))
        raise PanelError(
            502,
            "The FHIR server did not answer as expected",
            f"{str(exc).rstrip('. ')}. Try again; if it keeps failing, check that the server is "
            "reachable and that the session has the scopes the app needs.",
        ) from exc
    except PatientScopeError:
        raise  # sessions' own 403 page
    except PermissionError as exc:  # the token expired and could not be refreshed
        raise PanelError(
            401,
            "Your session has ended",
            "The access granted at launch has expired and could not be renewed. Open the app again "
            "from the EHR.",
        ) from exc
    except (BadMonth, BadTimezone, UnknownPolicy) as exc:
        raise PanelError(400, "This month cannot be evaluated", str(exc)) from exc
    return verdict, patient


def _error_page(err: PanelError) -> tuple[str, int]:
    return render_template("panel/error.html", title=err.title, message=err.message), err.status


@bp.get("/panel")
def panel() -> Response | tuple[str, int] | str:
    """The readiness panel for the session's launch patient."""
    ctx = sessions.require_context()
    try:
        today = _today()
        month = requested_month(ctx, today)
        verdict, patient = _evaluate(ctx, month, with_patient=ctx.need_patient_banner)
    except PanelError as err:
        return _error_page(err)
    pack = load_pack(verdict.policy)
    return render_template(
        "panel/panel.html",
        v=verdict,
        view=panel_view,
        month=month,
        prev_month=month.previous(),
        next_month=month.next(),
        this_month=Month.of(today),
        headline=panel_view.headline(verdict, today),
        banner=panel_view.patient_banner(patient, ctx.patient_id) if patient is not None else None,
        bars=panel_view.progress_bars(verdict, panel_view.track_specs(pack)),
        labels=panel_view.code_labels(pack),
        checks=panel_view.prerequisites(verdict),
        groups=panel_view.group_findings(verdict.findings),
        days_left=panel_view.days_left_text(month.days_left(today), month, today),
    )


@bp.get("/panel.json")
def panel_json() -> Response | tuple[Response, int]:
    """The same verdict as `ccm-ready evaluate --format json`."""
    ctx = sessions.require_context()
    try:
        month = requested_month(ctx, _today())
        verdict, _ = _evaluate(ctx, month, with_patient=False)
    except PanelError as err:
        return jsonify({"error": err.title, "message": err.message}), err.status
    return jsonify(to_json(verdict))
