"""Time views: POST /time, the time list, corrections, pending entries and retries."""

from __future__ import annotations

import logging
from dataclasses import replace
from datetime import datetime
from typing import Any

from flask import current_app, jsonify, render_template, request

from fhir_mapping.read_note import CAPTURED_PREFIX, merge_captured
from fhir_mapping.reader import read_facts
from fhir_mapping.write_provenance import WriteError, now_utc
from fhir_mapping.write_time import (
    draft_to_json,
    new_entry_id,
    valid_entry_id,
)
from rules.entry_validation import (
    MAX_NOTE_CHARS,
    Problem,
    note_warning,
)
from rules.month import Month
from rules.records import TimeEntry
from smart_app.auth.performer import PerformerUnverified, establish
from smart_app.capture.blueprint import (
    _answer,
    _checked,
    _form_context,
    _invalid,
    _invalid_form,
    _item_json,
    _recent,
    _resume,
    _same_launch,
    _send_now,
    _write_client,
    bp,
    delivery_for,
    outbox_for,
    write_profiles,
)
from smart_app.capture.delivery import capture
from smart_app.capture.entries import entry_draft, pack_info, time_item, unsaved_entries
from smart_app.capture.forms import _data, _practice_tz, _text, proposed_from
from smart_app.fhir.client import FhirError
from smart_app.readiness.captured import captured_pairs
from smart_app.web import people, sessions

log = logging.getLogger(__name__)

@bp.post("/time")
def record_time() -> Any:
    ctx = sessions.require_context()  # a launch that may write nothing still records (ledger only)
    tz_name, tz = _practice_tz()
    data = _data()
    proposed, problems = proposed_from(data, ctx, tz)
    entry_id = _text(data, "id") or new_entry_id()
    if not valid_entry_id(entry_id):
        problems.append(Problem("id", "id-invalid", "The entry id must be a UUID (leave it out to get one)."))
    outbox, _ = outbox_for(current_app)
    existing = outbox.get(entry_id) if not problems else None
    if existing is not None and not _same_launch(existing, ctx):
        problems.append(Problem("id", "id-taken", "This entry id is already used; reload the form."))
    elif existing is not None:  # a repeated submit of the same form: answer with the stored entry
        return _answer(existing, ())
    client = _write_client()
    others: list[TimeEntry] = []
    warnings: list[Problem] = []
    if proposed.performer:
        others = unsaved_entries(outbox, proposed.performer)
    check, reached = _checked(proposed, others, client, ctx.patient_id, tz_name, tz)
    if not reached:
        warnings.append(
            Problem(
                "start",
                "overlap-unchecked",
                "The FHIR server could not be reached, so "
                "overlap with entries already on it was not checked.",
            )
        )
    parsed = {p.field for p in problems}
    said = parsed & {"start", "date"}  # the parse problem already names the missing part
    errors = [*problems, *(e for e in check.errors if not (e.code == "start-missing" and said))]
    if errors:
        return _invalid_form(
            errors, "timelog/new.html", warnings=check.warnings, form=data, **_form_context(ctx)
        )
    try:
        verified = establish(ctx, proposed.performer, client)
    except PerformerUnverified as exc:
        unverified = [Problem("performer", "performer-unverified", str(exc))]
        return _invalid_form(unverified, "timelog/new.html", form=data, **_form_context(ctx))
    proposed = replace(proposed, performer=verified.reference)
    user = verified.reference
    profile = write_profiles(ctx, client).profile("time")
    try:
        item = time_item(
            delivery_for(current_app).ledger,
            outbox,
            entry_id,
            check,
            proposed,
            fhir_base=ctx.fhir_base,
            patient_id=ctx.patient_id,
            user=user,
            mode=ctx.mode,
            profile=profile,
            verification=verified.how,
        )
    except WriteError as exc:
        return _invalid("", "write", str(exc))
    item = _send_now(item, client)
    people.remember_choice(proposed.performer)  # offered first on the next form of this session
    return _answer(item, (*check.warnings, *warnings))


@bp.post("/time/note-check")
def note_check() -> Any:
    """The vague-note warning while typing (the same rule the readiness check applies)."""
    sessions.require_context()
    note = _text(_data(), "note")[:MAX_NOTE_CHARS]
    warning = note_warning(note)
    return jsonify({"vague": warning is not None, "message": warning.message if warning else ""})


@bp.get("/time")
def list_time() -> Any:
    """This patient's time entries for a month (the FHIR server's, the app's notes on it and the ledger's),
    each with a link to correct it."""
    ctx = sessions.require_context()
    tz_name, tz = _practice_tz()
    try:
        month = (
            Month.parse(request.args.get("month", ""))
            if request.args.get("month")
            else Month.of(datetime.now(tz))
        )
    except ValueError:
        month = Month.of(datetime.now(tz))
    start, end = month.bounds(tz)
    entries: list[TimeEntry] = []
    problem = ""
    try:
        client = sessions.fhir_client()
        params = {"patient": f"Patient/{ctx.patient_id}", "date": [f"ge{start.date()}", f"lt{end.date()}"]}
        encounters = client.search("Encounter", params)
        tasks = client.search("Task", {"patient": f"Patient/{ctx.patient_id}"})
        notes = _notes(client, ctx.patient_id)
        captured = captured_pairs(delivery_for(current_app).ledger, ctx.fhir_base, ctx.patient_id)
        facts = read_facts(merge_captured([*encounters, *tasks, *notes], captured), ctx.patient_id, tz_name)
        entries = sorted(
            (e for e in facts.time_entries if month.contains(e.start, tz)), key=lambda e: e.start
        )
    except Exception as exc:  # the page explains instead of failing
        log.info("time list unavailable: %s", type(exc).__name__)
        problem = "The FHIR server could not be reached; entries on it cannot be listed right now."
    return render_template(
        "timelog/list.html",
        entries=entries,
        month=month,
        problem=problem,
        tz=tz,
        prev_month=month.previous(),
        next_month=month.next(),
        writable=True,  # a correction the EHR does not accept is kept in the ledger
    )


def _notes(client: Any, patient_id: str) -> list[dict[str, Any]]:
    """The patient's DocumentReferences (where the app's notes are); none when the search is refused."""
    try:
        return client.search("DocumentReference", {"patient": f"Patient/{patient_id}"})
    except FhirError:
        return []


@bp.get("/time/new")
def new_time() -> Any:
    ctx = sessions.require_context()
    return render_template("timelog/new.html", errors=(), warnings=(), form={}, **_form_context(ctx))


def _original(entry: str, ctx: Any) -> TimeEntry | None:
    """The saved entry being corrected (None when it cannot be read)."""
    tz_name, _ = _practice_tz()
    try:
        client = sessions.fhir_client()
        found = client.search(
            "Encounter",
            [("patient", f"Patient/{ctx.patient_id}"), ("_id", entry), ("_revinclude", "Task:encounter")],
        )
        facts = read_facts(found, ctx.patient_id, tz_name)
    except Exception as exc:
        log.info("entry to correct unavailable: %s", type(exc).__name__)
        return None
    return next((t for t in facts.time_entries if t.id == f"Encounter/{entry}"), None)


@bp.get("/time/<entry>/correct")
def correct_form(entry: str) -> Any:
    ctx = sessions.require_context()
    original = _original(entry, ctx)
    return render_template(
        "timelog/correct.html", entry=entry, original=original, tz=_practice_tz()[1], errors=(), form={},
        **_form_context(ctx),
    )


@bp.post("/time/<entry>/correct")
def correct_time(entry: str) -> Any:
    """Mark a saved entry (Encounter id) entered-in-error with a reason, optionally with a replacement."""
    ctx = sessions.require_context()  # without update scopes the correction is kept in the ledger only
    tz_name, tz = _practice_tz()
    data = _data()
    reason = _text(data, "reason")
    errors: list[Problem] = []
    if not reason:
        errors.append(
            Problem(
                "reason",
                "reason-missing",
                "Say why the entry is wrong (e.g. 'wrong patient', 'minutes mistyped: 15 not 50').",
            )
        )
    if not entry or len(entry) > 64 or not all(ch.isalnum() or ch in "-." for ch in entry):
        errors.append(Problem("entry", "entry-invalid", "Not an entry id."))
    replacement_json = None
    check = None
    wants_replacement = any(_text(data, k) for k in ("minutes", "end", "note"))
    if wants_replacement:
        proposed, problems = proposed_from(data, ctx, tz)
        proposed = replace(proposed, replaces=entry)
        errors += problems
        others = unsaved_entries(outbox_for(current_app)[0], proposed.performer) if proposed.performer else []
        client = _write_client()
        check, _ = _checked(proposed, others, client, ctx.patient_id, tz_name, tz)
        errors += check.errors
        if not errors and check.start is not None and check.minutes is not None:
            replacement_json = draft_to_json(entry_draft(new_entry_id(), ctx.patient_id, check, proposed))
    if errors:
        return _invalid_form(
            errors, "timelog/correct.html", entry=entry, original=_original(entry, ctx), tz=tz, form=data,
            **_form_context(ctx),
        )
    try:
        verified = establish(ctx, _text(data, "performer"), _write_client())
    except PerformerUnverified as exc:
        return _invalid("performer", "performer-unverified", str(exc))
    user = verified.reference
    pack = pack_info(check.month if check else None)
    correction_id = _text(data, "id") if valid_entry_id(_text(data, "id")) else new_entry_id()
    outbox, _ = outbox_for(current_app)
    taken = outbox.get(correction_id)
    if taken is not None and not _same_launch(taken, ctx):
        correction_id = new_entry_id()
    fix = {
        "target_encounter_id": entry,
        "reason": reason,
        "user": user,
        "verification": verified.how,  # the Provenance says how the performer was established
        "recorded": now_utc().isoformat(),
        "pack_id": pack.id,
        "pack_version": pack.version,
        "replacement": replacement_json,
    }
    client = _write_client()
    # an entry only the app holds (its note or ledger: id cr-<entry>) is corrected in the ledger
    only_ours = entry.startswith(CAPTURED_PREFIX)
    profile = "none" if only_ours else write_profiles(ctx, client).profile("correction")
    _, item = capture(
        delivery_for(current_app).ledger,
        outbox,
        correction_id,
        "correction",
        fhir_base=ctx.fhir_base,
        patient_id=ctx.patient_id,
        user=user,
        facts=fix,
        payload=fix,
        summary={"corrects": entry, "replacement": bool(replacement_json)},
        mode=ctx.mode,
        profile=profile,
    )
    item = _send_now(item, client)
    return _answer(item, check.warnings if check else ())


@bp.get("/time/pending")
def pending() -> Any:
    """This patient's outbox: pending and rejected items, and those saved in the last day."""
    ctx = sessions.require_context()
    outbox, worker = outbox_for(current_app)
    items = outbox.for_patient(ctx.fhir_base, ctx.patient_id)
    _resume(worker, [i for i in items if i.label == "pending"])
    return jsonify(
        {
            "items": [_item_json(i) for i in _recent(items)],
            "counts": {s: sum(1 for i in items if i.label == s) for s in ("pending", "saved", "rejected")},
        }
    )


@bp.post("/time/<item_id>/retry")
def retry(item_id: str) -> Any:
    """Queue a rejected item again (e.g. after write scopes were granted)."""
    ctx = sessions.require_context()
    outbox, _ = outbox_for(current_app)
    item = outbox.get(item_id)
    if item is None or not _same_launch(item, ctx):
        return jsonify({"error": "not-found", "message": "No such entry for this patient."}), 404
    outbox.requeue(item_id)
    sent = _send_now(outbox.get(item_id) or item, sessions.fhir_client())
    return _answer(sent, ())


