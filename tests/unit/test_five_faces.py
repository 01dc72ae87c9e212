"""Every face renders the same Verdict: panel, CLI, worklist, CDS card and audit packet agree.

Each golden scenario goes through all five faces with the same configuration (time zone, month and, in a
second pass, a configured billing practitioner), and the faces must agree on status, codes, minutes and
blockers. The panel reads through the one-batch fetch (from the shared FakeFhir), the CDS card from a
prefetch, the worklist from NDJSON as a bulk export writes it, the CLI and the packet from the file.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from fhir_mapping.sources import load_path
from rules.month import Month
from rules.verdict import Verdict
from smart_app.cli.commands import main
from smart_app.packet.document import PacketError, build_packet
from smart_app.program.population import evaluate_population
from tests.support import app as support_app
from tests.support.ccm_scenarios import hook_request, searchset
from tests.support.fake_fhir import FakeFhir
from tests.support.includes import included_people

SCENARIOS = Path(__file__).resolve().parents[1] / "data" / "scenarios"
NAMES = sorted(p.name.removesuffix(".expected.json") for p in SCENARIOS.glob("*.expected.json"))
BASE = "http://fhir.faces.test/fhir"
SERVICES = json.loads((Path(__file__).resolve().parents[2] / "smart_app/cds/services.json").read_text())
# A billing practitioner named in no scenario: every face must then report the same blockers for it.
OTHER_PRACTITIONER = "Practitioner/faces-elsewhere"


def _summary(status: str, codes: Any, minutes: Any, blockers: Any) -> dict[str, Any]:
    return {
        "status": status,
        "codes": sorted((str(c), int(u)) for c, u in codes),
        "minutes": (int(minutes[0]), int(minutes[1])),
        "blockers": sorted(set(blockers)),
    }


def _from_verdict(v: Verdict) -> dict[str, Any]:
    return _summary(
        v.status,
        [(c.code, c.units) for c in v.codes],
        (v.minutes.clinical_staff, v.minutes.billing_practitioner),
        [f.rule for f in v.blockers],
    )


def _from_json(d: dict[str, Any]) -> dict[str, Any]:
    return _summary(
        d["status"],
        [(c["code"], c["units"]) for c in d["codes"]],
        (d["minutes"]["clinical_staff"], d["minutes"]["billing_practitioner"]),
        [f["rule"] for f in d["findings"] if f["severity"] == "blocker"],
    )


def _cli(path: Path, month: str, tz: str, who: str | None, capsys: pytest.CaptureFixture[str]) -> dict:
    argv = ["evaluate", str(path), "--month", month, "--timezone", tz, "--format", "json"]
    if who:
        argv += ["--billing-practitioner", who]
    assert main(argv) == 0
    return _from_json(json.loads(capsys.readouterr().out))


def _config(tmp_path: Path, tz: str, who: str | None, clock: datetime) -> dict[str, Any]:
    return {
        "TESTING": True,
        "SECRET_KEY": "faces",
        "DATA_DIR": str(tmp_path),
        "TIMEZONE": tz,
        "BILLING_PRACTITIONER": who,
        "OPEN_SERVERS": [BASE],
        "OUTBOX_WORKER": False,
        "CDS_ALLOW_UNAUTHENTICATED": True,
        "CDS_SERVICE_URL": "http://localhost/cds-services/ccm-readiness",
        "CDS_CLOCK": lambda: clock,
    }


def _panel(app: Any, resources: list[dict[str, Any]], pid: str, month: str) -> dict:
    fake = FakeFhir(resources, base=BASE, filtering=False)
    app.config["FHIR_CLIENT_FACTORY"] = lambda ctx: fake
    web = app.test_client()
    assert web.get("/open", query_string={"iss": BASE, "patient": pid}).status_code == 302
    resp = web.get("/panel.json", query_string={"month": month})
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return _from_json(resp.get_json())


def _prefetch(app: Any, resources: list[dict[str, Any]], pid: str) -> dict[str, Any]:
    """The EHR's answers to the prefetch templates the service advertises (type, searchset)."""
    out: dict[str, Any] = {}
    templates = app.test_client().get("/cds-services").get_json()["services"][0]["prefetch"]
    for key, template in templates.items():
        rtype = template.split("?", 1)[0].split("/", 1)[0]
        of_type = [r for r in resources if r["resourceType"] == rtype]
        if "/" in template.split("?", 1)[0]:
            out[key] = next(r for r in of_type if r["id"] == pid)
        else:
            out[key] = searchset(of_type + _included(template, of_type, resources))
    return out


def _included(
    template: str, matches: list[dict[str, Any]], resources: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What the template's `_include=Encounter:participant` (and :iterate roles) adds to its searchset."""
    if "_include=Encounter:participant" not in template:
        return []
    return included_people(matches, resources, "PractitionerRole:practitioner" in template)


_CODE_LINE = re.compile(r"^- (\S+) x(\d+)", re.M)
_BLOCKER_LINE = re.compile(r"^- blocker `([^`]+)`", re.M)
_STATUS = {"ready to bill": "ready", "not yet billable": "not-yet", "blocked": "blocked",
           "not eligible": "not-eligible"}


def _cds(app: Any, resources: list[dict[str, Any]], pid: str) -> dict | None:
    body = hook_request(pid, prefetch=_prefetch(app, resources, pid))
    resp = app.test_client().post("/cds-services/ccm-readiness", json=body)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    cards = resp.get_json()["cards"]
    if not cards:
        return None  # no card for patients who are not eligible
    detail = cards[0]["detail"]
    words = re.search(r"\*\*Status for [^:]+: ([^*]+)\*\*", detail)
    assert words is not None, detail
    staff = re.search(r"Clinical staff minutes counted: (\d+)", detail)
    practitioner = re.search(r"Billing practitioner minutes: (\d+)", detail)
    assert staff and practitioner
    codes = detail.split("**Codes**", 1)[1].split("**", 1)[0] if "**Codes**" in detail else ""
    return _summary(
        _STATUS[words.group(1)],
        _CODE_LINE.findall(codes),
        (staff.group(1), practitioner.group(1)),
        _BLOCKER_LINE.findall(detail),
    )


def _worklist(tmp_path: Path, resources: list[dict[str, Any]], pid: str, month: str, tz: str,
              who: str | None) -> dict:
    ndjson = tmp_path / "export.ndjson"
    ndjson.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    results = [r for r in evaluate_population([ndjson], [month], tz=tz, billing_practitioner=who)
               if r.key == f"Patient/{pid}"]
    assert len(results) == 1
    return _from_verdict(results[0].verdicts[0])


def _packet(resources: list[dict[str, Any]], pid: str, month: str, tz: str, who: str | None) -> dict | None:
    """The packet's verdict; None when the input holds invalid FHIR (a packet must be valid R4 to sign)."""
    try:
        packet = build_packet(resources, Month.parse(month), tz=tz, pack=None, patient_id=pid,
                              billing_practitioner=who)
    except PacketError as exc:
        assert "valid FHIR" in str(exc)
        return None
    return _from_verdict(packet.verdict)


@pytest.mark.parametrize("configured", [False, True], ids=["as-in-scenario", "configured-practitioner"])
@pytest.mark.parametrize("name", NAMES)
def test_all_five_faces_agree(name: str, configured: bool, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    expected = json.loads((SCENARIOS / f"{name}.expected.json").read_text())
    month, tz = expected["month"], expected["timezone"]
    who = OTHER_PRACTITIONER if configured else expected["billing_practitioner"]
    path = SCENARIOS / f"{name}.json"
    resources = [r for r in load_path(path) if isinstance(r, dict)]
    pid = next(r["id"] for r in resources if r.get("resourceType") == "Patient")
    m = Month.parse(month)
    mid_month = datetime(m.year, m.month, 15, 12, tzinfo=UTC)
    app = support_app.make_app(**_config(tmp_path, tz, who, mid_month))

    faces = {
        "cli": _cli(path, month, tz, who, capsys),
        "panel": _panel(app, resources, pid, month),
        "worklist": _worklist(tmp_path, resources, pid, month, tz, who),
    }
    packet = _packet(resources, pid, month, tz, who)
    if packet is not None:
        faces["packet"] = packet
    card = _cds(app, resources, pid)
    if card is not None:
        faces["cds"] = card
    else:
        assert faces["cli"]["status"] == "not-eligible"
    reference = faces["cli"]
    disagree = {face: got for face, got in faces.items() if got != reference}
    assert not disagree, f"faces disagree with the CLI {reference}: {disagree}"


def test_the_disagreement_check_can_fail() -> None:
    """The comparison sees a difference in any of status, codes, minutes or blockers."""
    base = _summary("ready", [("99490", 1)], (25, 0), [])
    assert base != _summary("ready", [("99490", 1)], (25, 0), ["consent.missing"])
    assert base != _summary("ready", [("99490", 2)], (25, 0), [])
    assert base != _summary("ready", [("99490", 1)], (24, 0), [])
    assert base != _summary("blocked", [("99490", 1)], (25, 0), [])


# ------------------------------------------------------------------ the export-shape corpus (issue 11)

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
CORPUS_INDEX = json.loads((CORPUS / "stories.json").read_text()) if (CORPUS / "stories.json").exists() else {}
SHAPES = ("epic", "oracle", "athena", "hapi", "ndjson")


def _corpus_file(story: str, shape: str) -> Path:
    return CORPUS / (f"{story}.ndjson" if shape == "ndjson" else f"{story}.{shape}.json")


def _as_stored(path: Path) -> list[dict[str, Any]]:
    """The resources as a server holds them once a transaction is posted: urn:uuid fullUrls become ids
    and every reference to them a relative `Type/id` (what the panel, CDS fetch and export then read)."""
    raw = json.loads(path.read_text()) if path.suffix == ".json" else None
    if not (isinstance(raw, dict) and raw.get("type") == "transaction"):
        return [r for r in load_path(path) if isinstance(r, dict)]
    ids: dict[str, str] = {}
    for entry in raw["entry"]:
        res, url = entry["resource"], str(entry.get("fullUrl") or "")
        if url.startswith("urn:uuid:"):
            res.setdefault("id", url.removeprefix("urn:uuid:"))
            ids[url] = f"{res['resourceType']}/{res['id']}"
    text = json.dumps([e["resource"] for e in raw["entry"]])
    for url, ref in ids.items():
        text = text.replace(f'"{url}"', f'"{ref}"')
    return [r for r in json.loads(text) if isinstance(r, dict)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("story", sorted(CORPUS_INDEX.get("stories", {})))
def test_faces_agree_on_the_export_shape_corpus(story: str, shape: str, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    spec = CORPUS_INDEX["stories"][story]
    month, tz, who = CORPUS_INDEX["month"], CORPUS_INDEX["timezone"], spec.get("billing_practitioner")
    path = _corpus_file(story, shape)
    resources = _as_stored(path)
    pid = next(r["id"] for r in resources if r.get("resourceType") == "Patient")
    m = Month.parse(month)
    app = support_app.make_app(**_config(tmp_path, tz, who, datetime(m.year, m.month, 15, 12, tzinfo=UTC)))
    faces = {
        "cli": _cli(path, month, tz, who, capsys),
        "panel": _panel(app, resources, pid, month),
        "worklist": _worklist(tmp_path, resources, pid, month, tz, who),
    }
    card = _cds(app, resources, pid)
    if card is not None:
        faces["cds"] = card
    assert faces["cli"]["status"] == spec["status"], (faces["cli"], spec["why"])
    disagree = {face: got for face, got in faces.items() if got != faces["cli"]}
    assert not disagree, f"faces disagree with the CLI {faces['cli']}: {disagree}"


# ------------------------------------------------------------- the app's notes (write profile "note")

NOTE_TZ = "America/New_York"


def _note_story(kind: str) -> list[dict[str, Any]]:
    """The corpus's billable March 2026, with a time entry or a consent stop held only as the app's note."""
    from datetime import date
    from zoneinfo import ZoneInfo

    from fhir_mapping.write_consent import ConsentDraft
    from fhir_mapping.write_note import consent_note, time_note
    from fhir_mapping.write_time import TimeEntryDraft
    from tests.support.corpus import load_corpus

    corpus, tz = load_corpus(), ZoneInfo(NOTE_TZ)
    assert corpus.TZ == NOTE_TZ

    def base(**kwargs: Any) -> list[dict[str, Any]]:  # its dateTimes with the zone's offset: valid R4
        text = json.dumps(corpus.base(**kwargs))
        return json.loads(re.sub(r'"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)"', r'"\1-05:00"', text))

    if kind == "time":
        start = datetime(2026, 3, 3, 9, 0, tzinfo=tz)
        text = "Reviewed the glucose log for diabetes; adjusted metformin timing; recheck Friday."
        who = "Practitioner/rn-1"
        draft = TimeEntryDraft("note-1", "p1", who, start, 25, "ccm", "care-coordination", text)
        return [*base(entries=False), {**time_note(draft, start), "id": "doc-1"}]  # the server's id
    when = datetime(2026, 2, 10, 9, 0, tzinfo=tz)
    stop = ConsentDraft("stop-1", "p1", "stopped", when, "Practitioner/rn-1", "Practitioner/dr-a", "verbal",
                        stop_date=date(2026, 2, 10))
    return [*base(), {**consent_note(stop, when), "id": "doc-2"}]


@pytest.mark.parametrize(("kind", "status"), [("time", "ready"), ("stop", "blocked")])
def test_the_apps_notes_count_in_every_face(kind: str, status: str, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    """A time entry (or a consent stop) the EHR holds only as this app's note counts on the worklist, in the
    CLI, on the CDS card and in the packet as on the panel, with no ledger: before, only the panel (and a
    worklist that happened to hold some ledger entry) read the notes, and a stop in a note left the other
    faces saying "ready"."""
    resources = _note_story(kind)
    path = tmp_path / "story.ndjson"
    path.write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in resources))
    app = support_app.make_app(**_config(tmp_path, NOTE_TZ, None, datetime(2026, 3, 15, 12, tzinfo=UTC)))
    faces = {
        "cli": _cli(path, "2026-03", NOTE_TZ, None, capsys),
        "panel": _panel(app, resources, "p1", "2026-03"),
        "worklist": _worklist(tmp_path, resources, "p1", "2026-03", NOTE_TZ, None),
        "packet": _packet(resources, "p1", "2026-03", NOTE_TZ, None),
        "cds": _cds(app, resources, "p1"),
    }
    assert {face: got and got["status"] for face, got in faces.items()} == dict.fromkeys(faces, status)
    assert len({json.dumps(got, sort_keys=True) for got in faces.values()}) == 1, faces
