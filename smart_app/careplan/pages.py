"""What every care-plan page is drawn from: the blueprint, launch, month, chart, kept draft, editor page."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
from dataclasses import dataclass, replace
from datetime import date
from typing import Any

from flask import (
    Blueprint,
    current_app,
    render_template,
    request,
    session,
)

from fhir_mapping.write_careplan import (
    SHARE_METHODS,
)
from rules.careplan_validation import (
    SECTION_LABELS,
    TEXT_SECTIONS,
    CarePlanDraft,
    Problem,
)
from rules.month import BadMonth, BadTimezone, Month
from rules.packs import UnknownPolicy
from smart_app import config
from smart_app.auth import scopes
from smart_app.careplan import prefill
from smart_app.careplan.drafts import DraftStore, draft_to_json
from smart_app.context import LaunchContext
from smart_app.errors import AppError
from smart_app.fhir.client import FhirError, FhirUnauthorized, FhirUnavailable
from smart_app.fhir.patient_scope import PatientScopeError
from smart_app.readiness.options import options_from
from smart_app.storage import database_for
from smart_app.web import sessions

bp = Blueprint("careplan", __name__)
log = logging.getLogger(__name__)
TEMPLATES = config.TEMPLATES / "careplan"
PRINT_CSS = (TEMPLATES / "print.css").read_text("utf-8")


class CarePlanError(AppError):
    """A care-plan page problem (the one application error type)."""


# --------------------------------------------------------------------------- kept drafts


def _store() -> DraftStore:
    store = current_app.extensions.get("ccm_ready_careplan_drafts")
    if store is None:
        store = DraftStore(database_for(current_app.config, "careplan_drafts"))
        current_app.extensions["ccm_ready_careplan_drafts"] = store
    return store


def _draft_key(ctx: LaunchContext) -> str:
    who = ctx.user or str(getattr(session, "key", "") or "")
    return hashlib.sha256(f"{ctx.fhir_base}|{ctx.patient_id}|{who}".encode()).hexdigest()


# --------------------------------------------------------------------------- views


@dataclass(frozen=True)
class _Page:
    """What every editor page is drawn from: the launch, today, the month and the chart as read."""

    ctx: LaunchContext
    today: date
    month: Month
    chart: prefill.Chart

    def reread(self) -> _Page:
        """The same page with the chart as it is on the server now (kept as it was if it cannot be read)."""
        with contextlib.suppress(CarePlanError):
            return replace(self, chart=_chart(self.ctx, self.month, self.chart.verdict.policy))
        return self


def _context() -> tuple[LaunchContext, date, Month, str]:
    ctx = sessions.require_context()
    try:
        options = options_from(
            current_app.config, raw_month=request.args.get("month"), app_context=ctx.app_context
        )
    except AppError as err:
        raise CarePlanError(err.status, err.title, err.message) from err
    assert options.today is not None
    return ctx, options.today, options.month, options.policy


def _page() -> _Page:
    """The current launch with its chart read; raises CarePlanError."""
    ctx, today, month, policy = _context()
    return _Page(ctx, today, month, _chart(ctx, month, policy))


def _chart(ctx: LaunchContext, month: Month, policy: str) -> prefill.Chart:
    try:
        options = options_from(current_app.config, month=month, policy=policy)
        return prefill.load_chart(sessions.fhir_client(), ctx.patient_id, options)
    except PatientScopeError:
        raise
    except FhirError as exc:
        log.warning("care plan: FHIR error while reading the chart: status %s", exc.status)
        raise CarePlanError(
            502,
            "The FHIR server did not answer as expected",
            f"{exc.message.rstrip('. ')}. Try again in a moment.",
        ) from exc
    except PermissionError as exc:
        raise CarePlanError(401, "Your session has ended", "Open the app again from the EHR.") from exc
    except (BadMonth, BadTimezone, UnknownPolicy) as exc:
        raise CarePlanError(400, "This month cannot be evaluated", str(exc)) from exc


def _error(err: CarePlanError) -> tuple[str, int]:
    return render_template("error.html", title=err.title, message=err.message), err.status


def _editor(
    page: _Page,
    draft: CarePlanDraft,
    plan_key: str,
    *,
    problems: tuple[Problem, ...] = (),
    notice: str = "",
    notice_kind: str = "info",
    conflict: dict[str, Any] | None = None,
    status: int = 200,
) -> tuple[str, int]:
    ctx, chart = page.ctx, page.chart
    kept = _store().get(_draft_key(ctx))
    pending = kept is not None and kept[1] == "pending"
    keys = [c.condition_key for c in chart.verdict.chronic_conditions]
    known = dict(chart.problems)
    for ref in draft.conditions:
        known.setdefault(ref, draft.problem_labels.get(ref, ref))
    body = render_template(
        "careplan/editor.html",
        draft=draft,
        plan_key=plan_key,
        chart=chart,
        problems=problems,
        by_field={p.field: p.message for p in problems},
        notice=notice,
        notice_kind=notice_kind,
        conflict=conflict,
        sections=TEXT_SECTIONS,
        labels=SECTION_LABELS,
        templates=prefill.templates_for(keys),
        problem_options=list(known.items()),
        today=page.today,
        month=page.month,
        share_methods=SHARE_METHODS,
        problem_labels_json=json.dumps(known),
        can_write=not scopes.missing(ctx, "care-plan"),
        share_refusal=scopes.cannot_save_message(ctx, "care-plan-share"),
        pending=pending,
        on_file=prefill.plan_on_file(chart),
    )
    return body, status


def _not_saved(
    page: _Page,
    draft: CarePlanDraft,
    plan_key: str,
    state: str,
    *,
    status: int,
    notice: str,
    error: str = "",
    problems: tuple[Problem, ...] = (),
    conflict: dict[str, Any] | None = None,
) -> tuple[str, int]:
    """Keep the draft (state and error) on this server and show the editor again with an error notice."""
    _store().put(_draft_key(page.ctx), draft_to_json(draft, plan_key), state, error)
    return _editor(
        page,
        draft,
        plan_key,
        problems=problems,
        conflict=conflict,
        status=status,
        notice=notice,
        notice_kind="error",
    )


def _conflict(page: _Page, draft: CarePlanDraft, plan_key: str, message: str) -> tuple[str, int]:
    """Someone else wrote the plan meanwhile: keep the draft and show theirs next to it (409)."""
    return _not_saved(
        page,
        draft,
        plan_key,
        "conflict",
        error=message,
        status=409,
        notice=message,
        conflict=conflict_with(page.chart, page.ctx),
    )


def conflict_with(chart: prefill.Chart, ctx: LaunchContext) -> dict[str, Any]:
    """What the conflict panel shows: the plan in the chart now."""
    current = chart.plan or {}
    meta = current.get("meta") or {}
    return {
        "plan_id": str(current.get("id") or ""),
        "version": str(meta.get("versionId") or ""),
        "updated": str(meta.get("lastUpdated") or ""),
        "theirs": prefill.stored_draft(chart, ctx.patient_id),
    }


def _failed(page: _Page, draft: CarePlanDraft, plan_key: str, exc: FhirError) -> tuple[str, int]:
    log.warning("care plan save failed: status %s", exc.status)
    if exc.status in (409, 412):
        page = page.reread()  # show the version that is in the chart now
        version = conflict_with(page.chart, page.ctx)["version"]
        return _conflict(
            page,
            draft,
            plan_key,
            f"Someone else saved this care plan while you were editing (you started from version "
            f"{draft.version}; the chart now has version {version}). Nothing was overwritten and "
            "your changes are kept below. Compare with their version, then save yours over it or discard it.",
        )
    transient = isinstance(exc, (FhirUnavailable, FhirUnauthorized)) or exc.status is None
    if transient:
        msg = (
            f"The FHIR server could not be reached ({exc.message.rstrip('. ')}). Your draft is kept on this "
            "server and is sent again when you open the care plan; you can also press Save to retry now."
        )
        return _not_saved(
            page, draft, plan_key, "pending", error=msg, status=503, notice=f"Not saved yet. {msg}"
        )
    msg = f"The FHIR server refused the care plan: {exc.message}"
    return _not_saved(
        page,
        draft,
        plan_key,
        "rejected",
        error=msg,
        status=422,
        notice=f"Not saved. {msg}. Your text is kept; correct it and save again.",
    )


