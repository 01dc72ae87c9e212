"""The readiness panel: this patient's CCM month at a glance (HTML) and as JSON."""

from __future__ import annotations

import logging

from flask import Blueprint, current_app, jsonify, render_template, request
from werkzeug.wrappers import Response

from rules.month import BadMonth, BadTimezone, Month
from rules.packs import UnknownPolicy, load_pack
from rules.verdict import to_json
from smart_app.context import LaunchContext
from smart_app.errors import AppError
from smart_app.fhir.client import FhirError
from smart_app.fhir.patient_scope import PatientScopeError
from smart_app.fhir.people import UNKNOWN, names_from
from smart_app.panel import view_model as panel_view
from smart_app.readiness import wording
from smart_app.readiness.captured import CapturedSource, ledger_of
from smart_app.readiness.options import options_from
from smart_app.readiness.use_case import PatientMonth, ServerSource, verdict_for
from smart_app.web import people, sessions

bp = Blueprint("panel", __name__)
log = logging.getLogger(__name__)


def _evaluate(ctx: LaunchContext) -> PatientMonth:
    """The verdict for the launch patient (with the Patient resource from the same batch)."""
    options = options_from(
        current_app.config,
        raw_month=request.args.get("month"),
        app_context=ctx.app_context,
        billing_practitioner=people.billing_practitioner(),
    )
    try:
        source = CapturedSource(ServerSource(sessions.fhir_client()), ledger_of(current_app), ctx.fhir_base)
        return verdict_for(source, ctx.patient_id, options)
    except FhirError as exc:
        log.warning("FHIR error while building the panel: status %s", getattr(exc, "status", "?"))
        raise AppError(
            502,
            "The FHIR server did not answer as expected",
            f"{str(exc).rstrip('. ')}. Try again; if it keeps failing, check that the server is "
            "reachable and that the session has the scopes the app needs.",
        ) from exc
    except PatientScopeError:
        raise  # sessions' own 403 page
    except PermissionError as exc:  # the token expired and could not be refreshed
        raise AppError(
            401,
            "Your session has ended",
            "The access granted at launch has expired and could not be renewed. Open the app again "
            "from the EHR.",
        ) from exc
    except (BadMonth, BadTimezone, UnknownPolicy) as exc:
        raise AppError(400, "This month cannot be evaluated", str(exc)) from exc


def _resolve_names(ctx: LaunchContext, result: PatientMonth) -> None:
    """Every name the page shows, resolved in this request (no name waits for the page's script): names
    the panel's batch already holds, then the session's cache, then ONE batch of reads for the rest (only
    on the first view of someone new; the session remembers them). Nothing else is fetched for people."""
    directory = people.directory()  # with the session's client, before the page goes offline
    directory.remember([p for p in names_from(result.resources).values() if p.name != UNKNOWN])
    people.know_patient(result.patient)
    people.offline()  # the care team comes from the Patient in the batch (no CareTeam search here)
    v = result.verdict
    refs = [v.billing_practitioner, people.billing_practitioner(), ctx.user, *directory.recent(),
            *people.care_team(), *(r for f in v.findings for r in wording.person_refs(f.message))]
    directory.resolve([r for r in refs if r])
    directory.client = None  # the page asks the server for no more names


@bp.app_template_global("with_names")
def named_text(text: str) -> str:
    """`text` with the person references the rules wrote replaced by names (resolved for this page)."""
    refs = wording.person_refs(text)
    if not refs:
        return text
    return wording.with_names(text, {r: people.person_name(r) for r in refs})


@bp.get("/panel")
def panel() -> Response | tuple[str, int] | str:
    """The readiness panel for the session's launch patient."""
    ctx = sessions.require_context()
    result = _evaluate(ctx)
    verdict, month = result.verdict, Month.parse(result.verdict.month)
    today = result.options.today if result.options else panel_view.practice_today(verdict.timezone)
    patient = result.patient if ctx.need_patient_banner else None
    pack = load_pack(verdict.policy)
    checks = panel_view.prerequisites(verdict, result.resources)
    _resolve_names(ctx, result)
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
        checks=checks,
        chosen_practitioner=people.billing_practitioner(),
        groups=panel_view.group_findings(verdict.findings),
        days_left=panel_view.days_left_text(month.days_left(today), month, today),
    )


@bp.get("/panel.json")
def panel_json() -> Response | tuple[Response, int]:
    """The same verdict as `ccm-ready evaluate --format json`."""
    ctx = sessions.require_context()
    try:
        verdict = _evaluate(ctx).verdict
    except AppError as err:
        return jsonify(err.to_json()), err.status
    return jsonify(to_json(verdict))


from smart_app.panel import people_views as _people_views  # noqa: E402,F401  (routes on this blueprint)
