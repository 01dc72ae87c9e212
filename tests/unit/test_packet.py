"""Audit packet: a valid FHIR document that carries its own evidence and reproduces its verdict."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle as R4BBundle
from fhirclient.models.bundle import Bundle as R4Bundle

from fhir_mapping.write_packet import HASH_EXT, POLICY_EXT, canonical_json, recompute_hashes, sha256_of
from smart_app.cli.commands import main
from smart_app.packet.document import build_packet
from smart_app.packet.render import render_html
from tests.support import app as support_app
from tests.support.ccm_scenarios import scenario, time_entry, transaction
from tests.support.fake_fhir import FakeFhir

MONTH = "2026-11"
TZ = "America/Chicago"


def _source(kind: str = "ready", pid: str = "pk-1") -> list[dict[str, Any]]:
    resources = scenario(kind, MONTH, pid)
    # Minutes in other months and resources the rules do not read: not needed in the packet.
    old = datetime(2026, 8, 5, 15, tzinfo=UTC)
    resources += time_entry(pid, f"{pid}-old", old, 30, "Practitioner/rn-ccm-1", "August call")
    resources.append(
        {
            "resourceType": "Observation",
            "id": f"{pid}-obs",
            "status": "final",
            "code": {"text": "HbA1c"},
            "subject": {"reference": f"Patient/{pid}"},
        }
    )
    return resources


def _write(tmp: Path, name: str, obj: Any) -> Path:
    path = tmp / name
    path.write_text(json.dumps(obj), "utf-8")
    return path


def _evaluate_json(path: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main(["evaluate", str(path), "--month", MONTH, "--timezone", TZ, *extra]) == 0
    return json.loads(capsys.readouterr().out)


def test_document_bundle_validates_with_r4b_and_fhirclient() -> None:
    packet = build_packet(_source(), MONTH, tz=TZ)
    bundle = json.loads(json.dumps(packet.bundle))
    R4BBundle.model_validate(bundle)
    R4Bundle(jsondict=bundle, strict=True)
    assert bundle["type"] == "document" and bundle["identifier"]["value"].startswith("urn:uuid:")
    comp = bundle["entry"][0]["resource"]
    assert comp["resourceType"] == "Composition" and comp["status"] == "final"
    assert comp["type"]["coding"][0] == {
        "system": "http://loinc.org",
        "code": "11503-0",
        "display": "Medical records",
    }
    urls = {e["fullUrl"]: e["resource"] for e in bundle["entry"]}
    assert urls[comp["subject"]["reference"]]["resourceType"] == "Patient"
    codes = [s["code"]["coding"][0]["code"] for s in comp["section"]]
    for wanted in ("eligibility", "consent", "care-plan", "time-log", "verdict"):
        assert wanted in codes
    for section in comp["section"]:
        assert section["text"]["div"].startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
        for entry in section.get("entry", ()):
            assert entry["reference"] in urls  # every cited resource is in the Bundle
    consent = next(s for s in comp["section"] if s["code"]["coding"][0]["code"] == "consent")
    assert [urls[e["reference"]]["resourceType"] for e in consent["entry"]] == ["Consent"]
    policy = next(e for e in comp["extension"] if e["url"] == POLICY_EXT)
    assert {x["url"]: x["valueString"] for x in policy["extension"]}["id"] == "cms-pfs-2026"


def test_only_what_the_verdict_needs_is_included() -> None:
    packet = build_packet(_source(), MONTH, tz=TZ)
    keys = {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in packet.bundle["entry"][1:]}
    assert "Patient/pk-1" in keys and "Consent/pk-1-consent" in keys and "Encounter/pk-1-t0" in keys
    assert "Observation/pk-1-obs" not in keys and "Encounter/pk-1-old" not in keys
    assert not any(k.startswith("Practitioner/") for k in keys)


def test_hashes_recompute_and_detect_tampering() -> None:
    packet = build_packet(_source(), MONTH, tz=TZ)
    bundle = json.loads(json.dumps(packet.bundle, indent=2, ensure_ascii=False))
    checks = recompute_hashes(bundle)
    assert len(checks) == len(bundle["entry"]) - 1
    assert all(recorded == now for recorded, now in checks.values())
    comp = bundle["entry"][0]["resource"]
    assert sum(1 for e in comp["extension"] if e["url"] == HASH_EXT) == len(checks)
    tampered = copy.deepcopy(bundle)
    enc = next(
        e
        for e in tampered["entry"]
        if e["resource"]["resourceType"] == "Encounter" and e["resource"].get("length")
    )
    enc["resource"]["length"]["value"] = 99
    assert any(recorded != now for recorded, now in recompute_hashes(tampered).values())


def test_canonical_json_is_key_order_and_whitespace_independent() -> None:
    a = {"b": 1, "a": {"y": "é", "x": [1, 2]}}
    b = json.loads('{ "a": {"x": [1,2], "y": "\\u00e9"},\n "b": 1 }')
    assert canonical_json(a) == '{"a":{"x":[1,2],"y":"é"},"b":1}'.encode()
    assert sha256_of(a) == sha256_of(b)


@pytest.mark.parametrize("kind", ["ready", "not-yet", "blocked", "not-eligible"])
def test_packet_reproduces_the_verdict(kind: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    source = _write(tmp_path, "source.json", transaction(_source(kind)))
    out = tmp_path / "packet"
    assert (
        main(["packet", str(source), "--month", MONTH, "--timezone", TZ, "--out", str(out), "--no-pdf"]) == 0
    )
    capsys.readouterr()
    assert (out / "packet.html").is_file() and not (out / "packet.pdf").exists()
    assert _evaluate_json(out / "packet.json", capsys) == _evaluate_json(source, capsys)


def test_packet_from_a_real_carebundle_file(
    shared_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = shared_data / "carebundle-r4" / "bundles" / "type2_diabetes-3101-0000.json"
    out = tmp_path / "cb"
    assert main(["packet", str(source), "--month", "2026-10", "--out", str(out), "--no-pdf"]) == 0
    capsys.readouterr()
    for path in (out / "packet.json", source):
        assert main(["evaluate", str(path), "--month", "2026-10"]) == 0
    first, second = capsys.readouterr().out.split("\n}\n", 1)
    assert json.loads(first + "}") == json.loads(second)
    R4BBundle.model_validate(json.loads((out / "packet.json").read_text("utf-8")))


def test_html_escapes_fhir_text_and_has_no_script_or_external_resources() -> None:
    resources = _source()
    patient = resources[0]
    patient["name"] = [{"family": "<script>alert('x')</script>", "given": ["Casey"]}]
    html = render_html(build_packet(resources, MONTH, tz=TZ), "0" * 64)
    assert "<script" not in html.lower()
    assert "&lt;script&gt;" in html
    assert "src=" not in html and "http://" not in html.split("<body>", 1)[0].replace(
        'xmlns="http://www.w3.org/1999/xhtml"', ""
    )
    for text in ("Verdict", "Consent", "Care plan", "Time log 2026-11", "consent", "SHA-256", "MLN909188"):
        assert text in html


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--month", "2026-13"], "month"),
        (["--month", MONTH, "--timezone", "Mars/Base"], "time zone"),
        (["--month", MONTH, "--policy", "cms-pfs-1999"], "cms-pfs-1999"),
        (["--month", MONTH, "--fhir-base", "http://127.0.0.1:9/fhir"], "either PATH"),
        (["--month", MONTH, "--billing-practitioner", "Dr Who"], "billing-practitioner"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = _write(tmp_path, "s.json", transaction(_source()))
    assert main(["packet", str(source), "--out", str(tmp_path / "o"), "--no-pdf", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and message in err


def test_missing_file_and_no_patient_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["packet", str(tmp_path / "nope.json"), "--month", MONTH, "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err
    only_obs = _write(
        tmp_path,
        "obs.json",
        {"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}},
    )
    assert main(["packet", str(only_obs), "--month", MONTH, "--out", str(tmp_path), "--no-pdf"]) == 2
    assert "Patient" in capsys.readouterr().err


def test_generated_time_is_recorded() -> None:
    now = datetime(2026, 12, 1, 9, 30, tzinfo=UTC)
    packet = build_packet(_source(), MONTH, tz=TZ, now=now)
    assert packet.bundle["timestamp"] == "2026-12-01T09:30:00+00:00"
    assert packet.bundle["entry"][0]["resource"]["date"] == now.isoformat()
    assert packet.generated_at - now < timedelta(seconds=1)


# ------------------------------------------------------------------ GET /packet (the panel's link)

BASE = "http://fhir.packet.test/fhir"


@pytest.fixture()
def web(tmp_path: Path) -> Any:
    fake = FakeFhir(_source("ready", "web-1"), base=BASE, filtering=False)
    app = support_app.make_app(tmp_path, fhir=fake, SECRET_KEY="k", TIMEZONE=TZ, OPEN_SERVERS=[BASE])
    return app.test_client()


def _open(client: Any) -> None:
    resp = client.get("/open", query_string={"iss": BASE, "patient": "web-1"})
    assert resp.status_code == 302, resp.get_data(as_text=True)[:300]


def test_packet_route_needs_a_session(web: Any) -> None:
    assert web.get("/packet?month=2026-11").status_code == 401


def test_packet_route_serves_html_and_json(web: Any) -> None:
    from smart_app.packet.render import style_csp_source

    _open(web)
    page = web.get("/packet?month=2026-11")
    assert page.status_code == 200 and page.mimetype == "text/html"
    html = page.get_data(as_text=True)
    assert "CCM audit packet: 2026-11" in html and "ready to bill" in html and "<script" not in html
    assert f"style-src {style_csp_source()}" in page.headers["Content-Security-Policy"]
    doc = web.get("/packet?month=2026-11&format=json")
    assert doc.status_code == 200 and doc.mimetype == "application/fhir+json"
    bundle = json.loads(doc.get_data())
    R4BBundle.model_validate(bundle)
    assert bundle["entry"][1]["fullUrl"].startswith(BASE + "/")
    assert "attachment" in doc.headers["Content-Disposition"]


def test_packet_route_rejects_bad_month_and_format(web: Any) -> None:
    _open(web)
    assert web.get("/packet?month=2026-13").status_code == 400
    assert web.get("/packet?month=2026-11&format=docx").status_code == 400


def test_packet_route_uses_the_policy_pack_the_panel_uses(tmp_path: Path) -> None:
    """A configured pack that does not cover the month must not be applied to it (the panel does not)."""
    fake = FakeFhir(_source("ready", "web-1"), base=BASE, filtering=False)
    app = support_app.make_app(tmp_path, fhir=fake, SECRET_KEY="k", TIMEZONE=TZ, OPEN_SERVERS=[BASE],
                               POLICY="cms-pfs-2026")
    client = app.test_client()
    _open(client)
    panel_policy = client.get("/panel.json?month=2025-11").get_json()["policy"]
    doc = client.get("/packet?month=2025-11&format=json")
    assert doc.status_code == 200
    text = doc.get_data(as_text=True)
    assert panel_policy == "cms-pfs-2025" and panel_policy in text and "cms-pfs-2026" not in text
    assert client.get("/packet?month=2019-05").status_code == 400  # no shipped rules for 2019
