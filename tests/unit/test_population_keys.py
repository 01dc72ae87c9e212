"""The worklist partition reads a line's patient from its bytes; it must agree with the parsing path."""

from __future__ import annotations

import zlib

import orjson
import pytest

from fhir_mapping.stream import line_subject_key
from smart_app.program.population import LineKeys

LINES = [
    {"resourceType": "Encounter", "id": "e1", "subject": {"reference": "Patient/p1"}},
    {"resourceType": "Encounter", "id": "e2", "subject": {"reference": "http://ehr.example/fhir/Patient/p2"}},
    {"resourceType": "Encounter", "id": "e3", "subject": {"reference": "urn:uuid:p3"}},
    {"resourceType": "Encounter", "id": "e4", "subject": {"display": "x", "reference": "Patient/p4"}},
    {"resourceType": "Encounter", "id": "e5", "subject": {"reference": "Group/g1"}},
    {
        "resourceType": "Task",
        "id": "t1",
        "for": {"reference": "Patient/p1"},
        "focus": {"reference": "Encounter/e1"},
    },
    {
        "resourceType": "Task",
        "id": "t2",
        "for": {"reference": "Patient/p1"},
        "note": [{"text": '"for":{"reference":"Patient/evil"}'}],
    },
    {
        "resourceType": "Consent",
        "id": "c1",
        "patient": {"reference": "Patient/p9"},
        "contained": [{"resourceType": "Patient", "id": "x"}],
    },
    {"resourceType": "Condition", "id": "k1", "subject": {"reference": 'Patient/p\\"q'}},
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "Practitioner", "id": "dr1"},
    {"resourceType": "Encounter", "id": "e6"},
]


@pytest.mark.parametrize("resource", LINES, ids=[r["id"] for r in LINES])
def test_line_keys_agree_with_the_parsing_path(resource: dict) -> None:
    keys = LineKeys()
    for line in (
        orjson.dumps(resource),
        b" " + orjson.dumps(resource, option=orjson.OPT_INDENT_2).replace(b"\n", b""),
    ):
        rtype = keys.type_of(line)
        assert keys.key(line, rtype) == line_subject_key(line)
        assert keys.key(line, rtype) == line_subject_key(line)  # the remembered reference too


def test_unread_types_are_recognised_from_the_bytes() -> None:
    keys = LineKeys()
    obs = orjson.dumps({"resourceType": "Observation", "id": "o1", "subject": {"reference": "Patient/p1"}})
    enc = orjson.dumps(LINES[0])
    assert keys.unread(obs, keys.type_of(obs)) and not keys.unread(enc, keys.type_of(enc))


@pytest.mark.parametrize("resource", LINES, ids=[r["id"] for r in LINES])
def test_routes_agree_with_the_parsing_path(resource: dict) -> None:
    keys = LineKeys(buckets=7)
    line = orjson.dumps(resource)
    for _ in range(2):  # computed, then remembered
        route = keys.route(line)
        key = line_subject_key(line)
        if key is None:
            assert route is None
        else:
            assert route == (key.encode() + b"\t", zlib.crc32(key.encode()) % 7)
    assert keys.route(b"") is False and keys.route(b"   ") is False
    assert keys.route(b'{"resourceType":"Observation","subject":{"reference":"Patient/p1"}}') is False
