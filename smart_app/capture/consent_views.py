"""Consent views: the consent form and POST /consent (the four CMS disclosures)."""

from __future__ import annotations

import logging
from datetime import datetime, time
from typing import Any

from flask import current_app, render_template, request

from fhir_mapping.write_consent import ConsentDraft, consent_transaction
from fhir_mapping.write_note import consent_note, consent_to_json
from fhir_mapping.write_provenance import WriteError, now_utc
from fhir_mapping.write_time import (
    new_entry_id,
    valid_entry_id,
)
from rules.entry_validation import (
    ConsentForm,
    Problem,
    validate_consent,
)
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
from smart_app.web import people, sessions

log = logging.getLogger(__name__)

# --------------------------------------------------------------------------- views: consent


@bp.get("/consent/new")
def new_consent() -> Any:
    ctx = sessions.require_context()
    missing: list[str] = []  # every launch may record consent (what the EHR refuses stays in the ledger)
    form: dict[str, Any] = {"consent_id": new_entry_id(), "date": datetime.now(_practice_tz()[1]).date()}
    try:
        patient = sessions.fhir_client().read("Patient", ctx.patient_id)
        gps = patient.get("generalPractitioner") or []
        if gps and isinstance(gps[0], dict):
            form["billing_practitioner"] = performer_ref(str(gps[0].get("reference", ""))) or ""
    except Exception as exc:  # the form works without the prefill
        log.info("consent form prefill skipped: %s", type(exc).__name__)
    form["billing_practitioner"] = people.billing_practitioner() or form.get("billing_practitioner", "")
    return render_template(
        "timelog/consent.html", errors=(), form=form, missing=missing, user=performer_ref(ctx.user)
    )


@bp.post("/consent")
def record_consent() -> Any:
    ctx = sessions.require_context()
    _, tz = _practice_tz()
    data = _data()
    disclosures = data.get("disclosures") if request.is_json else request.form.getlist("disclosures")
    form = ConsentForm(
        decision=_text(data, "decision"),
        day=_text(data, "date"),
        method=_text(data, "method"),
        disclosures=tuple(d for d in disclosures if isinstance(d, str))
        if isinstance(disclosures, (list, tuple))
        else (),
        obtained_by=performer_ref(_text(data, "obtained_by")) or performer_ref(ctx.user),
        billing_practitioner=performer_ref(_text(data, "billing_practitioner")),
    )
    result = validate_consent(form, today=datetime.now(tz).date())
    consent_id = _text(data, "consent_id") or new_entry_id()
    problems = list(result.errors)
    if not valid_entry_id(consent_id):
        problems.append(Problem("consent_id", "id-invalid", "The consent id must be a UUID."))
    if problems:
        return _invalid_form(
            problems, "timelog/consent.html", form=data, missing=[], user=performer_ref(ctx.user)
        )
    outbox, _ = outbox_for(current_app)
    existing = outbox.get(consent_id)
    if existing is not None and _same_launch(existing, ctx):
        return _answer(existing, ())
    if existing is not None:
        return _invalid("consent_id", "id-taken", "This consent id is already used.")
    assert result.day is not None and form.obtained_by and form.billing_practitioner
    try:
        verified = establish(ctx, form.obtained_by, _write_client())
    except PerformerUnverified as exc:
        return _invalid("obtained_by", "performer-unverified", str(exc))
    obtained_at = datetime.combine(result.day, time(12, 0), tzinfo=tz)
    if result.day == datetime.now(tz).date():
        obtained_at = min(obtained_at, datetime.now(tz).replace(microsecond=0))
    draft = ConsentDraft(
        consent_id=consent_id,
        patient_id=ctx.patient_id,
        decision=form.decision,
        obtained_at=obtained_at,
        # Signed in (verified fhirUser): the form may name who obtained the consent; the Provenance's
        # enterer is the verified user. Otherwise whoever obtained it must be verified against the server.
        obtained_by=form.obtained_by if verified.how == "id-token" else verified.reference,
        billing_practitioner=form.billing_practitioner,
        method=form.method,
        disclosures=form.disclosures,
        stop_date=result.day if form.decision == "stopped" else None,
    )
    pack = pack_info(Month.of(result.day))
    user = verified.reference
    recorded = now_utc()
    try:
        bundle = consent_transaction(
            draft,
            user=user,
            recorded=recorded,
            pack_id=pack.id,
            pack_version=pack.version,
            verification=verified.how,
        )
        note = consent_note(draft, recorded)
    except WriteError as exc:
        return _invalid("", "write", str(exc))
    payload: dict[str, Any] = {"bundle": bundle}
    if form.decision == "stopped":  # stops the consent on file (kept whole); else records a new inactive one
        payload = {
            "fallback_bundle": bundle,
            "stop_date": result.day.isoformat(),
            "user": user,
            "verification": verified.how,  # the Provenance says how the performer was established
            "billing_practitioner": form.billing_practitioner,
            "recorded": now_utc().isoformat(),
            "pack_id": pack.id,
            "pack_version": pack.version,
        }
    kind = "consent-stop" if form.decision == "stopped" else "consent"
    client = _write_client()
    _, item = capture(
        delivery_for(current_app).ledger,
        outbox,
        consent_id,
        kind,
        fhir_base=ctx.fhir_base,
        patient_id=ctx.patient_id,
        user=user,
        facts={"consent": consent_to_json(draft), "pack_id": pack.id, "pack_version": pack.version},
        payload={**payload, "note": note},
        summary={"decision": form.decision, "date": result.day.isoformat(), "method": form.method},
        mode=ctx.mode,
        profile=write_profiles(ctx, client).profile(kind),
    )
    item = _send_now(item, client)
    return _answer(item, ())


