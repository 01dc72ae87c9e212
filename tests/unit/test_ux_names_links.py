"""Names not ids in the audit packet and in finding texts; the worklist's patient link opens its month."""

from __future__ import annotations

import re
from pathlib import Path

from smart_app.packet.document import build_packet
from smart_app.packet.render import packet_people, render_html
from tests.unit.test_panel import BASE, MONTH, make_app, open_session, scenario

UUID_DR = "Practitioner/8a749752-1c2d-4e5f-9a0b-112233445566"
PEOPLE = [
    {"resourceType": "Practitioner", "id": "dr1", "name": [{"given": ["Grace"], "family": "Hopper"}],
     "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]},
    {"resourceType": "Practitioner", "id": "rn1", "name": [{"given": ["Florence"], "family": "Nightingale"}]},
]
RAW_ID = re.compile(r"Practitioner/[A-Za-z0-9-]+")


def _visible(html: str) -> str:
    """The packet's text outside its integrity tables (which list every resource by id, on purpose)."""
    head = html.split("<h2>Integrity</h2>")[0]
    return re.sub(r"<[^>]+>", " ", head)


def test_the_packet_names_people_in_every_table_and_finding() -> None:
    resources = [*scenario("ready"), *PEOPLE]
    packet = build_packet(resources, MONTH, tz="UTC", patient_id="p-ready")
    assert set(packet_people(packet)) >= {"Practitioner/dr1", "Practitioner/rn1"}
    html = render_html(packet, "0" * 64, {"Practitioner/dr1": "Grace Hopper",
                                          "Practitioner/rn1": "Florence Nightingale"})
    text = _visible(html)
    assert not RAW_ID.search(text), RAW_ID.search(text)
    assert "Florence Nightingale" in text  # the time table's performer
    assert "Grace Hopper" in text  # header, consent, plan author, visit participant


def test_the_packet_page_resolves_names_in_one_batch(tmp_path: Path) -> None:
    app = make_app(tmp_path, [*scenario("ready"), *PEOPLE])
    fake = app.extensions["fake_fhir"]
    client = app.test_client()
    open_session(client, "p-ready")
    before = len(fake.batches)
    html = client.get("/packet", query_string={"month": MONTH}).get_data(as_text=True)
    text = _visible(html)
    assert "Grace Hopper" in text and "Florence Nightingale" in text
    assert not RAW_ID.search(text)
    name_batches = [b for b in fake.batches[before:] if all(u.startswith("Practitioner/") for u in b)]
    # Who took part comes with the encounters; anyone else would cost at most one batch of reads.
    assert len(name_batches) <= 1


def test_a_finding_naming_a_practitioner_shows_the_name_on_the_panel(tmp_path: Path) -> None:
    """A consent for another billing practitioner: the finding names both people, server-side, no ids."""
    turing = {"resourceType": "Practitioner", "id": UUID_DR.split("/")[1], "name": [{"text": "Alan Turing"}]}
    resources = [*scenario("ready"), *PEOPLE, turing]
    consent = next(r for r in resources if r["resourceType"] == "Consent")
    consent["provision"]["actor"][0]["reference"] = {"reference": UUID_DR}
    app = make_app(tmp_path, resources, BILLING_PRACTITIONER="Practitioner/dr1")
    client = app.test_client()
    open_session(client, "p-ready")
    html = client.get("/panel", query_string={"month": MONTH}).get_data(as_text=True)
    messages = " ".join(re.findall(r'<p class="finding-message">(.*?)</p>', html, re.S))
    assert "(Alan Turing), not Grace Hopper" in messages, messages[:900]
    assert UUID_DR not in messages


def test_open_with_a_month_lands_on_that_month_of_the_panel(tmp_path: Path) -> None:
    app = make_app(tmp_path, scenario("ready"))
    client = app.test_client()
    resp = client.get("/open", query_string={"iss": BASE, "patient": "p-ready", "month": "2026-09"})
    assert resp.status_code == 302 and resp.headers["Location"].endswith("/panel?month=2026-09")
    bad = client.get("/open", query_string={"iss": BASE, "patient": "p-ready", "month": "2026-13'><x"})
    assert bad.status_code == 302 and bad.headers["Location"].endswith("/panel")
    page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert 'id="month-input" name="month" value="2026-09"' in page




def test_switching_from_a_smart_session_keeps_the_worklist_month(tmp_path: Path) -> None:
    """A signed-in browser asked to confirm the switch: the confirming POST still lands on the month."""
    from smart_app.context import LaunchContext
    from tests.unit.test_panel import start_with_context

    app = make_app(tmp_path, scenario("ready"))
    client = app.test_client()
    start_with_context(app, client, LaunchContext(mode="smart", fhir_base=BASE, patient_id="p-ready",
                                                  user="Practitioner/dr1"))
    asked = client.get("/open", query_string={"iss": BASE, "patient": "p-ready", "month": "2026-09"})
    html = asked.get_data(as_text=True)
    assert asked.status_code == 409 and '<input type="hidden" name="month" value="2026-09">' in html
    token = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert token
    done = client.post("/open", data={"csrf_token": token.group(1), "iss": BASE, "patient": "p-ready",
                                      "month": "2026-09"})
    assert done.status_code == 302 and done.headers["Location"].endswith("/panel?month=2026-09")


def test_the_packet_document_names_people_in_its_narrative_and_keeps_their_references(tmp_path: Path) -> None:
    """packet.json: the Composition's narrative shows names; section entries and the integrity hashes keep
    the references, so each name can be traced to its resource."""
    app = make_app(tmp_path, [*scenario("ready"), *PEOPLE])
    client = app.test_client()
    open_session(client, "p-ready")
    doc = client.get("/packet", query_string={"month": MONTH, "format": "json"}).get_json()
    sections = {s["code"]["coding"][0]["code"]: s for s in doc["entry"][0]["resource"]["section"]}
    shown = " ".join(s["text"]["div"] for code, s in sections.items() if code != "integrity")
    assert "Grace Hopper" in shown and not RAW_ID.search(_visible(shown)), shown[:2000]
    assert "Task/p-ready-time1-task" in sections["integrity"]["text"]["div"]  # ids kept as evidence
    assert all(e["reference"] for s in sections.values() for e in s.get("entry", ()))


def test_name_people_replaces_whole_references_only() -> None:
    from fhir_mapping.write_packet import name_people

    div = '<div xmlns="http://www.w3.org/1999/xhtml"><td>Practitioner/a1, Practitioner/a10</td></div>'
    bundle = {"entry": [{"resource": {"section": [
        {"code": {"coding": [{"code": "time-log"}]}, "text": {"div": div}},
        {"code": {"coding": [{"code": "integrity"}]}, "text": {"div": div}},
    ]}}]}
    out = name_people(bundle, {"Practitioner/a1": "Ada <One>", "Practitioner/a10": r"Ten \g<0>"})
    time_log, integrity = (s["text"]["div"] for s in out["entry"][0]["resource"]["section"])
    assert "<td>Ada &lt;One&gt;, Ten \\g&lt;0&gt;</td>" in time_log
    assert integrity == div
