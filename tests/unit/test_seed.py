"""The demo population: valid FHIR R4, idempotent identifiers, dates in the current month, every state."""

from __future__ import annotations

import importlib
import json
from collections import Counter
from datetime import datetime, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class

from rules.month import Month
from rules.verdict import STATUSES
from smart_app.demo.seed import (
    DEMO_SYSTEM,
    PROGRAM_SYSTEM,
    Clock,
    DemoCase,
    Manifest,
    SeededPatient,
    copied_bundle,
    demo_cases,
    iter_resources,
    read_manifest,
    write_manifest,
)

TZ = "America/Chicago"
NOW = datetime(2026, 11, 23, 16, 5, tzinfo=ZoneInfo(TZ))
# Early on the 1st: the month has barely started.
FIRST_HOUR = datetime(2027, 3, 1, 0, 20, tzinfo=ZoneInfo(TZ))


@pytest.fixture(scope="module")
def cases() -> list[DemoCase]:
    return demo_cases(NOW, TZ)


def _demo_ids(resource: dict[str, Any]) -> list[str]:
    return [i["value"] for i in resource.get("identifier", []) if i.get("system") == DEMO_SYSTEM]


def _time_entries(bundle: dict[str, Any]) -> list[dict[str, Any]]:
    return [
        e["resource"] for e in bundle["entry"]
        if e["resource"]["resourceType"] == "Encounter"
        and any(c.get("system") == PROGRAM_SYSTEM for t in e["resource"].get("type", []) for c in t["coding"])
    ]


def test_population_is_large_enough_and_covers_every_state(cases: list[DemoCase]) -> None:
    assert len(cases) >= 20
    states = Counter(c.expected for c in cases)
    assert set(states) == set(STATUSES), states
    assert len({c.key for c in cases}) == len(cases)
    assert {c.source for c in cases} == {"crafted", "carebundle", "synthea"}


def test_every_resource_is_valid_r4b(cases: list[DemoCase]) -> None:
    for resource in iter_resources(cases):
        get_fhir_model_class(resource["resourceType"]).model_validate(resource)


def test_every_resource_is_valid_for_fhirclient_r4_models(cases: list[DemoCase]) -> None:
    """An independent check: fhirclient's R4 (4.0.1) models in strict mode raise on any unknown element."""
    for resource in iter_resources(cases):
        rtype = resource["resourceType"]
        model = getattr(importlib.import_module(f"fhirclient.models.{rtype.lower()}"), rtype)
        model(json.loads(json.dumps(resource)), strict=True)


def test_the_validators_do_reject_a_broken_resource(cases: list[DemoCase]) -> None:
    """Guard: the two checks above would notice a bad resource."""
    broken = dict(_time_entries(cases[0].bundle)[0], lenght={"value": 5})
    with pytest.raises(Exception):  # noqa: B017 - pydantic ValidationError
        get_fhir_model_class("Encounter").model_validate(broken)
    import fhirclient.models.encounter as enc
    with pytest.raises(Exception):  # noqa: B017 - FHIRValidationError
        enc.Encounter(broken, strict=True)


def test_bundles_are_transactions_of_conditional_creates(cases: list[DemoCase]) -> None:
    for case in cases:
        bundle = case.bundle
        assert bundle["type"] == "transaction"
        full_urls = [e["fullUrl"] for e in bundle["entry"]]
        assert len(full_urls) == len(set(full_urls)), case.key
        patients = [e for e in bundle["entry"] if e["resource"]["resourceType"] == "Patient"]
        assert len(patients) == 1 and case.key in _demo_ids(patients[0]["resource"])
        for entry in bundle["entry"]:
            ids = _demo_ids(entry["resource"])
            assert len(ids) == 1, (case.key, entry["resource"]["resourceType"])
            assert entry["request"]["method"] == "POST"
            assert entry["request"]["url"] == entry["resource"]["resourceType"]
            if case.source == "crafted":
                assert entry["request"]["ifNoneExist"] == f"identifier={DEMO_SYSTEM}|{ids[0]}"
            else:
                assert entry["request"].get("ifNoneExist")


def test_identifiers_are_unique_except_shared_practitioners(cases: list[DemoCase]) -> None:
    seen: dict[str, dict[str, Any]] = {}
    for case in cases:
        for resource in (e["resource"] for e in case.bundle["entry"]):
            (ident,) = _demo_ids(resource)
            if ident in seen:
                # Only the practice's practitioners repeat, and then they are the same resource.
                assert ident.startswith("practitioner."), ident
                assert seen[ident] == resource
            seen[ident] = resource


def test_references_inside_a_crafted_bundle_resolve(cases: list[DemoCase]) -> None:
    def refs(obj: Any) -> list[str]:
        if isinstance(obj, dict):
            found = [obj["reference"]] if isinstance(obj.get("reference"), str) else []
            return found + [r for v in obj.values() for r in refs(v)]
        if isinstance(obj, list):
            return [r for v in obj for r in refs(v)]
        return []

    for case in (c for c in cases if c.source == "crafted"):
        urls = {e["fullUrl"] for e in case.bundle["entry"]}
        for entry in case.bundle["entry"]:
            for ref in refs(entry["resource"]):
                assert ref in urls, (case.key, ref)


# The month of a DST change (America/Chicago falls back on 2026-11-01, springs forward on 2027-03-14).
SPRING = datetime(2027, 3, 28, 12, 0, tzinfo=ZoneInfo(TZ))


@pytest.mark.parametrize("now", [NOW, FIRST_HOUR, SPRING], ids=["late-in-month", "first-hour", "dst-month"])
def test_time_entries_have_an_end_and_fall_in_this_month(now: datetime) -> None:
    month = Month.of(now)
    start, end = month.bounds(ZoneInfo(TZ))
    count = 0
    for case in demo_cases(now, TZ, include_copied=False):
        entries = _time_entries(case.bundle)
        spans = []
        for enc in entries:
            begin = datetime.fromisoformat(enc["period"]["start"])
            finish = datetime.fromisoformat(enc["period"]["end"])  # KeyError = no period.end
            assert finish > begin
            assert enc["length"] == {"value": (finish - begin) / timedelta(minutes=1), "unit": "min",
                                     "system": "http://unitsofmeasure.org", "code": "min"}
            if case.key != "deceased":
                assert start <= begin < finish <= end, (case.key, begin)
            spans.append((begin, finish))
            count += 1
        spans.sort()
        assert all(a[1] <= b[0] for a, b in pairwise(spans)), case.key
    assert count >= 30


def test_crafted_minutes_match_the_labels(cases: list[DemoCase]) -> None:
    by_key = {c.key: c for c in cases}

    def ccm_minutes(key: str) -> int:
        return sum(
            e["length"]["value"] for e in _time_entries(by_key[key].bundle)
            if e["type"][0]["coding"][0]["code"] == "ccm"
        )

    assert ccm_minutes("ready-staff") == 25
    assert ccm_minutes("ready-cap") == 65
    assert ccm_minutes("ready-practitioner") == 92
    assert ccm_minutes("ready-complex") == 95
    assert ccm_minutes("not-yet") == 14


def test_dates_follow_the_clock() -> None:
    later = demo_cases(NOW + timedelta(days=40), TZ, include_copied=False)
    first = demo_cases(NOW, TZ, include_copied=False)
    a = _time_entries(first[0].bundle)[0]["period"]["start"]
    b = _time_entries(later[0].bundle)[0]["period"]["start"]
    assert a.startswith("2026-11-") and b.startswith("2027-01-")
    # Same identifiers whatever the month: re-seeding the same month is idempotent.
    assert [_demo_ids(r) for r in iter_resources(first)] == [_demo_ids(r) for r in iter_resources(later)]


def test_clock_keeps_moments_inside_a_barely_started_month() -> None:
    clock = Clock.at(FIRST_HOUR, TZ)
    moments = [clock.this_month(f) for f in (0.0, 0.1, 0.5, 0.95)]
    assert moments == sorted(moments)
    assert all(Month.of(m) == Month(2027, 3) for m in moments)


def test_copied_bundle_leaves_the_source_untouched() -> None:
    source = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:1", "resource": {"resourceType": "Patient"}, "request": {"method": "POST",
                                                                                      "url": "Patient"}},
    ]}
    snapshot = json.dumps(source)
    out = copied_bundle("k", source)
    assert json.dumps(source) == snapshot
    assert out["entry"][0]["resource"]["identifier"] == [{"system": DEMO_SYSTEM, "value": "k"}]
    assert out["entry"][0]["request"]["ifNoneExist"] == f"identifier={DEMO_SYSTEM}|k"


def test_manifest_round_trip(tmp_path: Path) -> None:
    manifest = Manifest("http://127.0.0.1:1/fhir", "2026-11", TZ, "2026-11-23T22:00:00+00:00", (
        SeededPatient("ready-staff", "abc", "Alma Reyes", "Ready", "ready", "25 minutes", "crafted"),
    ))
    path = tmp_path / "demo" / "manifest.json"
    write_manifest(path, manifest)
    assert read_manifest(path) == manifest
    path.write_text("{}", encoding="utf-8")
    with pytest.raises(ValueError, match="not a demo manifest"):
        read_manifest(path)


def test_home_lists_the_manifest_patients(tmp_path: Path) -> None:
    from markupsafe import escape

    from smart_app.app import create_app

    manifest = Manifest("http://127.0.0.1:8090/fhir", "2026-11", TZ, "", (
        SeededPatient("not-yet", "p-1", "Esther Mbeki", "Not yet: 14 of 20 minutes", "not-yet", "6 more",
                      "crafted"),
        SeededPatient("ready-staff", "p-2", "Alma Reyes", "Ready: 25 staff minutes", "ready", "99490",
                      "crafted"),
    ))
    path = tmp_path / "manifest.json"
    write_manifest(path, manifest)
    app = create_app({"TESTING": True, "DEMO_MANIFEST": str(path)})
    html = app.test_client().get("/").get_data(as_text=True)
    assert 'href="/open?iss=http%3A%2F%2F127.0.0.1%3A8090%2Ffhir&amp;patient=p-1"' in html
    assert str(escape("Ready: 25 staff minutes")) in html
    assert html.index("Alma Reyes") < html.index("Esther Mbeki")  # ready first


def test_home_with_an_unreadable_manifest_says_so(tmp_path: Path) -> None:
    from smart_app.app import create_app

    app = create_app({"TESTING": True, "DEMO_MANIFEST": str(tmp_path / "missing.json")})
    html = app.test_client().get("/").get_data(as_text=True)
    assert "could not be read" in html and 'href="/open"' in html


@pytest.mark.parametrize(("argv", "message"), [
    (["--timezone", "Mars/Olympus"], "unknown time zone"),
    (["--port", "8090", "--fhir-port", "8090"], "must differ"),
])
def test_demo_command_rejects_bad_arguments(argv: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    from smart_app.cli.commands import main

    assert main(["demo", *argv]) == 2
    assert message in capsys.readouterr().err
