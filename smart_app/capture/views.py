"""Time and consent capture in the chart: POST /time, corrections, outbox status, consent form.

Every write goes through the durable outbox (smart_app.capture.outbox): stored first, then sent; the
answer says `saved` only when the FHIR server has accepted it, otherwise `pending` (retried in the
background).
Everything is scoped to the launch patient; without write scopes the pages say so and nothing is written.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import date, datetime, time, timedelta, tzinfo
from pathlib import Path
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, render_template, request
from flask.blueprints import BlueprintSetupState

from fhir_mapping.reader import read_facts
from fhir_mapping.write_consent import ConsentDraft, consent_transaction
from fhir_mapping.write_provenance import WriteError, now_utc
from fhir_mapping.write_time import (
    TimeEntryDraft,
    draft_to_json,
    entry_transaction,
    new_entry_id,
    valid_entry_id,
)
from rules.entry_validation import (
    ACTIVITIES,
    MAX_NOTE_CHARS,
    PROGRAM_LABELS,
    ConsentForm,
    EntryCheck,
    Problem,
    ProposedEntry,
    note_warning,
    validate,
    validate_consent,
)
from rules.month import BadTimezone, Month, zone
from rules.packs import DEFAULT_PACK, PolicyPack, UnknownPolicy, load_pack, pack_for_month
from rules.records import TimeEntry
from smart_app.capture.outbox import Client, Outbox, OutboxItem, OutboxWorker
from smart_app.context import LaunchContext
from smart_app.web import sessions

bp = Blueprint("timelog", __name__)
log = logging.getLogger(__name__)

TIME_TYPES = ("Encounter", "Task", "Provenance")
CONSENT_TYPES = ("Consent", "Provenance")
EXT_KEY = "ccm_ready_outbox"


# --------------------------------------------------------------------------- setup


def outbox_for(app: Flask) -> tuple[Outbox, OutboxWorker]:
    return app.extensions[EXT_KEY]


def _client_for_app(app: Flask) -> Any:
    """Clients the worker may build itself: open servers only (SMART servers need a session's token)."""

    def client_for(item: OutboxItem) -> Client | None:
        if item.mode != "open":
            return None
        from smart_app.fhir.patient_scope import PatientScopedClient

        ctx = LaunchContext(mode="open", fhir_base=item.fhir_base, patient_id=item.patient_id, user=item.user)
        with app.app_context():  # the worker thread has none; server_client reads the app's config
            inner = sessions.server_client(ctx)
        return PatientScopedClient(inner, item.patient_id)

    return client_for


@bp.record_once
def _setup(state: BlueprintSetupState) -> None:
    app = state.app
    data_dir = Path(app.config.get("DATA_DIR") or ".ccm-ready")
    outbox = Outbox(
        app.config.get("OUTBOX_DB") or data_dir / "outbox.sqlite3",
        backoff=float(app.config.get("OUTBOX_BACKOFF", 2.0)),
    )
    worker = OutboxWorker(
        outbox, _client_for_app(app), interval=float(app.config.get("OUTBOX_INTERVAL", 5.0))
    )
    app.extensions[EXT_KEY] = (outbox, worker)
    outbox.purge_saved(float(app.config.get("OUTBOX_KEEP_SAVED_DAYS", 7)) * 86400)
    app.jinja_env.globals["timelog_items"] = _template_items
    app.jinja_env.globals["timelog_form"] = _template_form
    if app.config.get("OUTBOX_WORKER", True):
        worker.start()  # resumes whatever was pending when the app stopped


# --------------------------------------------------------------------------- shared use case (also the CLI)


def performer_ref(user: str | None) -> str | None:
    """'Practitioner/1' from a fhirUser (relative or absolute); None for other user types."""
    if not user:
        return None
    parts = [p for p in user.split("?", 1)[0].split("/") if p]
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] in ("Practitioner", "PractitionerRole"):
        return f"{parts[-2]}/{parts[-1]}"
    return None


def pack_info(month: Month | None) -> PolicyPack:
    try:
        return pack_for_month(month) if month is not None else load_pack(DEFAULT_PACK)
    except UnknownPolicy:
        return load_pack(DEFAULT_PACK)


def entry_draft(entry_id: str, patient_id: str, check: EntryCheck, proposed: ProposedEntry) -> TimeEntryDraft:
    """The time entry to write: what was proposed, with the start, minutes and end the check settled."""
    assert check.start is not None and check.minutes is not None
    return TimeEntryDraft(
        entry_id=entry_id,
        patient_id=patient_id,
        performer=str(proposed.performer),
        start=check.start,
        minutes=check.minutes,
        program=proposed.program,
        activity=proposed.activity,
        note=proposed.note.strip(),
        end=check.end,
        conditions=proposed.conditions,
        late=check.late,
    )


def time_item(
    outbox: Outbox,
    entry_id: str,
    check: EntryCheck,
    proposed: ProposedEntry,
    *,
    fhir_base: str,
    patient_id: str,
    user: str,
    mode: str,
) -> OutboxItem:
    """Store a validated entry in the outbox (the transaction is built and checked before storing)."""
    assert check.ok
    draft = entry_draft(entry_id, patient_id, check, proposed)
    pack = pack_info(check.month)
    bundle = entry_transaction(
        draft, user=user, recorded=now_utc(), pack_id=pack.id, pack_version=pack.version
    )
    summary = {
        "start": draft.start.isoformat(),
        "end": draft.period_end.isoformat(),
        "minutes": draft.minutes,
        "program": draft.program,
        "performer": draft.performer,
        "late": draft.late,
        "activity": draft.activity,
    }
    return outbox.add(
        entry_id,
        "time",
        fhir_base=fhir_base,
        patient_id=patient_id,
        payload={"bundle": bundle},
        summary=summary,
        mode=mode,
        user=user,
    )


def unsaved_entries(outbox: Outbox, performer: str) -> list[TimeEntry]:
    """The performer's entries still in the outbox, as TimeEntry records (for the overlap check)."""
    out = []
    for item in outbox.unsaved_time(performer):
        s = item.summary
        try:
            start, end = datetime.fromisoformat(s["start"]), datetime.fromisoformat(s["end"])
        except (KeyError, TypeError, ValueError):
            continue
        out.append(
            TimeEntry(
                id=f"outbox/{item.id}",
                status="finished",
                program=str(s.get("program", "ccm")),
                start=start,
                end=end,
                minutes=float(s.get("minutes", 0)),
                performer=performer,
            )
        )
    return out


def server_entries(client: Any, patient_id: str, start: datetime, end: datetime, tz: str) -> list[TimeEntry]:
    """The patient's time entries around [start, end) on the server (raises FhirError when unreachable)."""
    params = {
        "patient": f"Patient/{patient_id}",
        "date": [f"ge{(start - timedelta(days=1)).date()}", f"le{(end + timedelta(days=1)).date()}"],
    }
    encounters = client.search("Encounter", params)
    return list(read_facts(encounters, patient_id, tz).time_entries)


# --------------------------------------------------------------------------- request parsing


def _practice_tz() -> tuple[str, tzinfo]:
    name = str(current_app.config.get("TIMEZONE", "UTC"))
    try:
        return name, zone(name)
    except BadTimezone:
        return "UTC", zone("UTC")


def _data() -> dict[str, Any]:
    if request.is_json:
        body = request.get_json(silent=True)
        return body if isinstance(body, dict) else {}
    data: dict[str, Any] = {k: v for k, v in request.form.items()}
    data["conditions"] = request.form.getlist("conditions")
    return data


def _text(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    return value.strip() if isinstance(value, str) else ("" if value is None else str(value).strip())


def parse_moment(day: str, clock: str, tz: tzinfo) -> datetime | None:
    """A local date + HH:MM (or a full ISO dateTime in `clock`) -> aware datetime; None when unreadable."""
    try:
        if "T" in clock:
            moment = datetime.fromisoformat(clock)
            return moment if moment.tzinfo else moment.replace(tzinfo=tz)
        return datetime.combine(date.fromisoformat(day), time.fromisoformat(clock)).replace(tzinfo=tz)
    except (TypeError, ValueError):
        return None


def proposed_from(
    data: dict[str, Any], ctx: LaunchContext, tz: tzinfo
) -> tuple[ProposedEntry, list[Problem]]:
    """The entry a form/JSON body describes, plus parse problems (unreadable numbers and times)."""
    problems: list[Problem] = []
    day = _text(data, "date")
    start = parse_moment(day, _text(data, "start"), tz)
    if start is None and (day or _text(data, "start")):
        problems.append(
            Problem("start", "start-unreadable", "Enter the date as YYYY-MM-DD and the start time as HH:MM.")
        )
    end = None
    if _text(data, "end"):
        end = parse_moment(day or (start.date().isoformat() if start else ""), _text(data, "end"), tz)
        if end is None:
            problems.append(Problem("end", "end-unreadable", "Enter the end time as HH:MM."))
    minutes = None
    if _text(data, "minutes"):
        try:
            minutes = int(_text(data, "minutes"))
        except ValueError:
            problems.append(Problem("minutes", "minutes-unreadable", "Minutes must be a whole number."))
    performer = performer_ref(ctx.user) or performer_ref(_text(data, "performer"))
    conditions = data.get("conditions") or []
    if isinstance(conditions, str):
        conditions = [conditions]
    conditions = tuple(str(c).strip() for c in conditions if str(c).strip())
    proposed = ProposedEntry(
        start=start,
        minutes=minutes,
        end=end,
        performer=performer,
        program=_text(data, "program") or "ccm",
        activity=_text(data, "activity") or "care-coordination",
        note=str(data.get("note") or ""),
        conditions=conditions,
    )
    return proposed, problems


# --------------------------------------------------------------------------- views: time


def _wants_json() -> bool:
    return request.is_json or request.accept_mimetypes.best == "application/json"


def _missing_scopes(ctx: LaunchContext, types: tuple[str, ...]) -> list[str]:
    return [t for t in types if not ctx.can_write(t)]


class ReadOnly(Exception):
    """This launch may not write the resource types a request needs (answered by `_read_only`)."""

    def __init__(self, missing: list[str]) -> None:
        super().__init__(", ".join(missing))
        self.missing = missing


def _writer(types: tuple[str, ...]) -> LaunchContext:
    """The session's launch when it may write `types`; raises ReadOnly (a 403 answer) otherwise."""
    ctx = sessions.require_context()
    missing = _missing_scopes(ctx, types)
    if missing:
        raise ReadOnly(missing)
    return ctx


@bp.errorhandler(ReadOnly)
def _refuse_read_only(exc: ReadOnly) -> tuple[Any, int]:
    return _read_only(exc.missing)


def _read_only(missing: list[str]) -> tuple[Any, int]:
    message = (
        f"Read-only: this launch was not granted permission to write {', '.join(missing)}. Nothing "
        "was recorded. Ask your administrator for write scopes (e.g. user/Encounter.c) and launch again."
    )
    if _wants_json():
        return jsonify({"error": "read-only", "message": message}), 403
    return render_template(
        "timelog/result.html", title="Read-only", message=message, state="read-only", item=None
    ), 403


def _problems_json(problems: tuple[Problem, ...] | list[Problem]) -> list[dict[str, str]]:
    return [{"field": p.field, "code": p.code, "message": p.message} for p in problems]


STATE_MESSAGES = {
    "saved": "Saved on the FHIR server.",
    "pending": "Pending: kept safely on this server and retried until the FHIR server accepts it.",
    "rejected": "Not saved: the FHIR server refused it (see the reason). It is kept here.",
}


def _answer(item: OutboxItem, warnings: tuple[Problem, ...]) -> tuple[Any, int]:
    state = item.label
    status = {"saved": 201, "pending": 202}.get(state, 422)
    body = {
        "id": item.id,
        "kind": item.kind,
        "state": state,
        "message": STATE_MESSAGES[state],
        "error": item.last_error or None,
        "resources": item.result,
        "warnings": _problems_json(warnings),
        "late": bool(item.summary.get("late")),
    }
    if _wants_json():
        return jsonify(body), status
    return render_template(
        "timelog/result.html",
        title=STATE_MESSAGES[state],
        message=body["message"],
        state=state,
        item=item,
        warnings=warnings,
    ), status


def _same_launch(item: OutboxItem, ctx: LaunchContext) -> bool:
    """An outbox item belongs to this session's server and patient (others are never shown or touched)."""
    return item.patient_id == ctx.patient_id and item.fhir_base == ctx.fhir_base.rstrip("/")


def _write_client() -> Any:
    """The session's client for a write request: no in-client retries (the outbox retries, with backoff), so
    a server that is down answers the user in one round trip instead of after several."""
    client = sessions.fhir_client()
    inner = getattr(client, "inner", None)
    if inner is not None and hasattr(inner, "max_retries"):
        inner.max_retries = 0  # this FhirClient was built for this request only
    return client


def _checked(
    proposed: ProposedEntry,
    others: list[TimeEntry],
    client: Any,
    patient_id: str,
    tz_name: str,
    tz: tzinfo,
) -> tuple[EntryCheck, bool]:
    """Validate against the unsaved entries, then against the server's too; False when the server could
    not be reached (the server being down must not block recording time, so that check is skipped)."""
    check = validate(proposed, now=datetime.now(tz), tz=tz, others=others)
    if not (check.ok and check.start is not None and check.end is not None):
        return check, True
    try:
        on_server = server_entries(client, patient_id, check.start, check.end, tz_name)
    except Exception as exc:
        log.info("overlap check against the server skipped: %s", type(exc).__name__)
        return check, False
    return validate(proposed, now=datetime.now(tz), tz=tz, others=[*others, *on_server]), True


def _invalid_form(
    problems: list[Problem], template: str, *, warnings: tuple[Problem, ...] | None = None, **page: Any
) -> tuple[Any, int]:
    """422: the problems as JSON, or the form `template` again with them (and `page`) for a browser."""
    body: dict[str, Any] = {"error": "invalid", "errors": _problems_json(problems)}
    if warnings is not None:
        body["warnings"] = _problems_json(warnings)
        page["warnings"] = warnings
    if _wants_json():
        return jsonify(body), 422
    return render_template(template, errors=problems, **page), 422


def _invalid(field: str, code: str, message: str) -> tuple[Any, int]:
    """A 422 JSON answer naming one problem."""
    return jsonify({"error": "invalid", "errors": [{"field": field, "code": code, "message": message}]}), 422


def _send_now(item: OutboxItem, client: Any) -> OutboxItem:
    outbox, worker = outbox_for(current_app)
    worker.remember(item.id, client)
    sent = outbox.send(item.id, client)
    if sent is not None and sent.label == "pending":
        worker.wake()
    return sent or item


@bp.post("/time")
def record_time() -> Any:
    ctx = _writer(TIME_TYPES)
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
    errors = [*problems, *check.errors]
    if errors:
        return _invalid_form(
            errors, "timelog/new.html", warnings=check.warnings, form=data, **_form_context(ctx)
        )
    user = performer_ref(ctx.user) or str(proposed.performer)
    try:
        item = time_item(
            outbox,
            entry_id,
            check,
            proposed,
            fhir_base=ctx.fhir_base,
            patient_id=ctx.patient_id,
            user=user,
            mode=ctx.mode,
        )
    except WriteError as exc:
        return _invalid("", "write", str(exc))
    item = _send_now(item, client)
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
    """This patient's time entries for a month (from the FHIR server), each with a link to correct it."""
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
        facts = read_facts([*encounters, *tasks], ctx.patient_id, tz_name)
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
        writable=not _missing_scopes(ctx, TIME_TYPES),
    )


@bp.get("/time/new")
def new_time() -> Any:
    ctx = sessions.require_context()
    return render_template("timelog/new.html", errors=(), warnings=(), form={}, **_form_context(ctx))


@bp.get("/time/<entry>/correct")
def correct_form(entry: str) -> Any:
    ctx = sessions.require_context()
    return render_template("timelog/correct.html", entry=entry, errors=(), form={}, **_form_context(ctx))


@bp.post("/time/<entry>/correct")
def correct_time(entry: str) -> Any:
    """Mark a saved entry (Encounter id) entered-in-error with a reason, optionally with a replacement."""
    ctx = _writer(TIME_TYPES)
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
        return _invalid_form(errors, "timelog/correct.html", entry=entry, form=data, **_form_context(ctx))
    user = performer_ref(ctx.user) or performer_ref(_text(data, "performer")) or ""
    if not user:
        return _invalid("performer", "performer-missing", "Say who is making the correction.")
    pack = pack_info(check.month if check else None)
    correction_id = _text(data, "id") if valid_entry_id(_text(data, "id")) else new_entry_id()
    outbox, _ = outbox_for(current_app)
    taken = outbox.get(correction_id)
    if taken is not None and not _same_launch(taken, ctx):
        correction_id = new_entry_id()
    item = outbox.add(
        correction_id,
        "correction",
        fhir_base=ctx.fhir_base,
        patient_id=ctx.patient_id,
        payload={
            "target_encounter_id": entry,
            "reason": reason,
            "user": user,
            "recorded": now_utc().isoformat(),
            "pack_id": pack.id,
            "pack_version": pack.version,
            "replacement": replacement_json,
        },
        summary={"corrects": entry, "replacement": bool(replacement_json)},
        mode=ctx.mode,
        user=user,
    )
    item = _send_now(item, _write_client())
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


def _recent(items: list[OutboxItem]) -> list[OutboxItem]:
    import time as _time

    day_ago = _time.time() - 86400
    return [i for i in items if i.label != "saved" or (i.saved_at or 0) > day_ago]


def _item_json(item: OutboxItem) -> dict[str, Any]:
    return {
        "id": item.id,
        "kind": item.kind,
        "state": item.label,
        "attempts": item.attempts,
        "error": item.last_error or None,
        "summary": item.summary,
        "resources": item.result,
    }


# --------------------------------------------------------------------------- views: consent


@bp.get("/consent/new")
def new_consent() -> Any:
    ctx = sessions.require_context()
    missing = _missing_scopes(ctx, CONSENT_TYPES)
    form: dict[str, Any] = {"consent_id": new_entry_id(), "date": datetime.now(_practice_tz()[1]).date()}
    try:
        patient = sessions.fhir_client().read("Patient", ctx.patient_id)
        gps = patient.get("generalPractitioner") or []
        if gps and isinstance(gps[0], dict):
            form["billing_practitioner"] = performer_ref(str(gps[0].get("reference", ""))) or ""
    except Exception as exc:  # the form works without the prefill
        log.info("consent form prefill skipped: %s", type(exc).__name__)
    return render_template(
        "timelog/consent.html", errors=(), form=form, missing=missing, user=performer_ref(ctx.user)
    ), 403 if missing else 200


@bp.post("/consent")
def record_consent() -> Any:
    ctx = _writer(CONSENT_TYPES)
    _, tz = _practice_tz()
    data = _data()
    disclosures = data.get("disclosures") if request.is_json else request.form.getlist("disclosures")
    form = ConsentForm(
        decision=_text(data, "decision"),
        day=_text(data, "date"),
        method=_text(data, "method"),
        disclosures=tuple(disclosures or ()) if isinstance(disclosures, (list, tuple)) else (),
        obtained_by=performer_ref(ctx.user) or performer_ref(_text(data, "obtained_by")),
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
    obtained_at = datetime.combine(result.day, time(12, 0), tzinfo=tz)
    if result.day == datetime.now(tz).date():
        obtained_at = min(obtained_at, datetime.now(tz).replace(microsecond=0))
    draft = ConsentDraft(
        consent_id=consent_id,
        patient_id=ctx.patient_id,
        decision=form.decision,
        obtained_at=obtained_at,
        obtained_by=form.obtained_by,
        billing_practitioner=form.billing_practitioner,
        method=form.method,
        disclosures=form.disclosures,
        stop_date=result.day if form.decision == "stopped" else None,
    )
    pack = pack_info(Month.of(result.day))
    user = performer_ref(ctx.user) or form.obtained_by
    try:
        bundle = consent_transaction(
            draft, user=user, recorded=now_utc(), pack_id=pack.id, pack_version=pack.version
        )
    except WriteError as exc:
        return _invalid("", "write", str(exc))
    payload: dict[str, Any] = {"bundle": bundle}
    if form.decision == "stopped":  # stops the consent on file (kept whole); else records a new inactive one
        payload = {
            "fallback_bundle": bundle,
            "stop_date": result.day.isoformat(),
            "user": user,
            "billing_practitioner": form.billing_practitioner,
            "recorded": now_utc().isoformat(),
            "pack_id": pack.id,
            "pack_version": pack.version,
        }
    item = outbox.add(
        consent_id,
        "consent-stop" if form.decision == "stopped" else "consent",
        fhir_base=ctx.fhir_base,
        patient_id=ctx.patient_id,
        payload=payload,
        mode=ctx.mode,
        user=user,
        summary={"decision": form.decision, "date": result.day.isoformat(), "method": form.method},
    )
    item = _send_now(item, _write_client())
    return _answer(item, ())


# --------------------------------------------------------------------------- template helpers


def _form_context(ctx: LaunchContext) -> dict[str, Any]:
    writable = not _missing_scopes(ctx, TIME_TYPES)
    return {
        "programs": PROGRAM_LABELS,
        "activities": ACTIVITIES,
        "writable": writable,
        "user": performer_ref(ctx.user),
        "new_id": new_entry_id(),
        "today": datetime.now(_practice_tz()[1]).date().isoformat(),
        # One timer per server + patient + user (kept in the browser's localStorage under this opaque key).
        "timer_key": hashlib.sha256(f"{ctx.fhir_base}|{ctx.patient_id}|{ctx.user}".encode()).hexdigest()[:24],
    }


def _template_form() -> dict[str, Any]:
    """What `timelog/_capture.html` needs (programs, activities, whether writing is allowed, a fresh id)."""
    ctx = sessions.current_context()
    if ctx is None:
        return {
            "programs": PROGRAM_LABELS,
            "activities": ACTIVITIES,
            "writable": False,
            "user": None,
            "new_id": new_entry_id(),
            "today": date.today().isoformat(),
            "timer_key": "none",
        }
    return _form_context(ctx)


def _template_items() -> list[dict[str, Any]]:
    """The launch patient's outbox items not yet saved (pending or rejected), for the panel."""
    ctx = sessions.current_context()
    if ctx is None or EXT_KEY not in current_app.extensions:
        return []
    outbox, worker = outbox_for(current_app)
    items = outbox.for_patient(ctx.fhir_base, ctx.patient_id, ("pending", "sending", "rejected"))
    _resume(worker, [i for i in items if i.label == "pending"])
    return [_item_json(i) for i in items]


def _resume(worker: OutboxWorker, pending: list[OutboxItem]) -> None:
    """Hand this session's client to the worker for the patient's pending items (a SMART server needs the
    session's token; after an app restart this is how those items resume) and wake it."""
    if not pending:
        return
    client = sessions.fhir_client()
    for item in pending:
        worker.remember(item.id, client)
    worker.wake()
