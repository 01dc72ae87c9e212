"""The initiating-visit form: GET /visit/new and POST /visit (a finished Encounter the panel then counts).

Reached from the panel's checklist line "Initiating visit ... Missing". The visit is written like every other
capture: appended to the ledger first, then sent through the outbox as a transaction (Encounter +
Provenance); an EHR that refuses Encounter writes leaves it in the ledger, which the panel counts too.
"""

from __future__ import annotations

import logging
import re
from datetime import date, datetime
from typing import Any

from flask import current_app, render_template, request

from fhir_mapping.write_provenance import WriteError, now_utc
from fhir_mapping.write_time import new_entry_id, valid_entry_id
from fhir_mapping.write_visit import VISIT_TYPES, VisitDraft, visit_to_json, visit_transaction
from rules.entry_validation import Problem
from rules.month import Month
from smart_app.auth.performer import PerformerUnverified, establish
from smart_app.capture.blueprint import (
    _answer,
    _invalid,
    _invalid_form,
    _same_launch,
    _send_now,
    _write_client,
    bp,
    delivery_for,
    outbox_for,
    write_profiles,
)
from smart_app.capture.delivery import capture
from smart_app.capture.entries import pack_info, performer_ref
from smart_app.capture.forms import _data, _practice_tz, _text
from smart_app.context import LaunchContext
from smart_app.web import people, sessions

log = logging.getLogger(__name__)

TEMPLATE = "timelog/visit.html"
_MONTH = re.compile(r"\d{4}-\d{2}")
# The form's groups of qualifying visits (cms-rules.md 3.2): label -> codes, in VISIT_TYPES order.
VISIT_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("Annual wellness visit or Welcome to Medicare", ("G0438", "G0439", "G0402")),
    ("Office visit (E/M), new patient", ("99202", "99203", "99204", "99205")),
    ("Office visit (E/M), established patient", ("99212", "99213", "99214", "99215")),
)
FORM_CHOICES = "an office visit (E/M level 2-5), an annual wellness visit (AWV) or an IPPE"
CCM_DISCUSSED_MESSAGE = (
    "Tick this once CCM was discussed during the visit and documented: CMS counts only a visit where it was."
)


def _month(value: Any) -> str:
    """The panel month the form came from (YYYY-MM), so "back" returns to it; "" otherwise."""
    text = value.strip() if isinstance(value, str) else ""
    return text if _MONTH.fullmatch(text) else ""


def _default_practitioner(ctx: LaunchContext) -> str:
    """The visit is furnished by the billing practitioner: the one chosen this session, else the patient's
    general practitioner (the Patient the session already read), else the signed-in user."""
    chosen = people.billing_practitioner()
    if chosen:
        return chosen
    for ref in people.care_team():
        return ref
    return people.default_person()


def _page(form: dict[str, Any]) -> dict[str, Any]:
    return {
        "form": form,
        "groups": [(label, [(c, VISIT_TYPES[c][1]) for c in codes]) for label, codes in VISIT_GROUPS],
        "month": _month(form.get("month")),
        "today": datetime.now(_practice_tz()[1]).date().isoformat(),
    }


@bp.get("/visit/new")
def new_visit() -> Any:
    """The form: date, practitioner (picked by name), visit type, and "CCM was discussed"."""
    ctx = sessions.require_context()
    form: dict[str, Any] = {
        "visit_id": new_entry_id(),
        "date": datetime.now(_practice_tz()[1]).date().isoformat(),
        "practitioner": _default_practitioner(ctx),
        "code": "",
        "month": _month(request.args.get("month")),
    }
    return render_template(TEMPLATE, errors=(), **_page(form))


def check_visit(data: dict[str, Any], today: date) -> tuple[list[Problem], date | None]:
    """Field-level problems of a posted visit (every one at once), and the visit day when readable."""
    problems: list[Problem] = []
    day: date | None = None
    raw_day = _text(data, "date")
    if not raw_day:
        problems.append(Problem("date", "date-missing", "Give the date of the visit."))
    else:
        try:
            day = date.fromisoformat(raw_day)
        except ValueError:
            problems.append(Problem("date", "date-invalid", "Give the date as YYYY-MM-DD."))
        else:
            if day > today:
                problems.append(Problem("date", "date-future", "The visit date cannot be in the future: "
                                        "record the visit once it has taken place."))
                day = None
    if performer_ref(_text(data, "practitioner")) is None:
        problems.append(Problem("practitioner", "practitioner-missing",
                                "Choose the practitioner who saw the patient (the billing practitioner)."))
    code = _text(data, "code")
    if code not in VISIT_TYPES:
        # A form offers the list; an API caller is told the accepted codes.
        accepted = ", ".join(VISIT_TYPES) if request.is_json else FORM_CHOICES
        problems.append(Problem("code", "code-invalid", f"Choose the type of visit: {accepted}."))
    if _text(data, "ccm_discussed").lower() not in ("yes", "true", "on", "1"):
        problems.append(Problem("ccm_discussed", "ccm-not-discussed", CCM_DISCUSSED_MESSAGE))
    return problems, day


@bp.post("/visit")
def record_visit() -> Any:
    """Record the initiating visit: ledger first, then the EHR (Encounter + Provenance) when it accepts."""
    ctx = sessions.require_context()
    _, tz = _practice_tz()
    data = _data()
    data["month"] = _month(data.get("month"))
    problems, day = check_visit(data, datetime.now(tz).date())
    visit_id = _text(data, "visit_id") or new_entry_id()
    if not valid_entry_id(visit_id):
        problems.append(Problem("visit_id", "id-invalid", "The visit id must be a UUID."))
    if problems:
        return _invalid_form(problems, TEMPLATE, **_page(data))
    assert day is not None
    outbox, _ = outbox_for(current_app)
    existing = outbox.get(visit_id)
    if existing is not None and _same_launch(existing, ctx):
        return _answer(existing, ())
    if existing is not None:
        return _invalid("visit_id", "id-taken", "This visit id is already used.")
    named = performer_ref(_text(data, "practitioner"))
    assert named is not None
    client = _write_client()
    try:
        verified = establish(ctx, named, client)
    except PerformerUnverified as exc:
        return _invalid("practitioner", "performer-unverified", str(exc))
    draft = VisitDraft(
        visit_id=visit_id,
        patient_id=ctx.patient_id,
        # Signed in (verified fhirUser): the form names who saw the patient; the Provenance's author is the
        # verified user. Otherwise the practitioner named must be the one the server vouches for.
        practitioner=named if verified.how == "id-token" else verified.reference,
        day=day,
        code=_text(data, "code"),
    )
    pack = pack_info(Month.of(day))
    try:
        bundle = visit_transaction(
            draft, user=verified.reference, recorded=now_utc(), pack_id=pack.id, pack_version=pack.version,
            verification=verified.how,
        )
    except WriteError as exc:
        return _invalid("", "write", str(exc))
    people.remember_choice(draft.practitioner)
    _, item = capture(
        delivery_for(current_app).ledger,
        outbox,
        visit_id,
        "visit",
        fhir_base=ctx.fhir_base,
        patient_id=ctx.patient_id,
        user=verified.reference,
        facts={"visit": visit_to_json(draft), "pack_id": pack.id, "pack_version": pack.version},
        payload={"bundle": bundle},
        summary={"code": draft.code, "date": day.isoformat(), "label": VISIT_TYPES[draft.code][1],
                 "practitioner": draft.practitioner},
        mode=ctx.mode,
        profile=write_profiles(ctx, client).profile("visit"),
    )
    return _answer(_send_now(item, client), ())
