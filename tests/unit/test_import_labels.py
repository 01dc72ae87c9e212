"""Spreadsheet import takes what practices have: activity labels and synonyms in any case, `other` with the
original words kept, refusals that list the accepted values, patients by MRN and performers by NPI."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from smart_app.capture.import_csv import (
    Row,
    RowError,
    check_rows,
    match_activity,
    match_program,
    parse_rows,
    resolve_identifiers,
)
from smart_app.fhir.client import BatchResult

TZ = ZoneInfo("America/Chicago")
NOW = datetime(2026, 10, 20, 12, 0, tzinfo=TZ)
HEADER = "patient,performer,start,minutes,program,activity,note"
NOTE = "BP 150s (HTN); raised lisinopril to 20 mg; recheck readings Friday"


def test_activity_labels_codes_and_synonyms_any_case() -> None:
    assert match_activity("medication review") == ("medication-reconciliation", None)
    assert match_activity("Medication Review / Reconciliation") == ("medication-reconciliation", None)
    assert match_activity("PATIENT-CALL") == ("patient-call", None)
    assert match_activity("Phone call") == ("patient-call", None)
    assert match_activity("") == ("care-coordination", None)
    assert match_activity("Fax to pharmacy") == ("other", "Fax to pharmacy")
    assert match_program("CCM") == "ccm" and match_program("Chronic Care Management") == "ccm"


def test_unknown_activity_becomes_other_with_the_text_in_the_note_and_a_warning() -> None:
    text = f"{HEADER}\np1,Practitioner/rn,2026-10-05T14:00,25,CCM,Fax to pharmacy,\"{NOTE}\"\n"
    rows = parse_rows(text, TZ)
    row = rows[0]
    assert isinstance(row, Row)
    assert row.proposed.activity == "other" and row.proposed.note.startswith("Activity: Fax to pharmacy.")
    good, errors, warnings = check_rows(rows, now=NOW, tz=TZ)
    assert len(good) == 1 and not errors
    assert any("imported as 'other'" in w.message and "patient-call" in w.message for w in warnings)


def test_refusals_list_the_accepted_values() -> None:
    text = (
        f"{HEADER}\np1,Dr Smith,2026-10-05T14:00,25,ccm,call,\"{NOTE}\"\n"
        f"p2,Practitioner/x,2026-10-05T15:00,25,xyz,call,\"{NOTE}\"\n"
    )
    _good, errors, _ = check_rows(parse_rows(text, TZ), now=NOW, tz=TZ)
    by_line = {e.line: e.message for e in errors}
    assert "Practitioner/<id>" in by_line[2] and "NPI" in by_line[2]
    assert "ccm" in by_line[3] and "rpm" in by_line[3]


class Directory:
    """Answers identifier searches in a batch, like FhirClient.batch."""

    def __init__(self, table: dict[str, list[str]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def batch(self, urls: list[str], **_: Any) -> list[BatchResult]:
        self.calls.append(urls)
        out = []
        for url in urls:
            key = url.split("identifier=", 1)[1].split("&", 1)[0]
            out.append(BatchResult(200, [{"id": i} for i in self.table.get(key, [])], request=url))
        return out


def test_patients_by_mrn_and_performers_by_npi_are_resolved_in_one_batch() -> None:
    text = (
        f"{HEADER}\n"
        f"MRN:000123,1234567893,2026-10-05T14:00,25,ccm,call,\"{NOTE}\"\n"
        f"MRN:999,NPI:1111111111,2026-10-05T15:00,25,ccm,call,\"{NOTE}\"\n"
        f"MRN:dup,Practitioner/rn,2026-10-05T16:00,25,ccm,call,\"{NOTE}\"\n"
    )
    server = Directory({
        "000123": ["pat-1"], "http://hl7.org/fhir/sid/us-npi|1234567893": ["dr-9"], "dup": ["a", "b"],
    })
    rows = resolve_identifiers(server, parse_rows(text, TZ))
    assert len(server.calls) == 1
    first = rows[0]
    assert isinstance(first, Row) and first.patient_id == "pat-1"
    assert first.proposed.performer == "Practitioner/dr-9"
    assert isinstance(rows[1], RowError) and "no patient with MRN 999" in rows[1].message
    assert "no practitioner with NPI 1111111111" in rows[1].message
    assert isinstance(rows[2], RowError) and "MRN dup matches 2 patients" in rows[2].message
