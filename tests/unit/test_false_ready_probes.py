"""Mutations of a ready month that cms-rules.md says cannot be billed: each must not come out "ready".

Held-out-style probes through `ccm-ready evaluate` (the same use case as every face): one ready patient-month
(tests/support/ccm_scenarios), then one change each that the reference says a payer would deny: visits that do
not qualify (§3.2), consents not in force (§3.3), services that bar CCM (§2), time that does not count (§3.6),
care plans not in effect (§3.4), conditions that do not count (§3.1, §6). Controls that must stay ready too.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from rules.month import Month
from smart_app.cli.commands import main
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import ResourceSource, verdict_for
from tests.support import ccm_scenarios as S

M = "2026-10"
FIRST = datetime(2026, 10, 1, tzinfo=UTC)


def base() -> list[dict[str, Any]]:
    return S.scenario("ready", M, "p1")


def find(res: list[dict[str, Any]], rtype: str, pred: Any = lambda r: True) -> list[dict[str, Any]]:
    return [r for r in res if r["resourceType"] == rtype and pred(r)]


Resources = list[dict[str, Any]]
Mutation = Callable[[Resources], Resources]
cases: dict[str, tuple[Mutation, str]] = {}


def case(name: str, expect: str = "not-ready") -> Callable[[Mutation], Mutation]:
    """Register a mutation of the ready month and what it must give ("not-ready", or "ready" for controls)."""

    def deco(fn: Mutation) -> Mutation:
        cases[name] = (fn, expect)
        return fn

    return deco


@case("baseline", "ready")
def _(r: Resources) -> Resources:
    return r


@case("visit-99211-only")
def _(r: Resources) -> Resources:
    v = find(r, "Encounter", lambda e: e["id"] == "p1-visit")[0]
    v["type"] = [S._cc(S.CPT, "99211")]
    return r


@case("visit-by-other-practitioner")
def _(r: Resources) -> Resources:
    v = find(r, "Encounter", lambda e: e["id"] == "p1-visit")[0]
    v["participant"] = [{"individual": {"reference": "Practitioner/other"}}]
    return r


@case("visit-older-than-1y")
def _(r: Resources) -> Resources:
    v = find(r, "Encounter", lambda e: e["id"] == "p1-visit")[0]
    v["period"] = {"start": "2025-01-10T15:00:00Z", "end": "2025-01-10T15:25:00Z"}
    return r


@case("visit-cancelled")
def _(r: Resources) -> Resources:
    v = find(r, "Encounter", lambda e: e["id"] == "p1-visit")[0]
    v["status"] = "cancelled"
    return r


@case("visit-telephone-99441")
def _(r: Resources) -> Resources:
    v = find(r, "Encounter", lambda e: e["id"] == "p1-visit")[0]
    v["type"] = [S._cc(S.CPT, "99441")]
    return r


@case("consent-after-minutes")
def _(r: Resources) -> Resources:
    c = find(r, "Consent")[0]
    c["dateTime"] = "2026-10-20T10:00:00Z"
    if "provision" in c and "period" in c["provision"]:
        c["provision"]["period"]["start"] = "2026-10-20T10:00:00Z"
    return r


@case("consent-rejected")
def _(r: Resources) -> Resources:
    c = find(r, "Consent")[0]
    c["status"] = "rejected"
    return r


@case("consent-deny-provision")
def _(r: Resources) -> Resources:
    c = find(r, "Consent")[0]
    c.setdefault("provision", {})["type"] = "deny"
    return r


@case("consent-stopped-last-month")
def _(r: Resources) -> Resources:
    c = find(r, "Consent")[0]
    c["status"] = "inactive"
    c.setdefault("provision", {}).setdefault("period", {})["end"] = "2026-09-15"
    return r


@case("other-practitioner-billed-99490")
def _(r: Resources) -> Resources:
    r.append(
        {
            "resourceType": "ChargeItem",
            "id": "ci",
            "status": "billable",
            "code": S._cc(S.CPT, "99490"),
            "subject": {"reference": "Patient/p1"},
            "occurrenceDateTime": "2026-10-10",
            "performer": [{"actor": {"reference": "Practitioner/other"}}],
        }
    )
    return r


@case("g0182-billed")
def _(r: Resources) -> Resources:
    r.append(
        {
            "resourceType": "Claim",
            "id": "cl",
            "status": "active",
            "use": "claim",
            "patient": {"reference": "Patient/p1"},
            "created": "2026-10-20",
            "provider": {"reference": "Practitioner/other"},
            "item": [
                {
                    "sequence": 1,
                    "productOrService": S._cc("http://www.ama-assn.org/go/cpt", "G0182"),
                    "servicedDate": "2026-10-05",
                }
            ],
        }
    )
    return r


@case("inpatient-during-minutes")
def _(r: Resources) -> Resources:
    r.append(
        {
            "resourceType": "Encounter",
            "id": "inp",
            "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2026-10-01T00:00:00Z", "end": "2026-10-31T00:00:00Z"},
        }
    )
    return r


@case("deceased-before-month")
def _(r: Resources) -> Resources:
    p = find(r, "Patient")[0]
    p["deceasedDateTime"] = "2026-09-20"
    return r


@case("conditions-same-category")
def _(r: Resources) -> Resources:
    for c in find(r, "Condition"):
        if c["id"] == "p1-htn":
            c["code"] = {"coding": [{"system": S.ICD10, "code": "E11.65"}], "text": "T2DM w hyperglycemia"}
        if c["id"] == "p1-ckd":
            c["code"] = {"coding": [{"system": S.ICD10, "code": "E11.8"}], "text": "T2DM w complications"}
    return r


@case("time-entry-entered-in-error")
def _(r: Resources) -> Resources:
    for e in find(r, "Encounter", lambda e: e["id"] == "p1-t0"):
        e["status"] = "entered-in-error"
    return r


@case("performer-relatedperson")
def _(r: Resources) -> Resources:
    for e in find(r, "Encounter", lambda e: e["id"].startswith("p1-t")):
        e["participant"] = [{"individual": {"reference": "RelatedPerson/rp"}}]
    for t in find(r, "Task", lambda t: t["id"].startswith("p1-t")):
        t["owner"] = {"reference": "RelatedPerson/rp"}
    return r


@case("minutes-tagged-rpm")
def _(r: Resources) -> Resources:
    for e in find(r, "Encounter", lambda e: e["id"] == "p1-t1"):
        e["type"] = [S._cc(S.CPT, "99457")]
    return r


@case("careplan-proposal")
def _(r: Resources) -> Resources:
    find(r, "CarePlan")[0]["intent"] = "proposal"
    return r


@case("careplan-ended-midmonth")
def _(r: Resources) -> Resources:
    find(r, "CarePlan")[0]["period"]["end"] = "2026-10-15"
    return r


@case("careplan-completed")
def _(r: Resources) -> Resources:
    find(r, "CarePlan")[0]["status"] = "completed"
    return r


@case("condition-abated-before")
def _(r: Resources) -> Resources:
    for c in find(r, "Condition", lambda c: c["id"] == "p1-htn"):
        c["abatementDateTime"] = "2026-08-01"
    for c in find(r, "Condition", lambda c: c["id"] == "p1-ckd"):
        c["abatementString"] = "resolved"
    return r


@case("time-split-month-edge-NY", "not-ready")
def _(r: Resources) -> Resources:
    # both entries at 2026-10-01T02:00Z = Sept 30 22:00 in New York
    for i, e in enumerate(find(r, "Encounter", lambda e: e["id"].startswith("p1-t"))):
        e["period"] = {"start": f"2026-10-01T0{i}:00:00Z", "end": f"2026-10-01T0{i}:{12 + i}:00Z"}
    for i, t in enumerate(find(r, "Task", lambda t: t["id"].startswith("p1-t"))):
        t["executionPeriod"] = {"start": f"2026-10-01T0{i}:00:00Z", "end": f"2026-10-01T0{i}:{12 + i}:00Z"}
    return r


@case("apcm-other-practitioner")
def _(r: Resources) -> Resources:
    r.append(
        {
            "resourceType": "ChargeItem",
            "id": "ap",
            "status": "billed",
            "code": S._cc("https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets", "G0557"),
            "subject": {"reference": "Patient/p1"},
            "occurrenceDateTime": "2026-10-10",
            "performer": [{"actor": {"reference": "Practitioner/other"}}],
        }
    )
    return r


@case("pcm-same-practitioner")
def _(r: Resources) -> Resources:
    r.append(
        {
            "resourceType": "ChargeItem",
            "id": "pc",
            "status": "billed",
            "code": S._cc(S.CPT, "99424"),
            "subject": {"reference": "Patient/p1"},
            "occurrenceDateTime": "2026-10-10",
            "performer": [{"actor": {"reference": S.PRACTITIONER}}],
        }
    )
    return r


@case("ccm-started-long-ago-visit-within-year-of-start", "ready")
def _(r: Resources) -> Resources:
    c = find(r, "Consent")[0]
    c["dateTime"] = "2025-07-01T10:00:00Z"
    if "provision" in c and "period" in c["provision"]:
        c["provision"]["period"]["start"] = "2025-07-01T10:00:00Z"
    v = find(r, "Encounter", lambda e: e["id"] == "p1-visit")[0]
    v["period"] = {"start": "2025-06-01T15:00:00Z", "end": "2025-06-01T15:25:00Z"}
    p = find(r, "CarePlan")[0]
    p["period"]["start"] = "2025-07-02T00:00:00Z"
    p["created"] = "2025-07-02T00:00:00Z"
    return r


@case("superseded-by-other-practitioner-consent")
def _(r: Resources) -> Resources:
    c = copy.deepcopy(find(r, "Consent")[0])
    c["id"] = "c2"
    c["dateTime"] = "2026-10-05T10:00:00Z"
    if "provision" in c and "period" in c["provision"]:
        c["provision"]["period"]["start"] = "2026-10-05T10:00:00Z"
    for a in c.get("provision", {}).get("actor", []):
        a["reference"] = {"reference": "Practitioner/other"}
    r.append(c)
    return r


@case("double-logged-same-interval")
def _(r: Resources) -> Resources:
    e = find(r, "Encounter", lambda e: e["id"] == "p1-t1")[0]
    t = find(r, "Task", lambda t: t["id"] == "p1-t1-task")[0]
    e0 = find(r, "Encounter", lambda e: e["id"] == "p1-t0")[0]
    e["period"] = dict(e0["period"])
    t["executionPeriod"] = dict(e0["period"])
    e["length"]["value"] = 12
    return r


@case("died-before-minutes-in-month")
def _(r: Resources) -> Resources:
    p = find(r, "Patient")[0]
    p["deceasedDateTime"] = "2026-10-02T12:00:00Z"
    return r


@case("died-between-minutes")
def _(r: Resources) -> Resources:
    p = find(r, "Patient")[0]
    p["deceasedDateTime"] = "2026-10-04T12:00:00Z"
    return r


@case("died-after-minutes", "ready")
def _(r: Resources) -> Resources:
    p = find(r, "Patient")[0]
    p["deceasedDateTime"] = "2026-10-20T12:00:00Z"
    return r


ZONES = {"time-split-month-edge-NY": "America/New_York"}


@pytest.mark.parametrize("name", sorted(cases))
def test_a_month_the_payer_would_deny_is_never_ready(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fn, expect = cases[name]
    resources = fn(copy.deepcopy(base()))
    path = tmp_path / f"{name}.json"
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": r} for r in resources]}
    path.write_text(json.dumps(bundle))
    code = main(
        ["evaluate", str(path), "--month", M, "--format", "json", "--timezone", ZONES.get(name, "UTC")]
    )
    assert code == 0
    verdict = json.loads(capsys.readouterr().out)
    blockers = [f["rule"] for f in verdict["findings"] if f["severity"] == "blocker"]
    if expect == "ready":
        assert verdict["status"] == "ready", (name, blockers)
    else:
        assert verdict["status"] != "ready", (name, verdict["codes"])


def test_after_a_death_in_the_month_the_next_step_never_asks_for_more_minutes() -> None:
    resources = base()
    find(resources, "Patient")[0]["deceasedDateTime"] = "2026-10-04T12:00:00Z"  # between the two entries
    verdict = verdict_for(ResourceSource(resources), "p1", EvaluationOptions(Month.parse(M))).verdict
    assert verdict.status == "not-yet"
    assert verdict.next_step.startswith("The patient died this month") and "Log" not in verdict.next_step
