"""fhir_mapping.stream: files read one resource at a time give the reader what the whole file gave it."""

from __future__ import annotations

import gc
import random
from pathlib import Path
from typing import Any

import orjson
import pytest

from benchmarks.realistic import patient_history
from fhir_mapping import stream
from fhir_mapping.sources import SourceError, load_path
from fhir_mapping.stream import (
    READ_TYPES,
    iter_resources,
    patient_runs,
    paused_gc,
    select_patient,
    subject_key,
    unread_line,
)
from rules.month import Month
from rules.verdict import to_json
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import ResourceSource, verdict_for

MONTH = Month.parse("2026-10")


def population(n: int) -> list[dict[str, Any]]:
    rng = random.Random(5)
    return [r for i in range(n) for r in patient_history(f"s{i}", rng, MONTH)]


def write_ndjson(path: Path, resources: list[Any]) -> Path:
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    return path


def verdict(resources: list[Any], pid: str) -> dict[str, Any]:
    options = EvaluationOptions(MONTH, "America/Chicago")
    return to_json(verdict_for(ResourceSource(resources), pid, options).verdict)


def test_ndjson_streams_the_same_resources_as_load_path(tmp_path: Path) -> None:
    bundle = {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": "urn:uuid:t1", "resource": {"resourceType": "Task", "status": "completed"}}],
    }
    path = write_ndjson(tmp_path / "x.ndjson", [*population(2), bundle])
    path.write_bytes(path.read_bytes() + b"\n   \n")
    assert list(iter_resources(path)) == load_path(path)


def test_only_skips_unread_types_unparsed_but_reports_bad_read_lines(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(
        b'{"resourceType":"Patient","id":"a"}\n'
        b'{"resourceType":"Observation", this is not JSON\n'
        b'{"resourceType":"Encounter","id":"e1","subject":{"reference":"Patient/a"}}\n'
    )
    got = list(iter_resources(path, only=READ_TYPES))
    assert [r["id"] for r in got] == ["a", "e1"]
    with pytest.raises(SourceError, match="line 2 is not valid JSON"):
        list(iter_resources(path))
    path.write_bytes(b'{"resourceType":"Patient","id":"a"}\n{"resourceType":"Encounter", oops\n')
    with pytest.raises(SourceError, match="line 2"):
        list(iter_resources(path, only=READ_TYPES))
    assert unread_line(b'  { "resourceType" : "Observation", "id": "d"}')
    assert not unread_line(b'{"resourceType":"Bundle","entry":[]}')
    assert not unread_line(b'{"id":"x","resourceType":"Observation"}')  # not first: parsed, then ignored


def test_a_large_bundle_is_read_entry_by_entry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    entries: list[Any] = [
        {"fullUrl": f"urn:uuid:{r['id']}", "resource": {k: v for k, v in r.items() if k != "id"}}
        for r in population(1)[:30]
    ]
    entries.append(
        {
            "response": {
                "status": "400",
                "outcome": {"resourceType": "OperationOutcome", "issue": [{"severity": "error"}]},
            }
        }
    )
    entries.append(
        {
            "resource": {
                "resourceType": "Bundle",
                "type": "collection",
                "entry": [{"resource": {"resourceType": "Patient", "id": "nested"}}],
            }
        }
    )
    path = tmp_path / "big.json"
    path.write_bytes(
        orjson.dumps({"resourceType": "Bundle", "type": "transaction-response", "entry": entries})
    )
    monkeypatch.setattr(stream, "LARGE_DOCUMENT", 100)
    assert list(iter_resources(path)) == load_path(path)
    array = tmp_path / "array.json"
    array.write_bytes(orjson.dumps(population(1)[:5]))
    assert list(iter_resources(array)) == load_path(array)
    broken = tmp_path / "broken.json"
    broken.write_bytes(b'{"resourceType":"Bundle","entry":[{"resource":' + b" " * 200 + b"}")
    with pytest.raises(SourceError):
        list(iter_resources(broken))


def test_missing_empty_and_directory_sources_are_one_line_errors(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file"):
        list(iter_resources(tmp_path / "nope.ndjson"))
    (tmp_path / "empty.ndjson").write_bytes(b"\n \n")
    with pytest.raises(SourceError, match="is empty"):
        list(iter_resources(tmp_path / "empty.ndjson"))
    with pytest.raises(SourceError, match="directory"):
        list(iter_resources(tmp_path))


def test_select_patient_gives_the_same_verdict_as_the_whole_file(tmp_path: Path) -> None:
    everything = population(4)
    path = write_ndjson(tmp_path / "pop.ndjson", everything)
    for pid in ("s0", "s2", "s3"):
        picked = select_patient(iter_resources(path, only=READ_TYPES, about=pid), f"Patient/{pid}")
        assert picked.patient == f"Patient/{pid}"
        assert picked.patients == ["Patient/s0", "Patient/s1", "Patient/s2", "Patient/s3"]
        assert {subject_key(r) for r in picked.resources} <= {f"Patient/{pid}", None}
        assert verdict(picked.resources, pid) == verdict(everything, pid)


def test_select_without_a_patient_keeps_a_single_patient_and_drops_a_crowd(tmp_path: Path) -> None:
    one = select_patient(population(1))
    assert one.patient == "Patient/s0" and one.resources
    crowd = select_patient(population(3))
    assert crowd.patient is None and crowd.resources == [] and len(crowd.patients) == 3


def test_patient_runs_cut_a_grouped_stream_and_refuse_an_interleaved_one() -> None:
    everything = population(3)
    runs = list(patient_runs(everything))
    assert [k for k, _ in runs] == ["Patient/s0", "Patient/s1", "Patient/s2"]
    for key, group in runs:
        assert all(r["resourceType"] in READ_TYPES for r in group)
        assert verdict(group, key.split("/")[1]) == verdict(everything, key.split("/")[1])
    interleaved = [*everything[:5], *everything[-5:], *everything[5:10]]
    with pytest.raises(SourceError, match="not grouped by patient"):
        list(patient_runs(interleaved))


def test_subject_keys() -> None:
    assert subject_key({"resourceType": "Patient", "id": "p"}) == "Patient/p"
    assert subject_key(
        {"resourceType": "Task", "for": {"reference": "https://x/fhir/Patient/p/_history/2"}}
    ) == ("Patient/p")
    assert (
        subject_key({"resourceType": "Encounter", "subject": {"reference": "urn:uuid:abc"}}) == "Patient/abc"
    )
    assert subject_key({"resourceType": "Encounter", "subject": {"reference": "Group/g"}}) is None
    assert subject_key({"resourceType": "Encounter", "subject": [{"reference": "Patient/q"}]}) == "Patient/q"
    assert subject_key({"resourceType": "Consent"}) is None and subject_key("junk") is None


def test_paused_gc_restores_the_collector() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), paused_gc():
        assert not gc.isenabled()
        raise RuntimeError
    assert gc.isenabled()


def test_about_skips_other_patients_lines_unparsed_and_keeps_subjectless_ones(tmp_path: Path) -> None:
    path = tmp_path / "x.ndjson"
    path.write_bytes(
        b'{"resourceType":"Patient","id":"a1"}\n'
        b'{"resourceType":"Encounter","id":"e9","subject":{"reference":"Patient/zz"}, broken json\n'
        b'{"resourceType":"Encounter","id":"e1","subject":{"reference":"https://x/Patient/a1"}}\n'
        b'{"resourceType":"Task","id":"t0","status":"completed"}\n'
    )
    got = [r["id"] for r in iter_resources(path, only=READ_TYPES, about="Patient/a1")]
    assert got == ["a1", "e1", "t0"]


def test_a_verdicts_stream_parses_the_apps_notes_however_they_are_spelled(tmp_path: Path) -> None:
    """FACT_TYPES skips DocumentReferences unparsed, but never one of the app's notes: a note counts in
    every face (the use case reads it back), so the CLI must see it whatever the serialiser escaped."""
    from fhir_mapping.write_note import NOTE_FORMAT

    assert stream.NOTE_MARK.decode() in NOTE_FORMAT
    note = {"resourceType": "DocumentReference", "id": "n1", "subject": {"reference": "Patient/p1"},
            "content": [{"format": {"code": NOTE_FORMAT}}]}
    plain = orjson.dumps(note)
    spellings = [
        plain,
        plain.replace(b"/", b"\\/"),  # escaped solidus
        plain.replace(b"note-format", b"\\u006eote-format"),  # an escaped letter
    ]
    other = b'{"resourceType":"DocumentReference","id":"x", this line is never parsed'
    path = tmp_path / "notes.ndjson"
    path.write_bytes(b"\n".join([*spellings, other]) + b"\n")
    read = list(iter_resources(path, only=stream.FACT_TYPES))
    assert [r["content"][0]["format"]["code"] for r in read] == [NOTE_FORMAT] * 3
