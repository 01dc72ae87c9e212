"""`ccm-ready import-time FILE.csv --fhir-base URL`: load logged time from a spreadsheet, idempotently.

Columns: patient, performer, start, minutes, program, activity, note, and optionally id (a UUID). Every row is
checked first (the same rules as the capture form) and each bad row is reported by line number; the valid
rows are then written with the same write-back as the app (Encounter + Task + Provenance in one transaction,
conditional on our identifier), 50 rows per transaction Bundle after one batch of look-ups per 50 patients.
A row without an id gets one derived from its content, so running the same file again (or again after a
failure part-way) writes nothing twice. The last line printed is `imported=N duplicates=M errors=K`.

Why over 400 lines: one command with three jobs done in order (read and match the spreadsheet's
labels, resolve patients and performers on the server in batches, write in chunked transactions);
their shared row model keeps them together. A split along those three lines is the next step.
"""

from __future__ import annotations

import argparse
import csv
import io
import sys
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, tzinfo
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fhir_mapping.reader import read_facts
from fhir_mapping.write_provenance import WriteError, now_utc
from fhir_mapping.write_time import (
    TIME_ENTRY_ID,
    TimeEntryDraft,
    draft_to_json,
    entry_requests,
    transaction,
    valid_entry_id,
)
from rules.entry_validation import ACTIVITIES, PROGRAM_LABELS, ProposedEntry, validate
from rules.month import BadTimezone, Month, zone
from rules.packs import DEFAULT_PACK, PolicyPack, UnknownPolicy, load_pack, pack_for_month
from rules.records import TimeEntry
from smart_app.capture.ledger import Ledger
from smart_app.config import defaults

DESCRIPTION = __doc__
EPILOG = """example:
  ccm-ready import-time october.csv --fhir-base http://127.0.0.1:8090/fhir --timezone America/Chicago

CSV header (any order; program defaults to ccm, activity to care-coordination):
  patient,performer,start,minutes,program,activity,note,id
  p1,Practitioner/rn-1,2026-10-05T14:00,25,ccm,patient-call,"BP 150s (HTN); raised lisinopril; recheck Fri",
  MRN:000123,1234567893,2026-10-06T09:30,20,CCM,Medication review,"Reconciled meds after discharge; ..."

patient: a FHIR id (123, Patient/123) or MRN:<value>; performer: Practitioner/<id>, PractitionerRole/<id>
or an NPI (10 digits, or NPI:<value>); identifiers are looked up on the FHIR server. activity: a code or its
label, any case, or a common synonym ("medication review", "phone call", ...); anything else is imported as
"other" with the original text kept at the start of the note, and a warning.
"""
REQUIRED = ("patient", "performer", "start", "minutes", "note")
OPTIONAL = ("program", "activity", "id")
MAX_ROWS = 20000
_ROW_NS = uuid.UUID("a3c1f6de-51b9-4a8e-9a39-2f0e3f1d7b10")


@dataclass(frozen=True, slots=True)
class Row:
    """A parsed CSV row (not yet checked against the clock and other entries)."""

    line: int
    entry_id: str
    patient_id: str
    proposed: ProposedEntry


@dataclass(frozen=True, slots=True)
class RowError:
    line: int
    message: str


# Common ways spreadsheets name an activity -> our activity code (matched case-insensitively).
ACTIVITY_SYNONYMS: dict[str, str] = {
    "call": "patient-call", "phone call": "patient-call", "telephone call": "patient-call",
    "phone": "patient-call", "patient call": "patient-call", "caregiver call": "patient-call",
    "coordination": "care-coordination", "care coordination": "care-coordination",
    "referral": "care-coordination", "provider coordination": "care-coordination",
    "medication review": "medication-reconciliation", "med review": "medication-reconciliation",
    "med rec": "medication-reconciliation", "medication reconciliation": "medication-reconciliation",
    "medications": "medication-reconciliation", "care plan": "care-plan",
    "care plan review": "care-plan", "care plan update": "care-plan", "careplan": "care-plan",
    "transition": "transition-follow-up", "post discharge": "transition-follow-up",
    "discharge follow up": "transition-follow-up", "transition of care": "transition-follow-up",
    "teaching": "education", "patient education": "education", "self management education": "education",
    "lab review": "data-review", "results review": "data-review", "data review": "data-review",
    "monitoring review": "data-review", "rpm review": "data-review",
}
NPI_SYSTEM = "http://hl7.org/fhir/sid/us-npi"
# A spreadsheet has no list to choose from: refusals say what is accepted.
IMPORT_WORDING: dict[str, str] = {
    "performer-missing": "performer: give Practitioner/<id>, PractitionerRole/<id> or a 10-digit NPI.",
    "activity-unknown": f"activity: use one of {', '.join(ACTIVITIES)} (or its label).",
    "program-unknown": f"program: use one of {', '.join(PROGRAM_LABELS)} (any case).",
}


def _words(text: str) -> str:
    return " ".join("".join(ch if ch.isalnum() else " " for ch in text.lower()).split())


def match_activity(text: str) -> tuple[str, str | None]:
    """(activity code, original text when it matched nothing and became "other")."""
    raw = text.strip()
    if not raw:
        return "care-coordination", None
    words = _words(raw)
    by_code = {_words(code): code for code in ACTIVITIES}
    by_label = {_words(label): code for code, label in ACTIVITIES.items()}
    synonyms = {_words(k): v for k, v in ACTIVITY_SYNONYMS.items()}
    for table in (by_code, by_label, synonyms):
        if words in table:
            return table[words], None
    return "other", raw


def match_program(text: str) -> str:
    """A program code from a code or its label, any case ("CCM", "Chronic care management")."""
    words = _words(text or "ccm")
    for code, label in PROGRAM_LABELS.items():
        long_name = label.partition("(")[2].rstrip(")")  # "CCM (chronic care management)"
        if words in (_words(code), _words(label), _words(long_name)):
            return code
    return words.replace(" ", "-")


class ImportFileError(ValueError):
    """The file as a whole cannot be read (no header, missing columns, not text)."""


def _patient_id(value: str) -> str | None:
    value = value.strip()
    if value.lower().startswith("mrn:") and value[4:].strip():
        return "mrn:" + value[4:].strip()  # resolved on the server (resolve_identifiers)
    if value.startswith("Patient/"):
        value = value[len("Patient/") :]
    if not value or len(value) > 64 or not all(ch.isalnum() or ch in "-." for ch in value):
        return None
    return value


def _performer(value: str) -> str:
    """Practitioner/..., PractitionerRole/..., or "npi:<digits>" for an NPI (resolved on the server)."""
    value = value.strip()
    digits = value[4:].strip() if value.lower().startswith("npi:") else value
    if digits.isdigit() and len(digits) == 10:
        return f"npi:{digits}"
    return value


def _moment(value: str, tz: tzinfo) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if not 1900 <= moment.year <= 2999:  # unreadable as a care date (and 9999-12-31 would overflow later)
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=tz)


def derived_id(patient: str, cells: dict[str, str]) -> str:
    """A stable entry id for a row without one: the same row always gets the same id."""
    key = "|".join(
        [
            patient,
            *(
                cells.get(k, "").strip()
                for k in ("performer", "start", "minutes", "program", "activity", "note")
            ),
        ]
    )
    return str(uuid.uuid5(_ROW_NS, key))


def parse_rows(text: str, tz: tzinfo) -> list[Row | RowError]:
    """Every data row of the CSV as a Row or a RowError (line numbers count the header as line 1).

    Raises ImportFileError only for a file-level problem (no header, missing required columns, too long).
    """
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff"), newline=""))
    try:
        header = next(reader)
    except StopIteration:
        raise ImportFileError(
            f"the file is empty; the first line must be the header ({','.join(REQUIRED + OPTIONAL)})"
        ) from None
    except csv.Error as exc:
        raise ImportFileError(f"line 1: not readable as CSV ({exc})") from None
    names = [h.strip().lower() for h in header]
    missing = [c for c in REQUIRED if c not in names]
    if missing:
        raise ImportFileError(
            f"line 1: the header lacks the column(s) {', '.join(missing)} "
            f"(expected {','.join(REQUIRED + OPTIONAL)})"
        )
    out: list[Row | RowError] = []
    line = 1
    while True:
        try:
            values = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            line = reader.line_num
            out.append(RowError(line, f"not readable as CSV ({exc})"))
            break
        line = reader.line_num
        if not any(v.strip() for v in values):
            continue
        if len(out) >= MAX_ROWS:
            raise ImportFileError(f"more than {MAX_ROWS} rows; split the file")
        if len(values) > len(names):
            out.append(
                RowError(
                    line,
                    f"{len(values)} cells but the header has {len(names)} columns "
                    "(quote notes that contain commas)",
                )
            )
            continue
        cells = {n: v for n, v in zip(names, values, strict=False)}
        out.append(_row(line, cells, tz))
    return out


def _row(line: int, cells: dict[str, str], tz: tzinfo) -> Row | RowError:
    problems: list[str] = []
    patient = _patient_id(cells.get("patient", ""))
    if patient is None:
        problems.append("patient: give the FHIR Patient id (123 or Patient/123) or the MRN as MRN:<value>")
    start = _moment(cells.get("start", ""), tz)
    if start is None:
        problems.append("start: use an ISO date and time, e.g. 2026-10-05T14:00 (or with an offset)")
    minutes: int | None = None
    try:
        minutes = int(cells.get("minutes", "").strip())
    except ValueError:
        problems.append("minutes: a whole number of minutes, 1 to 240")
    entry_id = cells.get("id", "").strip().lower()
    if entry_id and not valid_entry_id(entry_id):
        problems.append("id: must be a UUID (or leave it empty)")
    if problems:
        return RowError(line, "; ".join(problems))
    assert patient is not None
    activity, unmatched = match_activity(cells.get("activity") or "")
    note = cells.get("note", "")
    if unmatched:  # kept, not refused: the original words go to the note and a warning says so
        note = f"Activity: {unmatched}. {note}".strip()
    proposed = ProposedEntry(
        start=start,
        minutes=minutes,
        performer=_performer(cells.get("performer", "")),
        program=match_program(cells.get("program") or "ccm"),
        activity=activity,
        note=note,
    )
    return Row(line, entry_id or derived_id(patient, cells), patient, proposed)


def resolve_identifiers(client: Any, rows: list[Row | RowError]) -> list[Row | RowError]:
    """Patients given by MRN and performers given by NPI, looked up on the FHIR server (one batch)."""
    mrns = sorted({r.patient_id[4:] for r in rows if isinstance(r, Row) and r.patient_id.startswith("mrn:")})
    npis = sorted({
        str(r.proposed.performer)[4:] for r in rows
        if isinstance(r, Row) and str(r.proposed.performer or "").startswith("npi:")
    })
    if not mrns and not npis:
        return rows
    urls = [f"Patient?identifier={m}&_elements=id" for m in mrns]
    urls += [f"Practitioner?identifier={NPI_SYSTEM}|{n}&_elements=id" for n in npis]
    results = client.batch(urls)
    found: dict[str, list[str]] = {}
    for key, result in zip([*(f"mrn:{m}" for m in mrns), *(f"npi:{n}" for n in npis)], results, strict=False):
        found[key] = [str(r.get("id")) for r in (result.resources if result.ok else []) if r.get("id")]

    def one(key: str, what: str) -> tuple[str | None, str]:
        ids = found.get(key, [])
        if len(ids) == 1:
            return ids[0], ""
        if not ids:
            return None, f"no {what} with {key.split(':', 1)[0].upper()} {key.split(':', 1)[1]} on the server"
        return None, f"{key.split(':', 1)[0].upper()} {key.split(':', 1)[1]} matches {len(ids)} {what}s"

    out: list[Row | RowError] = []
    for row in rows:
        if isinstance(row, RowError):
            out.append(row)
            continue
        problems: list[str] = []
        patient, performer = row.patient_id, row.proposed.performer
        if patient.startswith("mrn:"):
            pid, why = one(patient, "patient")
            problems += [f"patient: {why}"] if pid is None else []
            patient = pid or patient
        if str(performer or "").startswith("npi:"):
            prid, why = one(str(performer), "practitioner")
            problems += [f"performer: {why}"] if prid is None else []
            performer = f"Practitioner/{prid}" if prid else performer
        if problems:
            out.append(RowError(row.line, "; ".join(problems)))
        else:
            out.append(replace(row, patient_id=patient, proposed=replace(row.proposed, performer=performer)))
    return out


def check_rows(
    rows: list[Row | RowError],
    *,
    now: datetime,
    tz: tzinfo,
    existing: dict[str, list[TimeEntry]] | None = None,
    known_ids: dict[str, str] | None = None,
) -> tuple[list[tuple[Row, TimeEntryDraft]], list[RowError], list[RowError]]:
    """Validate parsed rows against the clock, each other and the server's entries (`existing` per patient).

    `known_ids` maps entry ids already on the server to their Encounter ids (so a re-import does not overlap
    itself). Returns (valid rows with their drafts, errors, warnings).
    """
    existing = existing or {}
    known_ids = known_ids or {}
    good: list[tuple[Row, TimeEntryDraft]] = []
    errors = [r for r in rows if isinstance(r, RowError)]
    warnings: list[RowError] = []
    accepted: dict[str, list[TimeEntry]] = {}
    seen: set[str] = set()
    for row in rows:
        if isinstance(row, RowError):
            continue
        if row.entry_id in seen:  # the same row twice in one file: written once, counted as a duplicate
            good.append((row, _draft(row, None)))
            continue
        proposed = replace(row.proposed, replaces=known_ids.get(row.entry_id))
        others = [*existing.get(row.patient_id, []), *accepted.get(str(proposed.performer), [])]
        check = validate(proposed, now=now, tz=tz, others=others)
        if not check.ok:
            said = " ".join(IMPORT_WORDING.get(e.code, e.message) for e in check.errors)
            errors.append(RowError(row.line, said))
            continue
        warnings.extend(RowError(row.line, f"warning: {w.message}") for w in check.warnings)
        if row.proposed.activity == "other" and row.proposed.note.startswith("Activity: "):
            warnings.append(
                RowError(
                    row.line,
                    "warning: activity not recognised; imported as 'other' with the original text in the "
                    f"note (accepted: {', '.join(ACTIVITIES)})",
                )
            )
        draft = _draft(row, check)
        seen.add(row.entry_id)
        if row.entry_id in known_ids:  # already on the server, so already among `existing`
            good.append((row, draft))
            continue
        accepted.setdefault(draft.performer, []).append(
            TimeEntry(
                id=f"row/{row.line}",
                status="finished",
                program=draft.program,
                start=draft.start,
                end=draft.period_end,
                minutes=draft.minutes,
                performer=draft.performer,
            )
        )
        good.append((row, draft))
    errors.sort(key=lambda e: e.line)
    return good, errors, warnings


def _draft(row: Row, check: Any) -> TimeEntryDraft:
    p = row.proposed
    if check is None:  # a repeated row: the first occurrence was checked
        assert p.start is not None and p.minutes is not None
        return TimeEntryDraft(
            row.entry_id,
            row.patient_id,
            str(p.performer),
            p.start,
            p.minutes,
            p.program,
            p.activity,
            p.note.strip(),
        )
    return TimeEntryDraft(
        row.entry_id,
        row.patient_id,
        str(p.performer),
        check.start,
        check.minutes,
        p.program,
        p.activity,
        p.note.strip(),
        end=check.end,
        late=check.late,
    )


# ---------------------------------------------------------------------- server side

ROWS_PER_TRANSACTION = 50  # 150 conditional creates per transaction Bundle
SEARCHES_PER_BATCH = 50  # per-patient look-ups sent together in one batch Bundle
TIMEOUT = 120.0  # seconds per request: a batch of look-ups or a 150-entry transaction takes a while


def _lookups(rows: list[Row]) -> list[tuple[str, str]]:
    """(patient, relative search URL) for each patient: its Encounters around the file's dates."""
    by_patient: dict[str, list[datetime]] = {}
    for row in rows:
        if row.proposed.start is not None:
            by_patient.setdefault(row.patient_id, []).append(row.proposed.start)
    out = []
    for patient, starts in by_patient.items():
        low, high = min(starts) - timedelta(days=1), max(starts) + timedelta(days=2)
        query = urlencode(
            [("patient", f"Patient/{patient}"), ("date", f"ge{low.date()}"), ("date", f"le{high.date()}"),
             ("_count", "500")],
            safe="/",
        )
        out.append((patient, f"Encounter?{query}"))
    return out


def _encounters(client: Any, lookups: list[tuple[str, str]]) -> Iterator[tuple[str, list[dict[str, Any]]]]:
    """Each patient's Encounters, the look-ups sent as batch Bundles (one search each without batches)."""
    # lazy: CLI start-up
    from smart_app.fhir.client import FhirError, FhirUnauthorized, FhirUnavailable

    for start in range(0, len(lookups), SEARCHES_PER_BATCH):
        chunk = lookups[start : start + SEARCHES_PER_BATCH]
        try:
            results = client.batch([url for _, url in chunk])
        except (FhirUnauthorized, FhirUnavailable):
            raise
        except (FhirError, AttributeError):  # no batch support: the same searches one by one
            for patient, url in chunk:
                rtype, _, qs = url.partition("?")
                yield patient, client.search(rtype, parse_qsl(qs))
            continue
        for (patient, _), result in zip(chunk, results, strict=True):
            if not result.ok:
                raise result.error()
            yield patient, result.resources


def _server_state(
    client: Any, rows: list[Row], tz_name: str
) -> tuple[dict[str, list[TimeEntry]], dict[str, str]]:
    """Per patient: its time entries around the file's dates, and our entry ids already stored.

    One batch request per SEARCHES_PER_BATCH patients, not one search per patient.
    """
    existing: dict[str, list[TimeEntry]] = {}
    known: dict[str, str] = {}
    for patient, encounters in _encounters(client, _lookups(rows)):
        existing[patient] = list(read_facts(encounters, patient, tz_name).time_entries)
        for enc in encounters:
            for ident in enc.get("identifier") or []:
                if isinstance(ident, dict) and ident.get("system") == TIME_ENTRY_ID and ident.get("value"):
                    known[str(ident["value"])] = str(enc.get("id"))
    return existing, known


def _pack(draft: TimeEntryDraft) -> PolicyPack:
    try:
        return pack_for_month(Month.of(draft.start))
    except UnknownPolicy:
        return load_pack(DEFAULT_PACK)


def _entries(draft: TimeEntryDraft) -> list[dict[str, Any]]:
    pack = _pack(draft)
    return entry_requests(
        draft,
        user=draft.performer,
        recorded=now_utc(),
        pack_id=pack.id,
        pack_version=pack.version,
        verification="operator",  # named in the operator's file, not verified by a sign-in
    )


def _created(answer: dict[str, Any], index: int) -> bool:
    entries = answer.get("entry") if isinstance(answer, dict) else None
    entry = entries[index] if isinstance(entries, list) and index < len(entries) else {}
    status = (entry.get("response") or {}).get("status", "") if isinstance(entry, dict) else ""
    return str(status).startswith("201")


def _send(client: Any, chunk: list[tuple[Row, list[dict[str, Any]]]]) -> list[bool]:
    """Write a chunk of rows in ONE transaction; per row, whether its Encounter was created (not found)."""
    # lazy: CLI start-up
    from smart_app.capture.outbox import conditional_creates
    from smart_app.fhir.client import FhirError

    bundle = transaction([e for _, entries in chunk for e in entries])
    try:
        answer = client.transaction(bundle)
    except FhirError as exc:
        if exc.status not in (404, 405, 501):
            raise
        for _, entries in chunk:  # the server takes no transactions: conditional creates, row by row
            conditional_creates(client, transaction(entries))
        return [True] * len(chunk)
    return [_created(answer, 3 * i) for i in range(len(chunk))]


def write_rows(
    client: Any,
    good: list[tuple[Row, TimeEntryDraft]],
    known: dict[str, str],
    *,
    per_transaction: int = ROWS_PER_TRANSACTION,
    on_written: Callable[[TimeEntryDraft], None] | None = None,
) -> tuple[int, int, list[RowError]]:
    """Write the valid rows, `per_transaction` rows per transaction; returns (imported, duplicates, errors).

    Every create is conditional on our identifier, so a rerun after a failure (or a transaction the
    server applied but whose answer was lost) writes only what is missing, never a duplicate. A chunk the
    server rejects (4xx) is retried row by row, so one bad row does not fail its neighbours.
    `on_written(draft)` is called for every row now on the server (written now or found there).
    """
    # lazy: CLI start-up
    from smart_app.fhir.client import FhirError, FhirUnavailable

    imported = duplicates = 0
    failures: list[RowError] = []
    pending: list[tuple[Row, list[dict[str, Any]]]] = []
    queued: set[str] = set()
    draft_of = {draft.entry_id: draft for _row, draft in good}
    for row, draft in good:
        if draft.entry_id in known or draft.entry_id in queued:
            duplicates += 1
            continue
        try:
            pending.append((row, _entries(draft)))
        except WriteError as exc:
            failures.append(RowError(row.line, f"not written: {exc}"))
            continue
        queued.add(draft.entry_id)
    size = max(1, per_transaction)
    for start in range(0, len(pending), size):
        chunk = pending[start : start + size]
        try:
            created = _send(client, chunk)
        except FhirError as exc:
            if len(chunk) == 1 or isinstance(exc, FhirUnavailable):
                failures.extend(RowError(row.line, f"not written: {exc.message}") for row, _ in chunk)
                continue
            created = []
            for one in chunk:  # find the row the server refused; write the others
                try:
                    created += _send(client, [one])
                except FhirError as row_exc:
                    failures.append(RowError(one[0].line, f"not written: {row_exc.message}"))
                    created.append(None)  # type: ignore[arg-type]
        imported += sum(1 for c in created if c is True)
        duplicates += sum(1 for c in created if c is False)
        if on_written is not None:
            for (row, _entries_of_row), done in zip(chunk, created, strict=False):
                if done is not None:
                    on_written(draft_of[row.entry_id])
    failures.sort(key=lambda e: e.line)
    return imported, duplicates, failures


# ---------------------------------------------------------------------- CLI


def record_imported(ledger: Ledger, fhir_base: str, draft: TimeEntryDraft) -> None:
    """Append an imported entry to the ledger, with where it was written (once: a rerun adds nothing)."""
    if ledger.get(draft.entry_id) is not None:
        return
    pack = _pack(draft)
    facts = {"entry": draft_to_json(draft), "pack_id": pack.id, "pack_version": pack.version,
             "source": "import-time"}
    record = ledger.append(draft.entry_id, "time", fhir_base=fhir_base, patient_id=draft.patient_id,
                           user=draft.performer, facts=facts)
    written = [f"Encounter?identifier={TIME_ENTRY_ID}|{draft.entry_id}"]
    ledger.record_delivery(record, "structured", written, "imported from a spreadsheet")


def _ledger(args: argparse.Namespace) -> Ledger:
    """The app's ledger (--ledger, LEDGER_DB, DATABASE_URL or DATA_DIR/ledger.sqlite3), where imported entries
    are recorded too."""
    chosen = getattr(args, "ledger", None)  # callers that build their own Namespace may leave it out
    return Ledger.for_config(defaults(), chosen)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "file", metavar="FILE.csv", help="CSV with patient,performer,start,minutes,program,activity,note[,id]"
    )
    parser.add_argument("--fhir-base", required=True, help="FHIR R4 base URL to write to")
    parser.add_argument(
        "--token-file", help="file holding a bearer access token (never put tokens on the command line)"
    )
    parser.add_argument(
        "--timezone", default="UTC", help="IANA zone for start times without an offset (default UTC)"
    )
    parser.add_argument(
        "--ledger", metavar="FILE",
        help="the app's ledger to record imported entries in (default: DATA_DIR/ledger.sqlite3)",
    )


def run(args: argparse.Namespace) -> int:
    # lazy: CLI start-up
    from smart_app.fhir.client import FhirClient, FhirError

    def summary(imported: int, duplicates: int, errors: int) -> None:
        sys.stderr.flush()
        print(f"imported={imported} duplicates={duplicates} errors={errors}", flush=True)

    try:
        tz = zone(args.timezone)
    except BadTimezone as exc:
        print(f"error: {exc}", file=sys.stderr)
        summary(0, 0, 1)
        return 2
    try:
        text = Path(args.file).read_text(encoding="utf-8")
        rows = parse_rows(text, tz)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"error: cannot read {args.file}: {type(exc).__name__}: {exc}", file=sys.stderr)
        summary(0, 0, 1)
        return 2
    except ImportFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        summary(0, 0, 1)
        return 2
    token = None
    if args.token_file:
        try:
            token = Path(args.token_file).read_text(encoding="utf-8").strip() or None
        except OSError as exc:
            print(f"error: cannot read the token file: {exc.strerror}", file=sys.stderr)
            summary(0, 0, 1)
            return 2
    try:
        client = FhirClient(
            args.fhir_base, token_provider=(lambda: token) if token else None, timeout=TIMEOUT
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        summary(0, 0, 1)
        return 2
    try:
        rows = resolve_identifiers(client, rows)
    except FhirError as exc:
        print(f"error: cannot look up MRNs / NPIs on the FHIR server: {exc.message}", file=sys.stderr)
        summary(0, 0, len(rows))
        return 1
    parsed = [r for r in rows if isinstance(r, Row)]
    try:
        existing, known = _server_state(client, parsed, args.timezone)
    except FhirError as exc:
        print(f"error: cannot read existing entries from the FHIR server: {exc.message}", file=sys.stderr)
        summary(0, 0, len(rows))
        return 1
    good, errors, warnings = check_rows(rows, now=datetime.now(tz), tz=tz, existing=existing, known_ids=known)
    for problem in sorted([*errors, *warnings], key=lambda e: e.line):
        print(f"line {problem.line}: {problem.message}", file=sys.stderr)
    ledger = _ledger(args)
    try:
        imported, duplicates, failures = write_rows(
            client, good, known, on_written=lambda d: record_imported(ledger, args.fhir_base, d)
        )
    finally:
        ledger.close()
    for problem in failures:
        print(f"line {problem.line}: {problem.message}", file=sys.stderr)
    total_errors = len(errors) + len(failures)
    summary(imported, duplicates, total_errors)
    return 1 if total_errors else 0
