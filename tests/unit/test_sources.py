"""fhir_mapping.sources: every Bundle type, NDJSON, and one-line errors for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from fhir_mapping.codes import CPT, HCPCS, ICD10CM, SNOMED, canonical_system, normalize_icd10
from fhir_mapping.sources import SourceError, load_path, resources_from_json, resources_from_ndjson

PATIENT = {"resourceType": "Patient", "id": "p1"}
CONDITION = {"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/p1"}}


def bundle(kind: str, entries: list) -> dict:
    return {"resourceType": "Bundle", "type": kind, "entry": entries}


def ids(resources: list) -> list[str]:
    return [f"{r['resourceType']}/{r.get('id')}" if isinstance(r, dict) else repr(r) for r in resources]


@pytest.mark.parametrize("kind", ["collection", "transaction", "batch", "document", "message", "history"])
def test_plain_bundle_types_yield_their_resources(kind: str) -> None:
    b = bundle(
        kind,
        [{"resource": PATIENT, "request": {"method": "POST", "url": "Patient"}}, {"resource": CONDITION}],
    )
    assert ids(resources_from_json(b)) == ["Patient/p1", "Condition/c1"]


def test_searchset_skips_outcome_entries_but_keeps_operation_outcomes() -> None:
    outcome = {"resourceType": "OperationOutcome", "id": "oo", "issue": [{"severity": "warning"}]}
    b = bundle(
        "searchset",
        [
            {"resource": PATIENT, "search": {"mode": "match"}},
            {"resource": CONDITION, "search": {"mode": "include"}},
            {"resource": outcome, "search": {"mode": "outcome"}},
            {"resource": {"resourceType": "Patient", "id": "x"}, "search": {"mode": "outcome"}},
        ],
    )
    assert ids(resources_from_json(b)) == ["Patient/p1", "Condition/c1", "OperationOutcome/oo"]


@pytest.mark.parametrize("kind", ["transaction-response", "batch-response"])
def test_response_bundles_yield_resources_or_outcomes(kind: str) -> None:
    outcome = {"resourceType": "OperationOutcome", "issue": [{"severity": "error", "diagnostics": "nope"}]}
    b = bundle(
        kind,
        [
            {"resource": PATIENT, "response": {"status": "201 Created"}},
            {"response": {"status": "400 Bad Request", "outcome": outcome}},
            {"response": {"status": "204 No Content"}},
        ],
    )
    out = resources_from_json(b)
    assert [r["resourceType"] for r in out] == ["Patient", "OperationOutcome"]


def test_nested_bundles_and_lists_are_flattened() -> None:
    inner = bundle("collection", [{"resource": CONDITION}])
    outer = bundle("searchset", [{"resource": inner}, {"resource": PATIENT}])
    assert ids(resources_from_json([outer, PATIENT])) == ["Condition/c1", "Patient/p1", "Patient/p1"]


def test_single_resource_and_non_object_entries_pass_through() -> None:
    assert resources_from_json(PATIENT) == [PATIENT]
    out = resources_from_json(bundle("collection", ["junk", {"resource": 5}, {"resource": PATIENT}]))
    assert out == ["junk", 5, PATIENT]


def test_id_comes_from_full_url_when_missing() -> None:
    b = bundle(
        "transaction",
        [
            {"fullUrl": "urn:uuid:abc-1", "resource": {"resourceType": "Patient"}},
            {"fullUrl": "https://x.example/fhir/Condition/c9", "resource": {"resourceType": "Condition"}},
        ],
    )
    assert ids(resources_from_json(b)) == ["Patient/abc-1", "Condition/c9"]


def test_not_fhir_is_a_one_line_error() -> None:
    with pytest.raises(SourceError, match="no resourceType"):
        resources_from_json({"hello": "world"})
    with pytest.raises(SourceError, match="expected a JSON object or array"):
        resources_from_json(42)


def test_load_bundle_file(tmp_path: Path) -> None:
    path = tmp_path / "b.json"
    path.write_text(json.dumps(bundle("collection", [{"resource": PATIENT}])))
    assert load_path(path) == [PATIENT]


def test_load_ndjson_with_and_without_suffix(tmp_path: Path) -> None:
    text = json.dumps(PATIENT) + "\n\n" + json.dumps(CONDITION) + "\n" + json.dumps(bundle("collection", []))
    for name in ("export.ndjson", "export.json"):
        path = tmp_path / name
        path.write_text(text)
        assert ids(load_path(path)) == ["Patient/p1", "Condition/c1"]


def test_ndjson_error_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.ndjson"
    path.write_text(json.dumps(PATIENT) + "\n{broken\n")
    with pytest.raises(SourceError, match=r"line 2 is not valid JSON") as info:
        load_path(path)
    assert "\n" not in str(info.value)
    with pytest.raises(SourceError, match="line 1"):
        resources_from_ndjson(b'{"no": "type"}\n')


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "no such file"),
        ("", "is empty"),
        ("{not json", "is not valid JSON"),
        ('{"a": 1}', "no resourceType"),
        ("[1, 2", "is not valid JSON"),
    ],
)
def test_load_errors_are_one_line(tmp_path: Path, content: str | None, message: str) -> None:
    path = tmp_path / "in.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(SourceError, match=message) as info:
        load_path(path)
    assert "\n" not in str(info.value)


def test_directory_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a directory"):
        load_path(tmp_path)


@pytest.mark.parametrize(
    ("url", "canonical"),
    [
        ("http://hl7.org/fhir/sid/icd-10-cm", ICD10CM),
        ("https://hl7.org/fhir/sid/icd-10-cm/", ICD10CM),
        ("urn:oid:2.16.840.1.113883.6.90", ICD10CM),
        ("http://snomed.info/sct/", SNOMED),
        ("https://snomed.info/sct", SNOMED),
        ("urn:oid:2.16.840.1.113883.6.96", SNOMED),
        ("https://www.ama-assn.org/go/cpt", CPT),
        ("http://ama-assn.org/go/cpt/", CPT),
        ("urn:oid:2.16.840.1.113883.6.12", CPT),
        ("urn:oid:2.16.840.1.113883.6.285", HCPCS),
        ("http://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", HCPCS),
        (
            "http://ccm-ready.org/fhir/CodeSystem/care-program/",
            "https://ccm-ready.org/fhir/CodeSystem/care-program",
        ),
        ("http://example.org/local/", "http://example.org/local"),
        (None, ""),
    ],
)
def test_canonical_system(url: str | None, canonical: str) -> None:
    assert canonical_system(url) == canonical


@pytest.mark.parametrize(
    ("code", "normal"),
    [("E119", "E11.9"), ("e11.9", "E11.9"), ("I10", "I10"), ("E1165", "E11.65"), ("N18.", "N18")],
)
def test_icd10_codes_are_dotted(code: str, normal: str) -> None:
    assert normalize_icd10(code) == normal
