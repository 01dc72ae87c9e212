"""People resolver (issue 11 item 1): one key per person, whatever the reference form (§3.3, §3.6)."""

from __future__ import annotations

from typing import Any

import pytest

from fhir_mapping.people import NPI, People, npi_key
from fhir_mapping.reader import read_facts
from fhir_mapping.references import References
from rules.people import is_staff, kind

DOC_NPI = "1234567893"
RESOURCES: list[dict[str, Any]] = [
    {"resourceType": "Practitioner", "id": "doc", "identifier": [{"system": NPI, "value": DOC_NPI}]},
    {"resourceType": "PractitionerRole", "id": "role-doc", "practitioner": {"reference": "Practitioner/doc"}},
    {
        "resourceType": "PractitionerRole",
        "id": "role-npi",
        "practitioner": {"identifier": {"system": NPI, "value": DOC_NPI}},
    },
    {"resourceType": "PractitionerRole", "id": "role-lost"},
]


def people() -> People:
    return People(References(RESOURCES), RESOURCES)


CONTAINER = {
    "resourceType": "Consent",
    "id": "k1",
    "contained": [
        {"resourceType": "Practitioner", "id": "p0", "identifier": [{"system": NPI, "value": DOC_NPI}]},
        {"resourceType": "PractitionerRole", "id": "r0", "practitioner": {"reference": "#p0"}},
        {"resourceType": "Practitioner", "id": "anon"},
    ],
}


@pytest.mark.parametrize(
    "reference",
    [
        "Practitioner/doc",
        {"reference": "Practitioner/doc"},
        {"reference": "https://ehr.example/fhir/R4/Practitioner/doc"},
        {"reference": "Practitioner/doc/_history/7"},
        {"reference": "https://ehr.example/fhir/Practitioner/doc/_history/2"},
        {"reference": "PractitionerRole/role-doc"},
        {"reference": "https://ehr.example/fhir/PractitionerRole/role-doc/_history/1"},
        {"reference": "PractitionerRole/role-npi"},
        {"identifier": {"system": NPI, "value": DOC_NPI}, "display": "Dr Doc"},
        {"type": "Practitioner", "identifier": {"system": "urn:oid:2.16.840.1.113883.4.6", "value": DOC_NPI}},
        {"reference": f"Practitioner?identifier={NPI}|{DOC_NPI}"},
        {"reference": "#p0"},
        {"reference": "#r0"},
    ],
)
def test_every_form_of_one_practitioner_is_one_key(reference: Any) -> None:
    assert people().key(reference, CONTAINER) == "Practitioner/doc"


def test_urn_uuid_in_a_transaction() -> None:
    resources = [
        {"resourceType": "Practitioner", "id": "6f1c", "identifier": [{"system": NPI, "value": "1"}]}
    ]
    assert People(References(resources), resources).key({"reference": "urn:uuid:6f1c"}) == "Practitioner/6f1c"


def test_unknown_npi_keeps_a_stable_key_and_counts_as_practitioner() -> None:
    key = people().key({"identifier": {"system": NPI, "value": "9999999991"}})
    assert key == npi_key("9999999991") and is_staff(key) and kind(key) == "Practitioner"


def test_role_without_practitioner_stays_a_role_and_counts() -> None:
    key = people().key("PractitionerRole/role-lost")
    assert key == "PractitionerRole/role-lost" and is_staff(key)


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ({"reference": "RelatedPerson/rp"}, "RelatedPerson/rp"),
        ({"reference": "Patient/p1"}, "Patient/p1"),
        ({"reference": "Device/d1"}, "Device/d1"),
        ({"display": "Nurse Jane"}, None),
        ({"identifier": {"system": "urn:local", "value": "x"}}, None),
        ({"reference": "#missing"}, None),
        (None, None),
    ],
)
def test_who_is_not_staff(reference: Any, expected: str | None) -> None:
    """cms-rules.md §3.6: only clinical staff and the billing practitioner's time counts."""
    key = people().key(reference, CONTAINER)
    assert key == expected and not is_staff(key)


def test_contained_practitioner_without_identifier_is_local_to_its_container() -> None:
    key = people().key({"reference": "#anon"}, CONTAINER)
    assert key == "Practitioner/Consent-k1-anon" and is_staff(key)


def test_reader_publishes_aliases_so_an_explicit_role_or_npi_names_the_person() -> None:
    facts = read_facts([{"resourceType": "Patient", "id": "p1"}, *RESOURCES])
    aliases = dict(facts.aliases)
    assert aliases["PractitionerRole/role-doc"] == "Practitioner/doc"
    assert aliases[npi_key(DOC_NPI)] == "Practitioner/doc"


def test_population_groups_carry_the_people_so_npi_references_resolve() -> None:
    from fhir_mapping.reader import group_by_patient

    consent = {
        "resourceType": "Consent",
        "id": "k",
        "status": "active",
        "patient": {"reference": "Patient/p1"},
        "category": [
            {"coding": [{"system": "https://ccm-ready.org/fhir/CodeSystem/care-program", "code": "ccm"}]}
        ],
        "provision": {
            "actor": [
                {
                    "role": {
                        "coding": [
                            {
                                "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                "code": "PPRF",
                            }
                        ]
                    },
                    "reference": {"identifier": {"system": NPI, "value": DOC_NPI}},
                }
            ]
        },
    }
    groups = group_by_patient([{"resourceType": "Patient", "id": "p1"}, consent, *RESOURCES])
    facts = read_facts(groups["Patient/p1"], "p1")
    assert facts.consents[0].billing_practitioner == "Practitioner/doc"


def test_transaction_urn_that_differs_from_the_id_still_resolves() -> None:
    from fhir_mapping.sources import resources_from_json

    bundle = {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": "urn:uuid:aaa", "resource": {"resourceType": "Patient", "id": "p1"}},
            {"fullUrl": "urn:uuid:bbb", "resource": {"resourceType": "Practitioner", "id": "doc"}},
            {
                "fullUrl": "urn:uuid:ccc",
                "resource": {
                    "resourceType": "Encounter",
                    "id": "v",
                    "status": "finished",
                    "subject": {"reference": "urn:uuid:aaa"},
                    "type": [{"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99214"}]}],
                    "participant": [{"individual": {"reference": "urn:uuid:bbb"}}],
                    "period": {"start": "2026-01-01T10:00:00Z"},
                },
            },
        ],
    }
    facts = read_facts(resources_from_json(bundle))
    assert facts.visits[0].participants == ("Practitioner/doc",)
