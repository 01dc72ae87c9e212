"""Worklist rows and filters, and the bucketed population path, on the demo's crafted patients (offline)."""

from __future__ import annotations

import csv
import io
import json
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_mapping.reader import read_facts
from rules.evaluate import evaluate
from rules.month import Month, zone
from rules.verdict import to_json
from smart_app.program.population import evaluate_population, patient_groups, patient_key
from smart_app.program.worklist import apply_filter, blocked_reasons, build_row, is_close, row_json, to_csv
from tests.support import app as support_app
from tests.support.demo_rows import demo_population

TZ = "America/Chicago"
NOW = datetime(2026, 10, 20, 15, 0, tzinfo=zone(TZ))
MONTH = Month(2026, 10)
TODAY = NOW.date()


@pytest.fixture(scope="module")
def population() -> tuple[list[dict[str, Any]], dict[str, str]]:
    return demo_population()


def _write_by_type(resources: list[dict[str, Any]], folder: Path) -> list[Path]:
    by_type: dict[str, list[bytes]] = {}
    for res in resources:
        by_type.setdefault(res["resourceType"], []).append(orjson.dumps(res))
    paths = []
    for rtype, lines in sorted(by_type.items()):
        path = folder / f"{rtype}.ndjson"
        path.write_bytes(b"\n".join(lines) + b"\n")
        paths.append(path)
    return paths


def _alone(resources: list[dict[str, Any]], key: str) -> dict[str, Any]:
    mine = [r for r in resources if patient_key(r) == key]
    return to_json(evaluate(read_facts(mine, key.split("/")[1], TZ), MONTH, tz=TZ))


@pytest.mark.parametrize("per_bucket", [1000, 3])
def test_population_equals_each_patient_alone(population, tmp_path: Path, per_bucket: int) -> None:
    resources, spec_of = population
    files = _write_by_type(resources, tmp_path)
    results = list(evaluate_population(files, [MONTH], tz=TZ, per_bucket=per_bucket, workdir=tmp_path))
    assert {r.key for r in results} == set(spec_of)
    for r in results:
        assert to_json(r.verdicts[0]) == _alone(resources, r.key), spec_of[r.key]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith("ccm-buckets-")]  # spill files removed


def test_patient_groups_keep_people_and_drop_other_resources_about_no_patient(tmp_path: Path) -> None:
    path = tmp_path / "mixed.ndjson"
    path.write_bytes(
        b"\n".join(
            [
                orjson.dumps({"resourceType": "Patient", "id": "a"}),
                orjson.dumps({"resourceType": "Practitioner", "id": "x"}),
                orjson.dumps({"resourceType": "Organization", "id": "o"}),
                orjson.dumps({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/a"}}),
                orjson.dumps(
                    {"resourceType": "Condition", "id": "d", "subject": {"reference": "Patient/ghost"}}
                ),
                b"{not json",
            ]
        )
        + b"\n"
    )
    for per_bucket in (1, 100):  # bucketed on disk, and all in memory
        groups = dict(patient_groups([path], per_bucket=per_bucket, patients=4, workdir=tmp_path))
        assert list(groups) == ["Patient/a"]  # no Patient resource for "ghost": not a patient we can name
        # the Practitioner goes with every patient (people named by role or NPI resolve through it)
        assert sorted(r["id"] for r in groups["Patient/a"]) == ["a", "c", "x"]


@pytest.fixture(scope="module")
def rows(population) -> dict[str, Any]:
    resources, spec_of = population
    out = {}
    for key, spec in spec_of.items():
        mine = [r for r in resources if patient_key(r) == key]
        facts = read_facts(mine, key.split("/")[1], TZ)
        out[spec] = build_row(facts, evaluate(facts, MONTH, tz=TZ), today=TODAY)
    return out


def test_rows_carry_the_verdict(rows) -> None:
    staff = rows["ready-staff"]
    assert staff.status == "ready" and staff.codes == (("99490", 1),)
    assert staff.verdict is not None and staff.verdict["patient"] == staff.patient
    assert staff.days_left == 12  # Oct 20..31
    assert (staff.next_code, staff.minutes_to_next) == ("99439", 15)
    assert rows["ready-practitioner"].practitioner_minutes == 92
    assert rows["no-consent"].blockers[0].category == "consent"
    # another practitioner's claim is a conflict on this row, never counted as billed by us
    assert rows["billed-elsewhere"].billed_codes == ()
    assert any(b.category == "conflict" for b in rows["billed-elsewhere"].blockers)
    assert rows["vague-notes"].entries_with_warnings == 2 and rows["vague-notes"].ccm_entries == 2
    j = row_json(staff)
    assert j["patient"].startswith("Patient/") and j["codes"] == [{"code": "99490", "units": 1}]
    assert j["national_payment"] == str(staff.payment)


def test_filters(rows) -> None:
    all_rows = list(rows.values())
    spec_of = {r.patient: s for s, r in rows.items()}

    def specs(which: str, **kw: Any) -> set[str]:
        return {spec_of[r.patient] for r in apply_filter(all_rows, which, **kw)}

    assert specs("ready") == {
        "ready-staff",
        "ready-cap",
        "ready-practitioner",
        "ready-complex",
        "rpm-and-ccm",
        "tcm-and-ccm",
        "vague-notes",
        "missing-notes",
    }
    assert specs("close", n=10) == {"not-yet", "consent-mid-month", "tcm-and-ccm"}
    assert specs("close", n=5) == {"consent-mid-month"}
    close = apply_filter(all_rows, "close", n=10)
    assert [r.minutes_to_next for r in close] == sorted(r.minutes_to_next or 0 for r in close)
    assert specs("enroll") == {"no-consent"}
    assert specs("blocked", reason="conflict") == {"pcm-same", "cpo", "esrd", "billed-elsewhere"}
    assert specs("blocked", reason="care-plan") == {"no-care-plan"}
    assert {"no-consent", "consent-declined", "consent-stopped"} <= specs("blocked", reason="consent")
    reasons = dict(blocked_reasons(all_rows))
    assert reasons["conflict"] == 4
    with pytest.raises(ValueError):
        apply_filter(all_rows, "nonsense")


def test_close_needs_days_left(population) -> None:
    resources, spec_of = population
    key = next(k for k, s in spec_of.items() if s == "not-yet")
    mine = [r for r in resources if patient_key(r) == key]
    facts = read_facts(mine, key.split("/")[1], TZ)
    after = build_row(facts, evaluate(facts, MONTH, tz=TZ), today=MONTH.next().first_day)
    assert after.days_left == 0 and apply_filter([after], "close", n=30) == []


def test_csv_is_safe_for_spreadsheets(rows) -> None:
    from dataclasses import replace

    evil = replace(rows["ready-staff"], name='=HYPERLINK("x")')
    parsed = list(csv.reader(io.StringIO(to_csv([evil, rows["no-consent"]]))))
    assert parsed[0][0] == "patient" and parsed[1][1].startswith("'=")
    assert parsed[1][3] == "99490" and parsed[2][2] == "blocked" and "consent:" in parsed[2][9]


def _status_of(result: Any) -> tuple[str, str]:
    return result.key, result.verdicts[0].status


def test_parallel_buckets_give_the_same_results(population, tmp_path: Path) -> None:
    from smart_app.program.population import map_population

    resources, _spec_of = population
    files = _write_by_type(resources, tmp_path)
    one = sorted(map_population(files, [MONTH], _status_of, tz=TZ, per_bucket=3, workdir=tmp_path))
    two = sorted(map_population(files, [MONTH], _status_of, tz=TZ, per_bucket=3, workdir=tmp_path, workers=2))
    assert one == two and len(one) == 22


@pytest.mark.parametrize(
    "extra",
    [
        ["--month", "2026-13"],
        ["--month", "2026-10", "--timezone", "Mars/Base"],
        ["--month", "2026-10", "--group", "Group/a/b"],
        ["--month", "2026-10", "--client-id", "x"],
        ["--month", "2026-10", "--policy", "no-such-pack"],
    ],
)
def test_cli_rejects_bad_arguments(extra: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    from smart_app.cli.commands import main

    assert main(["worklist", "--fhir-base", "http://127.0.0.1:9/fhir", *extra]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ccm-ready worklist: ") and err.count("\n") == 1


def test_cli_reports_an_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    from smart_app.cli.commands import main

    assert main(["worklist", "--fhir-base", "http://127.0.0.1:9/fhir", "--month", "2026-10", "--quiet"]) == 1
    assert "ccm-ready worklist:" in capsys.readouterr().err


def test_program_page_asks_for_a_server_and_checks_parameters(tmp_path: Path) -> None:
    app = support_app.make_app(tmp_path, SECRET_KEY="t", OPEN_SERVERS=["http://127.0.0.1:9/fhir"])
    http = app.test_client()
    choose = http.get("/program")
    assert choose.status_code == 200 and 'name="iss"' in choose.get_data(as_text=True)
    assert http.get("/program", query_string={"iss": "http://elsewhere.example/fhir"}).status_code == 403
    base = {"iss": "http://127.0.0.1:9/fhir"}
    assert http.get("/program", query_string={**base, "month": "2026-13"}).status_code == 400
    assert http.get("/program", query_string={**base, "filter": "nope"}).status_code == 400
    assert http.get("/program", query_string={**base, "n": "-1"}).status_code == 400
    assert http.get("/program", query_string={**base, "group": "Group/a/b"}).status_code == 400
    assert http.get("/program/status", query_string={**base, "month": "2025-01"}).status_code == 404
    assert (
        http.post("/program/mark-billed", query_string=base, data={"patient": "Patient/1"}).status_code == 400
    )


def test_progress_bar_only_on_a_terminal() -> None:
    from smart_app.program.cli import Progress

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, pipe = Tty(), io.StringIO()
    for stream in (tty, pipe):
        bar = Progress(stream, enabled=True)
        bar.stage("export in progress")
        bar.count(10, 10)
        bar.done()
    assert "export in progress" in tty.getvalue() and "10/10" in tty.getvalue() and "#" * 30 in tty.getvalue()
    assert pipe.getvalue() == ""


def test_ready_rows_show_warnings_next_step_and_csv_columns(rows) -> None:
    vague = rows["vague-notes"]
    assert vague.warnings and all(w.category == "documentation" for w in vague.warnings)
    assert ("warning", "documentation", len(vague.warnings)) in vague.chips
    assert rows["ready-staff"].next_step.startswith("Bill 99490")
    text = to_csv([vague])
    header, line = list(csv.reader(io.StringIO(text)))
    assert {"warnings", "next_step", "month_state"} <= set(header)
    assert "documentation:" in line[header.index("warnings")]


def test_a_past_month_is_closed_billed_not_billed_or_missed(rows) -> None:
    from dataclasses import replace as _replace

    staff = rows["ready-staff"]
    assert staff.month_state == "open"
    closed = _replace(staff, closed=True)
    assert closed.month_state == "not-billed" and "99490" in closed.month_state_reason
    assert _replace(closed, billed_codes=(("99490", 1),)).month_state == "billed"
    missed = _replace(rows["no-consent"], closed=True)
    assert missed.month_state == "missed" and missed.month_state_reason == missed.blockers[0].message
    assert not is_close(_replace(staff, closed=True), 60)


def test_rows_with_warnings_survive_the_job_store(rows) -> None:
    from smart_app.program.jobs import row_from_json, row_to_json

    vague = rows["vague-notes"]
    back = row_from_json(json.loads(json.dumps(row_to_json(vague))))
    assert back.warnings == vague.warnings and back.next_step == vague.next_step
    assert back.closed == vague.closed
