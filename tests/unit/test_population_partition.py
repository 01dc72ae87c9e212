"""The worklist's partition: each NDJSON line parsed once, routed to its patient's bucket with the months'
reach applied (`#` dropped Encounters, `@` Tasks that name their Encounter), and the bucket finishing the
job; with forked workers, every patient still gets the verdict a full reading of that patient gives."""

from __future__ import annotations

import codecs
import random
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.realistic import patient_history
from fhir_mapping.reach import Dropping, Reach
from rules.month import Month
from smart_app.program.population import PEOPLE, _group_keyed, _sort_line, evaluate_population, map_population
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import ResourceSource, verdict_for

MONTH = Month.parse("2026-10")
OCTOBER = Reach.of(MONTH)
CODES = "https://ccm-ready.org/fhir/CodeSystem"
ATTEST = {"coding": [{"system": f"{CODES}/care-activity", "code": "risk-attestation"}]}


def line(res: dict[str, Any]) -> bytes:
    return orjson.dumps(res)


def encounter(eid: str, day: str, who: str = "p1") -> dict[str, Any]:
    return {
        "resourceType": "Encounter", "id": eid, "status": "finished",
        "type": [{"coding": [{"system": f"{CODES}/care-program", "code": "ccm"}]}],
        "subject": {"reference": f"Patient/{who}"},
        "period": {"start": f"{day}T10:00:00Z", "end": f"{day}T10:20:00Z"},
    }


def task(tid: str, ref: Any, who: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Task", "id": tid, "status": "completed", "intent": "order",
            "for": {"reference": f"Patient/{who}"}, "encounter": {"reference": ref}, **extra}


# ---------------------------------------------------------------------------------------------- lines


def test_an_out_of_reach_entry_leaves_only_its_name() -> None:
    assert _sort_line(line(encounter("old", "2026-03-04")), OCTOBER) == ("Patient/p1", b"#Encounter/old")
    new = line(encounter("new", "2026-10-04"))
    assert _sort_line(new, OCTOBER) == ("Patient/p1", new)


def test_a_task_names_the_encounter_it_documents_unless_it_attests() -> None:
    documents = line(task("t1", "Encounter/old"))
    assert _sort_line(documents, OCTOBER) == ("Patient/p1", b"@Encounter/old\t" + documents)
    attests = line(task("t2", "Encounter/old", code=ATTEST))
    assert _sort_line(attests, OCTOBER) == ("Patient/p1", attests)  # read at any date: always parsed


def test_names_that_could_break_a_bucket_line_are_left_to_the_bucket() -> None:
    """A tab or a line end inside an id or a reference would split the line: such a resource goes to the
    bucket as it is, and the bucket's own reading (`Dropping`) decides."""
    odd = line(encounter("old\tx", "2026-03-04"))
    assert _sort_line(odd, OCTOBER) == ("Patient/p1", odd)
    broken = line(task("t1", "Encounter/old\nx"))
    assert _sort_line(broken, OCTOBER) == ("Patient/p1", broken)


def test_what_no_month_reads_is_left_out() -> None:
    charge = {"resourceType": "ChargeItem", "id": "c1", "subject": {"reference": "Patient/p1"},
              "occurrenceDateTime": "2026-03-04"}
    assert _sort_line(line(charge), OCTOBER) is None
    assert _sort_line(b'{"resourceType":"Observation", not even JSON', OCTOBER) is None  # never parsed
    assert _sort_line(b'{"resourceType":"Encounter", broken', OCTOBER) is None
    assert _sort_line(b"   ", OCTOBER) is None
    assert _sort_line(line({"resourceType": "Organization", "id": "o1"}), OCTOBER) is None
    doctor = line({"resourceType": "Practitioner", "id": "dr"})
    assert _sort_line(doctor, OCTOBER) == (PEOPLE, doctor)  # goes with every patient


def test_without_a_reach_every_line_is_kept_as_it_is() -> None:
    for res in (encounter("old", "2026-03-04"), task("t1", "Encounter/old")):
        assert _sort_line(line(res), None) == ("Patient/p1", line(res))


# --------------------------------------------------------------------------------------------- bucket


def test_the_bucket_drops_a_task_whose_encounter_was_dropped_whatever_the_order() -> None:
    lines = [
        _bucket_line(task("t-old", "Encounter/old")),  # before the Encounter's `#` line
        _bucket_line(encounter("old", "2026-03-04")),
        _bucket_line(task("t-new", "Encounter/new")),
        _bucket_line(encounter("new", "2026-10-04")),
        _bucket_line(task("t-p2", "Encounter/old", who="p2")),  # p2's Task: p1's Encounter is not p2's
        _bucket_line({"resourceType": "Patient", "id": "p2"}),
    ]
    groups = _group_keyed(lines, Dropping(OCTOBER))
    assert [r["id"] for r in groups["Patient/p1"]] == ["t-new", "new"]
    assert [r["id"] for r in groups["Patient/p2"]] == ["t-p2", "p2"]


def _bucket_line(res: dict[str, Any]) -> bytes:
    sorted_line = _sort_line(line(res), OCTOBER)
    assert sorted_line is not None
    key, body = sorted_line
    return key.encode() + b"\t" + body


# ---------------------------------------------------------------------------------------------- forked


def _outcome(result: Any) -> tuple[str, Any]:
    v = result.verdicts[0]
    return result.key, (v.status, v.codes, v.minutes, [(f.rule, f.evidence) for f in v.findings])


def _per_type_export(
    folder: Path, patients: Iterable[list[dict[str, Any]]], start: bytes = b""
) -> list[Path]:
    """One NDJSON file per resource type, as a bulk export writes them (Tasks before Encounters), each file
    beginning with `start`."""
    by_type: dict[str, list[bytes]] = {}
    for resources in patients:
        for res in resources:
            by_type.setdefault(res["resourceType"], []).append(orjson.dumps(res))
    files = [folder / f"{rtype}.ndjson" for rtype in sorted(by_type, reverse=True)]
    for path in files:
        path.write_bytes(start + b"\n".join(by_type[path.stem]) + b"\n")
    return files


@pytest.mark.parametrize("workers", [1, 2])
def test_forked_workers_give_each_patient_its_full_reading(tmp_path: Path, workers: int) -> None:
    """Realistic patients (12 months of history) split over buckets and processes: each verdict is the
    one `verdict_for` gives on that patient's own resources."""
    patients = {f"w{i}": patient_history(f"w{i}", random.Random(5 + i), MONTH) for i in range(12)}
    files = _per_type_export(tmp_path, patients.values())
    found = sorted(
        map_population(files, [MONTH], _outcome, tz="UTC", per_bucket=2, workdir=tmp_path, workers=workers)
    )
    options = EvaluationOptions(MONTH, "UTC")
    alone = sorted(
        _outcome(_Result(f"Patient/{pid}", verdict_for(ResourceSource(res), pid, options).verdict))
        for pid, res in patients.items()
    )
    assert found == alone and len(found) == 12


class _Result:
    def __init__(self, key: str, verdict: Any) -> None:
        self.key, self.verdicts = key, (verdict,)


@pytest.mark.parametrize("per_bucket", [1000, 1], ids=["one-bucket", "partitioned"])
def test_a_byte_order_mark_starting_a_file_is_not_data(tmp_path: Path, per_bucket: int) -> None:
    """Some Windows tools start a file with a UTF-8 byte-order mark. Before, its first line (in
    Patient.ndjson: a patient) failed to parse and the worklist lost that patient without a word."""
    patients = {f"w{i}": patient_history(f"w{i}", random.Random(6 + i), MONTH) for i in range(3)}
    files = _per_type_export(tmp_path, patients.values(), start=codecs.BOM_UTF8)
    found = evaluate_population(files, [MONTH], tz="UTC", per_bucket=per_bucket, workdir=tmp_path)
    assert sorted(r.key for r in found) == sorted(f"Patient/{pid}" for pid in patients)
