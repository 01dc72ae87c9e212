"""The capture blueprint, its `init_app` (outbox and worker), shared view helpers, template globals."""

from __future__ import annotations

import hashlib
import logging
import time as _time
from datetime import date, datetime, tzinfo
from typing import Any

from flask import Blueprint, Flask, current_app, jsonify, render_template, request

from fhir_mapping.write_time import (
    new_entry_id,
)
from rules.entry_validation import (
    ACTIVITIES,
    PROGRAM_LABELS,
    EntryCheck,
    Problem,
    ProposedEntry,
    validate,
)
from rules.records import TimeEntry
from smart_app.capture.delivery import Delivery, Where
from smart_app.capture.entries import performer_ref, server_entries
from smart_app.capture.forms import _practice_tz
from smart_app.capture.ledger import Ledger
from smart_app.capture.outbox import Client, Outbox, OutboxItem, OutboxWorker
from smart_app.context import LaunchContext
from smart_app.fhir.capabilities import PROFILES_EXT, WriteProfiles
from smart_app.fhir.patient_scope import PatientScopedClient
from smart_app.readiness.captured import LEDGER_EXT
from smart_app.storage import database_for
from smart_app.web import lifecycle, sessions

bp = Blueprint("timelog", __name__)
log = logging.getLogger(__name__)

TIME_TYPES = ("Encounter", "Task", "Provenance")
CONSENT_TYPES = ("Consent", "Provenance")
EXT_KEY = "ccm_ready_outbox"
DELIVERY_KEY = "ccm_ready_delivery"



# --------------------------------------------------------------------------- setup


def outbox_for(app: Flask) -> tuple[Outbox, OutboxWorker]:
    return app.extensions[EXT_KEY]


def delivery_for(app: Flask) -> Delivery:
    return app.extensions[DELIVERY_KEY]


def write_profiles(ctx: LaunchContext, client: Any) -> WriteProfiles:
    """This launch's write profiles (server capability, scopes, refusals learned so far)."""
    return delivery_for(current_app).profiles(ctx.fhir_base, client, ctx.can_write)


def _client_for_app(app: Flask) -> Any:
    """Clients the worker may build itself: open servers only (SMART servers need a session's token)."""

    def client_for(item: OutboxItem) -> Client | None:
        if item.mode != "open":
            return None

        ctx = LaunchContext(mode="open", fhir_base=item.fhir_base, patient_id=item.patient_id, user=item.user)
        with app.app_context():  # the worker thread has none; server_client reads the app's config
            inner = sessions.server_client(ctx)
        return PatientScopedClient(inner, item.patient_id)

    return client_for


def init_app(app: Flask) -> None:
    """Set up capture on `app` (once, from create_app): the ledger, delivery, the outbox and its worker.

    The worker starts here unless OUTBOX_WORKER is off; with OUTBOX_WORKER_LOCK (a multi-process server)
    only the process holding the instance's lock runs it, the others assist (see web/serve.py).
    """
    if EXT_KEY in app.extensions:  # once per app, like the blueprint's record_once it replaces
        return
    ledger = Ledger.for_config(app.config)  # LEDGER_DB, else DATABASE_URL, else DATA_DIR/ledger.sqlite3
    delivery = Delivery(ledger)
    outbox = Outbox(
        database_for(app.config, "outbox", app.config.get("OUTBOX_DB")),
        backoff=float(app.config.get("OUTBOX_BACKOFF", 2.0)),
        lease=float(app.config.get("OUTBOX_LEASE_SECONDS", 120.0)),
        sender=delivery.route,
    )
    app.extensions[LEDGER_EXT] = ledger
    app.extensions[DELIVERY_KEY] = delivery
    app.extensions[PROFILES_EXT] = lambda ctx, client: delivery.profiles(ctx.fhir_base, client, ctx.can_write)
    worker = OutboxWorker(
        outbox, _client_for_app(app), interval=float(app.config.get("OUTBOX_INTERVAL", 5.0))
    )
    app.extensions[EXT_KEY] = (outbox, worker)
    outbox.purge_saved(float(app.config.get("OUTBOX_KEEP_SAVED_DAYS", 7)) * 86400)
    app.jinja_env.globals["timelog_items"] = _template_items
    app.jinja_env.globals["timelog_form"] = _template_form
    app.jinja_env.globals["write_profile_info"] = _template_write_profile
    if not app.config.get("OUTBOX_WORKER", True):
        return
    lock = app.config.get("OUTBOX_WORKER_LOCK")
    if lock:  # a multi-process server: one process of this instance runs the worker, the others assist
        worker.assist = True
        give_up = lifecycle.once_per_instance("outbox worker", lock, worker.start)
        lifecycle.on_stop(app, give_up)
    else:
        worker.start()  # resumes whatever was pending when the app stopped
    lifecycle.on_stop(app, worker.stop)  # runs first: finish the send in flight, hand back leases


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


WHERE_MESSAGES = {
    "note": "Saved on the FHIR server as a clinical note.",
    "none": "Kept in the app's ledger: this EHR accepts no writes from the app (print the monthly summary).",
}
STATE_MESSAGES = {
    "saved": "Saved on the FHIR server.",
    "pending": "Pending: kept safely on this server and retried until the FHIR server accepts it.",
    "rejected": "Not saved: the FHIR server refused it (see the reason). It is kept here.",
}


def _message(item: OutboxItem, where: Where) -> str:
    """What the user is told: the state, where the entry lives, and why it moved if the EHR refused it."""
    text = STATE_MESSAGES[item.label]
    if item.label == "saved":
        text = WHERE_MESSAGES.get(where.profile, text)
    if where.moved:
        text += f" ({where.moved[:300]}; the entry was kept and written the way this EHR accepts.)"
    return text


def _answer(item: OutboxItem, warnings: tuple[Problem, ...]) -> tuple[Any, int]:
    state = item.label
    status = {"saved": 201, "pending": 202}.get(state, 422)
    where = delivery_for(current_app).where(item)
    body = {
        "id": item.id,
        "kind": item.kind,
        "state": state,
        "message": _message(item, where),
        "where": where.to_json(),
        "error": item.last_error or None,
        "resources": item.result,
        "warnings": _problems_json(warnings),
        "late": bool(item.summary.get("late")),
    }
    if _wants_json():
        return jsonify(body), status
    return render_template(
        "timelog/result.html",
        title=_message(item, where).split(" (", 1)[0],
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


def _recent(items: list[OutboxItem]) -> list[OutboxItem]:
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
        "where": delivery_for(current_app).where(item).to_json(),
    }


# --------------------------------------------------------------------------- template helpers


def _form_context(ctx: LaunchContext) -> dict[str, Any]:
    writable = True  # every launch may record: what the EHR does not accept stays in the ledger
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


def _template_write_profile() -> dict[str, Any] | None:
    """What `panel/_write_profile.html` shows: where this launch's entries live (None without a session)."""
    ctx = sessions.current_context()
    if ctx is None or DELIVERY_KEY not in current_app.extensions:
        return None
    try:
        profiles = write_profiles(ctx, sessions.fhir_client())
    except Exception as exc:  # the panel renders without it
        log.info("write profile unavailable: %s", type(exc).__name__)
        return None
    return profiles.to_json()
