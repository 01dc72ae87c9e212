"""Time entries as the capture face builds them (views and CSV import): drafts, outbox items."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from fhir_mapping.reader import read_facts
from fhir_mapping.write_note import time_note
from fhir_mapping.write_provenance import now_utc
from fhir_mapping.write_time import (
    TimeEntryDraft,
    draft_to_json,
    entry_transaction,
)
from rules.entry_validation import (
    EntryCheck,
    ProposedEntry,
)
from rules.month import Month
from rules.packs import DEFAULT_PACK, PolicyPack, UnknownPolicy, load_pack, pack_for_month
from rules.records import TimeEntry
from smart_app.capture.delivery import capture
from smart_app.capture.ledger import Ledger
from smart_app.capture.outbox import Outbox, OutboxItem

log = logging.getLogger(__name__)

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
    ledger: Ledger,
    outbox: Outbox,
    entry_id: str,
    check: EntryCheck,
    proposed: ProposedEntry,
    *,
    fhir_base: str,
    patient_id: str,
    user: str,
    mode: str,
    profile: str = "structured",
    verification: str | None = None,
) -> OutboxItem:
    """Append a validated entry to the ledger and queue its delivery in the outbox (both shapes, the
    structured transaction and the clinical note, are built and checked before storing)."""
    assert check.ok
    draft = entry_draft(entry_id, patient_id, check, proposed)
    pack = pack_info(check.month)
    recorded = now_utc()
    bundle = entry_transaction(
        draft,
        user=user,
        recorded=recorded,
        pack_id=pack.id,
        pack_version=pack.version,
        verification=verification,
    )
    note = time_note(draft, recorded)
    summary = {
        "start": draft.start.isoformat(),
        "end": draft.period_end.isoformat(),
        "minutes": draft.minutes,
        "program": draft.program,
        "performer": draft.performer,
        "late": draft.late,
        "activity": draft.activity,
    }
    facts = {"entry": draft_to_json(draft), "pack_id": pack.id, "pack_version": pack.version}
    _, item = capture(
        ledger,
        outbox,
        entry_id,
        "time",
        fhir_base=fhir_base,
        patient_id=patient_id,
        user=user,
        facts=facts,
        payload={"bundle": bundle, "note": note},
        summary=summary,
        mode=mode,
        profile=profile,
    )
    return item


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


