"""People by name: one batch of reads for a page's names, cached for the session; choices and search."""

from __future__ import annotations

from typing import Any
from urllib.parse import unquote

from smart_app.fhir.client import BatchResult
from smart_app.fhir.people import UNKNOWN, Directory, care_team_refs, names_from, person_ref

PEOPLE = [
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"given": ["Grace"], "family": "Hopper"}],
     "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]},
    {"resourceType": "Practitioner", "id": "rn1", "name": [{"text": "Florence Nightingale"}]},
    {"resourceType": "PractitionerRole", "id": "role1", "practitioner": {"reference": "Practitioner/rn1"},
     "code": [{"text": "Care manager"}]},
]


class Server:
    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.searches: list[Any] = []

    def batch(self, urls: list[str], **_: Any) -> list[BatchResult]:
        self.batches.append(list(urls))
        out = []
        for url in urls:
            rtype, rid = url.split("/", 1)
            hit = [r for r in PEOPLE if r["resourceType"] == rtype and r["id"] == unquote(rid)]
            out.append(BatchResult(200, hit, request=url) if hit else BatchResult(404, [], "gone", None, url))
        return out

    def search(self, rtype: str, params: Any) -> list[dict[str, Any]]:
        self.searches.append((rtype, params))
        return [r for r in PEOPLE if r["resourceType"] == rtype]


def test_person_ref_normalises_references() -> None:
    assert person_ref("http://x/fhir/Practitioner/a/_history/2") == "Practitioner/a"
    assert person_ref("PractitionerRole/r") == "PractitionerRole/r"
    assert person_ref("Patient/p") is None and person_ref(None) is None


def test_names_resolved_in_one_batch_then_cached_for_the_session() -> None:
    server, session = Server(), {}
    d = Directory(server, session, "http://fhir")
    got = d.resolve(["Practitioner/dr1", "PractitionerRole/role1", "Practitioner/gone", "Practitioner/dr1"])
    assert got["Practitioner/dr1"].name == "Grace Hopper"
    assert got["Practitioner/dr1"].detail == "NPI 1234567893"
    assert got["PractitionerRole/role1"].name == "Florence Nightingale"  # the role's practitioner, read next
    assert got["PractitionerRole/role1"].detail == "Care manager"
    assert got["Practitioner/gone"].name == UNKNOWN
    assert len(server.batches) == 2  # the names asked for, then the role's practitioner
    again = Directory(server, session, "http://fhir")  # the next request of the same session
    assert again.name("Practitioner/dr1") == "Grace Hopper" and again.name("Practitioner/gone") == UNKNOWN
    assert len(server.batches) == 2


def test_choices_offer_user_recent_and_care_team_and_remember_picks() -> None:
    server, session = Server(), {}
    d = Directory(server, session, "http://fhir")
    d.remember_choice("Practitioner/rn1")
    people = d.choices("Practitioner/dr1", ["Practitioner/rn1", "Practitioner/dr1"])
    assert [p.ref for p in people] == ["Practitioner/dr1", "Practitioner/rn1"]
    found = d.search("hopper")
    assert [p.name for p in found] == ["Grace Hopper"]
    assert server.searches[-1][1][0] == ("name", "hopper")
    d.search("1234567893")
    assert server.searches[-1][1][0] == ("identifier", "http://hl7.org/fhir/sid/us-npi|1234567893")


def test_care_team_and_general_practitioners() -> None:
    res = [
        {"resourceType": "CareTeam", "status": "active",
         "participant": [{"member": {"reference": "Practitioner/a"}},
                         {"member": {"reference": "Patient/p"}}]},
        {"resourceType": "CareTeam", "status": "inactive",
         "participant": [{"member": {"reference": "Practitioner/z"}}]},
        {"resourceType": "Patient", "generalPractitioner": [{"reference": "Practitioner/b"}]},
    ]
    assert care_team_refs(res) == ["Practitioner/a", "Practitioner/b"]
    assert set(names_from(PEOPLE)) == {"Practitioner/dr1", "Practitioner/rn1", "PractitionerRole/role1"}


def test_panel_names_people_on_first_view_and_then_stays_one_request(tmp_path: Any) -> None:
    """Without JavaScript a name is on the page at once, in the panel's one batch: the people who took part
    come with the encounters (`_include`); the session remembers them for later views."""
    from tests.unit.test_panel import MONTH, make_app, open_session, scenario

    app = make_app(tmp_path, [*scenario("ready"), *PEOPLE])
    fake = app.extensions["fake_fhir"]
    client = app.test_client()
    open_session(client, "p-ready")
    before = fake.round_trips
    first = client.get("/panel", query_string={"month": MONTH}).get_data(as_text=True)
    assert fake.round_trips - before == 1  # the panel's batch carries the names
    assert "Grace Hopper" in first and 'data-person-ref="Practitioner/dr1"' not in first
    before = fake.round_trips
    again = client.get("/panel", query_string={"month": MONTH}).get_data(as_text=True)
    assert fake.round_trips - before == 1 and "Grace Hopper" in again  # cached for the session
    names = client.get("/people/names", query_string=[("ref", "Practitioner/dr1")]).get_json()
    assert names == {"Practitioner/dr1": "Grace Hopper"}
