"""The worklist on a real sekmet-fhir: 220 seeded patients covering every status (the demo's crafted cases,
ten times), bulk $export and the search fallback, equality with evaluating each patient alone, filters,
metrics against hand-computed values, mark-as-billed (refusal and retry) and the program page."""

from __future__ import annotations

import json
import re
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from rules.month import Month
from rules.packs import pack_for_month
from rules.verdict import to_json
from smart_app.cli.commands import main as cli_main
from smart_app.fhir.client import FhirClient
from smart_app.program.jobs import WorklistResult, build_worklist
from smart_app.program.mark_billed import BillingRefused, mark_billed
from smart_app.program.metrics import month_metrics
from smart_app.program.worklist import apply_filter
from smart_app.readiness.use_case import patient_month
from tests.support import app as support_app
from tests.support.population import SeededPopulation, seed_population
from tests.support.sekmet import SekmetServer, start_sekmet

pytestmark = pytest.mark.integration

COPIES = 10
MONTH = Month.of(datetime.now(UTC))
READY = {
    "ready-staff",
    "ready-cap",
    "ready-practitioner",
    "ready-complex",
    "rpm-and-ccm",
    "tcm-and-ccm",
    "vague-notes",
    "missing-notes",
}


@pytest.fixture(scope="module")
def server() -> Iterator[SekmetServer]:
    """Our own server: mark-as-billed writes, and the metrics count every patient of the Group."""
    s = start_sekmet()
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture(scope="module")
def client(server: SekmetServer) -> FhirClient:
    return FhirClient(server.base, timeout=60.0)


@pytest.fixture(scope="module")
def pop(client: FhirClient) -> SeededPopulation:
    return seed_population(client, 22 * COPIES, f"wl-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def first(server: SekmetServer, pop: SeededPopulation) -> WorklistResult:
    """The worklist before anything is marked as billed."""
    return build_worklist(server.base, MONTH, group=f"Group/{pop.group_id}", history_months=1)


def by_spec(pop: SeededPopulation, spec: str) -> list[str]:
    return sorted(p for p, s in pop.patients.items() if s == spec)


def normalized(v: dict[str, Any]) -> dict[str, Any]:
    """The verdict JSON with its lists in a canonical order (the server's search order is arbitrary)."""
    v = dict(v)
    v["chronic_conditions"] = sorted(
        ({**c, "evidence": sorted(c["evidence"])} for c in v["chronic_conditions"]),
        key=lambda c: (c["system"], c["code"]),
    )
    v["findings"] = sorted(
        ({**f, "evidence": sorted(f["evidence"])} for f in v["findings"]),
        key=lambda f: (f["rule"], f["evidence"], f["message"]),
    )
    v["skipped"] = sorted(v["skipped"], key=lambda s: (s["resource"], s["reason"]))
    return v


def run_cli(server: SekmetServer, pop: SeededPopulation, tmp: Path, *extra: str) -> list[dict[str, Any]]:
    out = tmp / "rows.json"
    code = cli_main(
        [
            "worklist",
            "--fhir-base",
            server.base,
            "--month",
            str(MONTH),
            "--group",
            f"Group/{pop.group_id}",
            "--format",
            "json",
            "--out",
            str(out),
            "--quiet",
            *extra,
        ]
    )
    assert code == 0
    return json.loads(out.read_text())


def test_cli_worklist_equals_each_patient_alone(server, client, pop, first, tmp_path) -> None:
    rows = run_cli(server, pop, tmp_path)
    assert sorted(r["patient"] for r in rows) == sorted(pop.patients)  # every one has CCM data
    assert Counter(r["status"] for r in rows) == Counter(pop.expected.values())
    for r in rows:
        assert r["status"] == pop.expected[r["patient"]], pop.patients[r["patient"]]
        alone = to_json(patient_month(client, r["patient"].split("/")[1], MONTH, tz="UTC"))
        assert normalized({k: r[k] for k in alone}) == normalized(alone), pop.patients[r["patient"]]


def test_search_fallback_gives_the_same_rows(server, pop, first, tmp_path) -> None:
    bulk = {r.patient: (r.status, r.codes, r.minutes_to_next, r.payment) for r in first.rows}
    assert first.method == "bulk"
    rows = run_cli(server, pop, tmp_path, "--no-bulk")
    searched = {
        r["patient"]: (
            r["status"],
            tuple((c["code"], c["units"]) for c in r["codes"]),
            r["minutes_to_next"],
            Decimal(r["national_payment"]),
        )
        for r in rows
    }
    assert searched == bulk


def test_filters(pop, first) -> None:
    def specs(which: str, **kw: Any) -> Counter[str]:
        return Counter(pop.patients[r.patient] for r in apply_filter(first.rows, which, **kw))

    assert specs("ready") == Counter({s: COPIES for s in READY})
    assert specs("close", n=10) == Counter(
        {"not-yet": COPIES, "consent-mid-month": COPIES, "tcm-and-ccm": COPIES}
    )
    assert {r.minutes_to_next for r in apply_filter(first.rows, "close", n=10)} == {5, 6, 10}
    assert specs("enroll") == Counter({"no-consent": COPIES})
    assert specs("blocked", reason="conflict") == Counter(
        {s: COPIES for s in ("pcm-same", "cpo", "esrd", "billed-elsewhere")}
    )
    assert specs("blocked", reason="care-plan") == Counter({"no-care-plan": COPIES})
    assert specs("blocked", reason="initiating-visit") == Counter(
        {"no-visit": COPIES, "consent-other": COPIES}
    )
    assert specs("blocked", reason="consent") == Counter(
        {"no-consent": COPIES, "consent-declined": COPIES, "consent-stopped": COPIES}
    )


def _payments() -> dict[str, Decimal]:
    pack = pack_for_month(MONTH)
    return {
        c: pack.code(c).payment or Decimal(0) for c in ("99490", "99439", "99491", "99437", "99487", "99489")
    }


def test_metrics_by_hand(first) -> None:
    p = _payments()
    m = month_metrics(first.month, first.rows)
    assert m.patients == 22 * COPIES
    assert m.eligible == 20 * COPIES  # all but one-condition and deceased
    assert m.consented == 17 * COPIES  # minus no-consent, declined, stopped
    # billed-elsewhere (99490 by Dr. Chen) is a conflict on that row, not a claim of ours: not "billed"
    assert m.billed == 0
    assert m.consent_rate == Decimal("0.8500")
    assert dict(m.minutes_histogram) == {
        "0": 0,
        "1-19": 2 * COPIES,
        "20-39": 12 * COPIES,
        "40-59": 0,
        "60+": 3 * COPIES,
    }
    assert (m.entries, m.entries_with_warnings) == (33 * COPIES, 4 * COPIES)
    assert m.warning_share == Decimal("0.1212")
    per_copy = (
        5 * p["99490"]
        + (p["99490"] + 2 * p["99439"])
        + (p["99491"] + 2 * p["99437"])
        + (p["99487"] + p["99489"])
    )
    assert m.expected_revenue == COPIES * per_copy
    assert m.billed_revenue == Decimal(0)
    assert list(first.history) == [str(MONTH.previous())]


def test_mark_billed_refusal_and_retry(server, client, pop, first) -> None:
    staff = by_spec(pop, "ready-staff")[0].split("/")[1]
    done = mark_billed(client, staff, MONTH)
    assert done.created and done.codes == (("99490", 1),) and len(done.charge_items) == 1
    again = mark_billed(client, staff, MONTH)  # a retry writes nothing
    assert not again.created and again.charge_items == done.charge_items
    ident = f"https://ccm-ready.org/fhir/identifier/charge|{staff}|{MONTH}|99490"
    assert len(client.search("ChargeItem", {"identifier": ident})) == 1
    assert (
        len(
            [
                p
                for p in client.search("Provenance", {"_count": "1000"})
                if {"reference": done.charge_items[0]} in p.get("target", [])
            ]
        )
        == 1
    )

    with pytest.raises(BillingRefused) as other:  # Dr. Chen billed 99490 this month
        mark_billed(client, by_spec(pop, "billed-elsewhere")[0].split("/")[1], MONTH)
    assert other.value.reason == "already-billed"
    with pytest.raises(BillingRefused) as not_ready:
        mark_billed(client, by_spec(pop, "not-yet")[0].split("/")[1], MONTH)
    assert not_ready.value.reason == "not-ready"

    # A CCM claim the same practitioner entered by hand (not ours) also refuses.
    cap = by_spec(pop, "ready-cap")[0]
    practitioner = next(r for r in first.rows if r.patient == cap).verdict["billing_practitioner"]
    start = datetime(MONTH.year, MONTH.month, 2, 12, tzinfo=UTC).isoformat()
    client.create(
        {
            "resourceType": "ChargeItem",
            "status": "billed",
            "subject": {"reference": cap},
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "99490"}]},
            "occurrenceDateTime": start,
            "performer": [{"actor": {"reference": practitioner}}],
        }
    )
    with pytest.raises(BillingRefused, match="already billed"):
        mark_billed(client, cap.split("/")[1], MONTH)

    after = build_worklist(server.base, MONTH, group=f"Group/{pop.group_id}")
    rows = {r.patient: r for r in after.rows}
    assert rows[f"Patient/{staff}"].billed_codes == (("99490", 1),)
    assert f"Patient/{staff}" not in {r.patient for r in apply_filter(after.rows, "ready")}
    m = month_metrics(after.month, after.rows)
    assert m.billed == 2  # ours + the one the same practitioner entered by hand
    assert m.billed_revenue == 2 * _payments()["99490"]


def _wait(http: Any, query: dict[str, str]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        state = http.get("/program/status", query_string=query).get_json()["state"]
        if state in ("done", "error"):
            assert state == "done"
            return
        time.sleep(0.3)
    raise AssertionError("the worklist job did not finish")


def test_program_page(server, pop, first, tmp_path) -> None:
    app = support_app.make_app(
        tmp_path,
        SECRET_KEY="t",
        TIMEZONE="UTC",
        PROGRAM_FHIR_BASE=server.base,
        OPEN_SERVERS=[server.base],  # public test data: the page needs no sign-in
    )
    http = app.test_client()
    query = {"month": str(MONTH), "group": f"Group/{pop.group_id}"}
    first_page = http.get("/program", query_string=query)
    assert first_page.status_code == 200
    _wait(http, query)
    page = http.get("/program", query_string={**query, "filter": "ready"}).get_data(as_text=True)
    ready_rows = re.findall(r'<tr class="state-ready[^"]*" data-patient="(Patient/[^"]+)"', page)
    fresh = build_worklist(server.base, MONTH, group=f"Group/{pop.group_id}")
    assert sorted(ready_rows) == sorted(r.patient for r in apply_filter(fresh.rows, "ready"))
    assert len(ready_rows) >= len(READY) * COPIES - 2  # at most two were billed by the test above
    assert 'id="chart-funnel"' in page and "consent rate = consented / eligible" in page
    csv_text = http.get("/program.csv", query_string={**query, "filter": "enroll"}).get_data(as_text=True)
    assert csv_text.count("\n") == 1 + COPIES and "no-consent" not in csv_text
    blocked = http.get("/program", query_string={**query, "filter": "blocked", "reason": "conflict"})
    # + the two patients billed by the test above (already billed this month by the same practitioner)
    assert 4 * COPIES <= blocked.get_data(as_text=True).count('<tr class="state-blocked') <= 4 * COPIES + 2

    token = re.search(r'name="csrf_token" value="([^"]+)"', page).group(1)
    target = ready_rows[0]
    refused = http.post("/program/mark-billed", query_string=query, data={"patient": target})
    assert refused.status_code == 400  # no CSRF token
    confirm = http.post(
        "/program/mark-billed", query_string=query, data={"patient": target, "csrf_token": token}
    )
    assert confirm.status_code == 200 and "Mark as billed?" in confirm.get_data(as_text=True)
    yes = {"patient": target, "csrf_token": token, "confirm": "yes"}
    resp = http.post("/program/mark-billed", query_string=query, data=yes)
    assert resp.status_code == 303
    assert parse_qs(urlsplit(resp.headers["Location"]).query)["notice"][0].startswith("Marked as billed for ")
    again = http.post("/program/mark-billed", query_string=query, data=yes)
    assert "was already marked as billed" in parse_qs(urlsplit(again.headers["Location"]).query)["notice"][0]
    shown = http.get(again.headers["Location"]).get_data(as_text=True)
    assert "was already marked as billed" in shown


def test_patient_level_export_and_resume_on_sekmet(server, pop, first, tmp_path) -> None:
    from smart_app.fhir.bulk_export import STATE_FILE, BulkExporter, ExportRequest

    rows = run_cli(server, pop, tmp_path)  # Group level, as above
    everyone = tmp_path / "all.json"
    assert (
        cli_main(
            [
                "worklist",
                "--fhir-base",
                server.base,
                "--month",
                str(MONTH),
                "--format",
                "json",
                "--out",
                str(everyone),
                "--quiet",
            ]
        )
        == 0
    )
    all_rows = json.loads(everyone.read_text())
    assert {r["patient"] for r in rows} <= {r["patient"] for r in all_rows}  # our server: only our patients

    folder = tmp_path / "export"
    done = BulkExporter(server.base).run(ExportRequest(level="group", group=pop.group_id), folder)
    state = json.loads((folder / STATE_FILE).read_text())
    url, name = next(iter(state["complete"].items()))
    original = (folder / name).read_bytes()
    del state["complete"][url]  # as if the run had stopped while downloading this file
    (folder / STATE_FILE).write_text(json.dumps(state))
    (folder / name).unlink()
    again = BulkExporter(server.base)
    resumed = again.run(ExportRequest(level="group", group=pop.group_id), folder)
    assert resumed.resumed and again.requests_made == 1  # no kick-off, no polling: one download
    assert (folder / name).read_bytes() == original and len(resumed.files) == len(done.files)
