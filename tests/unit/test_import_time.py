"""The CSV time import: parsing with line numbers, validation, idempotent writing; parser properties."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rules.records import TimeEntry
from smart_app.capture.import_csv import (
    ImportFileError,
    Row,
    RowError,
    check_rows,
    derived_id,
    parse_rows,
    write_rows,
)
from smart_app.fhir.client import FhirError
from tests.unit.test_outbox import FakeServer

TZ = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 20, 12, 0, tzinfo=TZ)
NOTE = "Reviewed BP log (hypertension); raised lisinopril to 20 mg; recheck readings Friday."
HEADER = "patient,performer,start,minutes,program,activity,note"


def csv_text(*rows: str, header: str = HEADER) -> str:
    return "\n".join([header, *rows]) + "\n"


def test_rows_parse_with_quoted_notes_defaults_and_naive_times_in_the_zone() -> None:
    text = csv_text(
        f'p1,Practitioner/rn1,2026-11-02T10:00,25,ccm,patient-call,"{NOTE}"',
        f'Patient/p2,Practitioner/rn1,2026-11-02T10:00:00-06:00,10,,,"{NOTE}"',
    )
    first, second = parse_rows(text, TZ)
    assert isinstance(first, Row) and isinstance(second, Row)
    assert first.line == 2 and first.patient_id == "p1"
    assert first.proposed.start == datetime(2026, 11, 2, 10, 0, tzinfo=TZ)
    assert first.proposed.note == NOTE
    assert second.patient_id == "p2"
    assert (second.proposed.program, second.proposed.activity) == ("ccm", "care-coordination")
    assert (
        second.proposed.start is not None and second.proposed.start.utcoffset().total_seconds() == -6 * 3600
    )


def test_bad_rows_are_reported_by_line_number() -> None:
    text = csv_text(
        "p1,Practitioner/rn1,2026-11-02T10:00,25,ccm,patient-call,BP high, raised dose, recheck",
        "",
        "p1,Practitioner/rn1,yesterday,ten,ccm,patient-call,x",
        "??,Practitioner/rn1,2026-11-02T11:00,5,ccm,patient-call,x",
    )
    rows = parse_rows(text, TZ)
    assert [type(r) for r in rows] == [RowError, RowError, RowError]
    assert [r.line for r in rows] == [2, 4, 5]
    assert "quote notes" in rows[0].message  # type: ignore[union-attr]
    assert "start" in rows[1].message and "minutes" in rows[1].message  # type: ignore[union-attr]
    assert "patient" in rows[2].message  # type: ignore[union-attr]


def test_file_level_problems() -> None:
    with pytest.raises(ImportFileError, match="empty"):
        parse_rows("", TZ)
    with pytest.raises(ImportFileError, match=r"line 1.*minutes, note"):
        parse_rows("patient,performer,start\n", TZ)
    assert parse_rows("\ufeff" + csv_text(), TZ) == []


def test_ids_given_or_derived_from_the_row() -> None:
    given_id = "0f8fad5b-d9cb-469f-a165-70867728950e"
    text = csv_text(
        f'p1,Practitioner/rn1,2026-11-02T10:00,25,ccm,patient-call,"{NOTE}",{given_id}',
        f'p1,Practitioner/rn1,2026-11-02T11:00,25,ccm,patient-call,"{NOTE}",',
        f'p1,Practitioner/rn1,2026-11-02T12:00,25,ccm,patient-call,"{NOTE}",not-a-uuid',
        header=HEADER + ",id",
    )
    a, b, c = parse_rows(text, TZ)
    assert isinstance(a, Row) and a.entry_id == given_id
    assert isinstance(b, Row) and b.entry_id == parse_rows(text, TZ)[1].entry_id  # type: ignore[union-attr]
    assert isinstance(c, RowError) and "UUID" in c.message
    cells = {
        "performer": "Practitioner/rn1",
        "start": "2026-11-02T11:00",
        "minutes": "25",
        "program": "ccm",
        "activity": "patient-call",
        "note": NOTE,
    }
    assert b.entry_id == derived_id("p1", cells)


def test_check_rows_applies_the_entry_rules_and_overlap_within_the_file_and_server() -> None:
    text = csv_text(
        f'p1,Practitioner/rn1,2026-11-02T10:00,25,ccm,patient-call,"{NOTE}"',
        f'p1,Practitioner/rn1,2026-11-02T10:10,25,ccm,patient-call,"{NOTE} again"',
        f'p1,Practitioner/rn1,2026-11-25T10:00,25,ccm,patient-call,"{NOTE}"',
        "p1,Practitioner/rn1,2026-10-02T10:00,25,ccm,patient-call,called patient",
        f'p1,Practitioner/rn1,2026-11-03T09:00,25,ccm,patient-call,"{NOTE}"',
    )
    rows = parse_rows(text, TZ)
    server = {
        "p1": [
            TimeEntry(
                "Encounter/e9",
                "finished",
                "ccm",
                datetime(2026, 11, 3, 9, 10, tzinfo=TZ),
                datetime(2026, 11, 3, 9, 40, tzinfo=TZ),
                30,
                "Practitioner/rn1",
            )
        ]
    }
    good, errors, warnings = check_rows(rows, now=NOW, tz=TZ, existing=server)
    assert [r.line for r, _ in good] == [2, 5]
    assert [e.line for e in errors] == [3, 4, 6]
    assert "overlaps" in errors[0].message and "future" in errors[1].message
    assert {w.line for w in warnings} == {5}
    assert any("vague" in w.message for w in warnings) and any("Late entry" in w.message for w in warnings)
    late_draft = good[1][1]
    assert late_draft.late


def test_write_rows_is_idempotent() -> None:
    text = csv_text(
        f'p1,Practitioner/rn1,2026-11-02T10:00,25,ccm,patient-call,"{NOTE}"',
        f'p1,Practitioner/rn1,2026-11-02T10:00,25,ccm,patient-call,"{NOTE}"',  # same row twice
        f'p1,Practitioner/rn1,2026-11-02T11:00,25,ccm,patient-call,"{NOTE}"',
    )
    server = FakeServer()
    good, errors, _ = check_rows(parse_rows(text, TZ), now=NOW, tz=TZ)
    assert not errors
    assert write_rows(server, good, {}) == (2, 1, [])
    assert write_rows(server, good, {}) == (0, 3, [])  # the server answers 200 to every conditional create
    assert len(server.of("Encounter")) == 2
    known = {good[0][1].entry_id: "e1"}
    assert write_rows(server, good, known)[:2] == (0, 3)


def test_write_failures_are_errors_with_line_numbers() -> None:
    from smart_app.fhir.client import FhirUnavailable

    text = csv_text(f'p1,Practitioner/rn1,2026-11-02T10:00,25,ccm,patient-call,"{NOTE}"')
    server = FakeServer()
    server.failures = [FhirUnavailable(None, "FHIR server could not connect")]
    good, _, _ = check_rows(parse_rows(text, TZ), now=NOW, tz=TZ)
    imported, duplicates, failures = write_rows(server, good, {})
    assert (imported, duplicates) == (0, 0)
    assert failures[0].line == 2 and "could not connect" in failures[0].message


# ------------------------------------------------------------------------------------ properties

cell = st.text(max_size=40) | st.sampled_from(
    [
        "p1",
        "Practitioner/rn1",
        "2026-11-02T10:00",
        "25",
        "ccm",
        "patient-call",
        NOTE,
        "",
        "0",
        "241",
        "Patient/x",
    ]
)


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=600))
def test_any_text_gives_rows_errors_or_a_file_error_never_an_exception(text: str) -> None:
    try:
        rows = parse_rows(text, TZ)
    except ImportFileError as exc:
        assert str(exc)
        return
    for row in rows:
        assert isinstance(row, (Row, RowError))
        if isinstance(row, RowError):
            assert row.message and row.line >= 2
    check_rows(rows, now=NOW, tz=TZ)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(cell, min_size=7, max_size=8), max_size=8))
def test_any_rows_become_a_valid_draft_or_a_clear_error(table: list[list[str]]) -> None:
    import csv
    import io

    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow([*HEADER.split(","), "id"])
    writer.writerows(table)
    rows = parse_rows(buf.getvalue(), TZ)
    good, errors, _ = check_rows(rows, now=NOW, tz=TZ)
    lines = {r.line for r, _ in good} | {e.line for e in errors}
    data_lines = {r.line for r in rows}
    assert data_lines <= lines
    for row, d in good:
        assert 1 <= d.minutes <= 240 and d.start < d.period_end and d.note.strip()
        assert row.patient_id and d.performer.startswith(("Practitioner/", "PractitionerRole/"))
    for e in errors:
        assert e.message


# ------------------------------------------------------------------------------------ batching


class BatchingServer(FakeServer):
    """FakeServer that also answers batch searches (Encounters by patient) and counts its requests."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.transactions: list[int] = []

    def batch(self, urls: list[str]) -> list[Any]:
        from smart_app.fhir.client import BatchResult

        self._fail()
        self.batches.append(len(urls))
        out = []
        for url in urls:
            pid = url.split("patient=Patient/", 1)[1].split("&", 1)[0]
            found = [
                r for r in self.resources
                if r["resourceType"] == "Encounter" and r["subject"]["reference"] == f"Patient/{pid}"
            ]
            out.append(BatchResult(200, found, request=url))
        return out

    def transaction(self, bundle: dict[str, Any]) -> dict[str, Any]:
        self.transactions.append(len(bundle["entry"]) // 3)
        return super().transaction(bundle)


def many_rows(n: int) -> str:
    return csv_text(
        *(
            f"p{i % 250},Practitioner/rn{i},2026-11-{1 + i % 15:02d}T{8 + i % 9:02d}:00,20,"
            f'ccm,patient-call,"{NOTE}"'
            for i in range(n)
        )
    )


def test_rows_are_written_fifty_per_transaction_and_a_rerun_writes_nothing() -> None:
    from smart_app.capture.import_csv import _server_state

    server = BatchingServer()
    rows = parse_rows(many_rows(120), TZ)
    good, errors, _ = check_rows(rows, now=NOW, tz=TZ)
    assert not errors and len(good) == 120
    assert write_rows(server, good, {}) == (120, 0, [])
    assert server.transactions == [50, 50, 20]
    assert len(server.of("Encounter")) == 120
    parsed = [r for r in rows if isinstance(r, Row)]
    existing, known = _server_state(server, parsed, "America/New_York")
    assert server.batches == [50, 50, 20]  # 120 patients' look-ups in three batch requests
    assert len(known) == 120 and sum(len(v) for v in existing.values()) == 120
    calls = server.calls
    assert write_rows(server, good, known) == (0, 120, [])
    assert server.calls == calls  # nothing sent


def test_an_import_that_fails_part_way_resumes_without_duplicates() -> None:
    from smart_app.capture.import_csv import _server_state
    from smart_app.fhir.client import FhirUnavailable

    server = BatchingServer()
    rows = parse_rows(many_rows(120), TZ)
    good, _, _ = check_rows(rows, now=NOW, tz=TZ)

    def second_call_fails() -> None:
        if server.calls == 2:
            raise FhirUnavailable(None, "FHIR server could not connect")

    server.on_call = second_call_fails
    imported, duplicates, failures = write_rows(server, good, {})
    assert (imported, duplicates) == (70, 0)
    assert len(failures) == 50 and all("could not connect" in f.message for f in failures)
    server.on_call = None
    _, known = _server_state(server, [r for r in rows if isinstance(r, Row)], "UTC")
    assert write_rows(server, good, known) == (50, 70, [])
    assert len(server.of("Encounter")) == 120  # every row once


def test_a_rejected_chunk_is_retried_row_by_row() -> None:
    server = BatchingServer()
    good, _, _ = check_rows(parse_rows(many_rows(5), TZ), now=NOW, tz=TZ)

    def refuse_big_transactions() -> None:
        if server.transactions and server.transactions[-1] > 1:
            raise FhirError(422, "HTTP 422 from FHIR server: unprocessable resource")

    server.on_call = refuse_big_transactions
    assert write_rows(server, good, {}) == (5, 0, [])
    assert server.transactions == [5, 1, 1, 1, 1, 1]


def test_imported_entries_are_recorded_in_the_ledger_once(tmp_path: Path) -> None:
    """Issue 15: the ledger is the record of everything the app captured, the spreadsheet import included."""
    from smart_app.capture.import_csv import record_imported
    from smart_app.capture.ledger import Ledger

    text = csv_text(
        f'p1,Practitioner/rn1,2026-11-02T10:00,25,ccm,patient-call,"{NOTE}"',
        f'p1,Practitioner/rn1,2026-11-02T11:00,25,ccm,patient-call,"{NOTE}"',
    )
    server = FakeServer()
    good, errors, _ = check_rows(parse_rows(text, TZ), now=NOW, tz=TZ)
    assert not errors
    ledger = Ledger(tmp_path / "ledger.sqlite3")
    try:
        def record(draft: Any) -> None:
            record_imported(ledger, "http://fhir.test/fhir", draft)

        write_rows(server, good, {}, on_written=record)
        write_rows(server, good, {}, on_written=record)  # a rerun adds nothing to the ledger
        records = ledger.records("http://fhir.test/fhir", "p1")
        entries = [r for r in records if r.kind == "time"]
        deliveries = [r for r in records if r.kind == "delivery"]
        assert sorted(r.id for r in entries) == sorted(d.entry_id for _, d in good)
        assert len(deliveries) == 2 and all(d.facts["profile"] == "structured" for d in deliveries)
        assert all(r.facts["source"] == "import-time" and r.user == "Practitioner/rn1" for r in entries)
        assert ledger.verify().ok
    finally:
        ledger.close()
