"""Write the export-shape corpus: tests/data/corpus/<story>.<shape>.json|ndjson and stories.json.

Each story is one clinical patient-month, written once in a neutral form (relative references, local
wall-clock times in the story's zone) and rendered in the shapes real servers export:

- epic:   searchset with match/include/outcome entries, absolute URLs, people via PractitionerRole,
          times in UTC (Z), unknown extensions, local code systems beside the standard ones;
- oracle: searchset, versioned references (`Type/id/_history/n`), people by NPI identifier only,
          times with the local offset, a local code system on conditions;
- athena: searchset, relative references, people as contained Practitioners (`#id`) carrying the NPI,
          times without an offset (read in the practice zone);
- hapi:   transaction with `urn:uuid` fullUrls and references, resources without ids, POST requests;
- ndjson: a bulk-export NDJSON file, people via versioned relative references, times in UTC.

Every shape of a story must give the same verdict (tests/unit/test_reader_export_shapes.py). Run
`python tests/data/make_corpus.py` after changing a story; the output files are committed.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

OUT = Path(__file__).resolve().parent / "corpus"
TZ = "America/New_York"
MONTH = "2026-03"

CARE_PROGRAM = "https://ccm-ready.org/fhir/CodeSystem/care-program"
CARE_ACTIVITY = "https://ccm-ready.org/fhir/CodeSystem/care-activity"
DISCLOSURE_SYSTEM = "https://ccm-ready.org/fhir/CodeSystem/ccm-disclosure"
DISCLOSURE_EXT = "https://ccm-ready.org/fhir/StructureDefinition/ccm-disclosure"
METHOD_EXT = "https://ccm-ready.org/fhir/StructureDefinition/consent-method"
ICD10 = "http://hl7.org/fhir/sid/icd-10-cm"
CPT = "http://www.ama-assn.org/go/cpt"
NPI = "http://hl7.org/fhir/sid/us-npi"
ACT_CODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
DISCLOSURES = ("ccm-available", "cost-sharing", "one-practitioner", "right-to-stop")
NOTE = "Reviewed home glucose log; adjusted metformin timing; reinforced foot checks; follow-up call Friday."
NPIS = {"dr-a": "1234567893", "dr-b": "1245319599", "rn-1": "1679576722"}
EPIC_BASE = "https://fhir.epic.example/api/FHIR/R4"
EPIC_LOCAL = "urn:oid:1.2.840.114350.1.13.861.1.7.2.696580"
ORACLE_LOCAL = "https://fhir.cerner.com/ec2458f2-1e24-41c8-b71b-0e701af7583d/codeSet/72"
_LOCAL_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}$")


def ref(key: str) -> dict[str, str]:
    return {"reference": key}


def concept(system: str, code: str, display: str = "") -> dict[str, Any]:
    coding = {"system": system, "code": code, **({"display": display} if display else {})}
    return {"coding": [coding], **({"text": display} if display else {})}


# ---- the neutral story ---------------------------------------------------------------------------


def practitioner(pid: str, family: str) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner",
        "id": pid,
        "identifier": [{"system": NPI, "value": NPIS[pid]}],
        "name": [{"family": family}],
    }


def condition(cid: str, code: str | None, text: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": "Condition",
        "id": cid,
        "clinicalStatus": concept("http://terminology.hl7.org/CodeSystem/condition-clinical", "active"),
        "verificationStatus": concept(
            "http://terminology.hl7.org/CodeSystem/condition-ver-status", "confirmed"
        ),
        "code": concept(ICD10, code, text) if code else {"text": text},
        "subject": ref("Patient/p1"),
        "onsetDateTime": "2019-03-01",
        **extra,
    }


def consent(
    cid: str = "consent-1",
    *,
    status: str = "active",
    when: str | None = "2026-01-05T10:00:00",
    who: str = "dr-a",
    period: dict[str, str] | None = None,
) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Consent",
        "id": cid,
        "status": status,
        "extension": [{"url": METHOD_EXT, "valueCode": "verbal"}]
        + [
            {"url": DISCLOSURE_EXT, "valueCoding": {"system": DISCLOSURE_SYSTEM, "code": d}}
            for d in DISCLOSURES
        ],
        "scope": concept("http://terminology.hl7.org/CodeSystem/consentscope", "treatment"),
        "category": [concept("http://loinc.org", "59284-0", "Patient Consent"), concept(CARE_PROGRAM, "ccm")],
        "patient": ref("Patient/p1"),
        "performer": [ref("Practitioner/rn-1")],
        "policyRule": concept(ACT_CODE, "OPTIN"),
        "provision": {
            "type": "permit",
            "actor": [{"role": concept(PARTICIPATION, "PPRF"), "reference": ref(f"Practitioner/{who}")}],
        },
    }
    if when:
        res["dateTime"] = when
    if period:
        res["provision"]["period"] = period
    return res


def care_plan(intent: str = "plan") -> dict[str, Any]:
    return {
        "resourceType": "CarePlan",
        "id": "plan-1",
        "status": "active",
        "intent": intent,
        "category": [concept(CARE_PROGRAM, "ccm")],
        "subject": ref("Patient/p1"),
        "period": {"start": "2026-01-05"},
        "created": "2026-01-05T10:15:00",
        "author": ref("Practitioner/dr-a"),
    }


def time_entry(
    eid: str,
    start: str,
    end: str,
    minutes: int | None,
    *,
    who: str = "Practitioner/rn-1",
    codes: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    enc: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": eid,
        "status": "finished",
        "class": {"system": ACT_CODE, "code": "VR"},
        "type": [concept(CARE_PROGRAM, "ccm"), *(concept(CPT, c) for c in codes)],
        "subject": ref("Patient/p1"),
        "participant": [{"individual": ref(who)}],
        "period": {"start": start, "end": end},
    }
    if minutes is not None:
        enc["length"] = {
            "value": minutes,
            "unit": "min",
            "system": "http://unitsofmeasure.org",
            "code": "min",
        }
    task = {
        "resourceType": "Task",
        "id": f"task-{eid}",
        "status": "completed",
        "intent": "order",
        "code": concept(CARE_ACTIVITY, "care-coordination"),
        "for": ref("Patient/p1"),
        "encounter": ref(f"Encounter/{eid}"),
        "owner": ref(who),
        "executionPeriod": {"start": start, "end": end},
        "note": [{"text": NOTE}],
    }
    return [enc, task]


def base(*, conditions: list[dict[str, Any]] | None = None, entries: bool = True) -> list[dict[str, Any]]:
    """A billable March 2026 (America/New_York): 2 chronic conditions, consent, plan, visit, 25 minutes."""
    out: list[dict[str, Any]] = [
        {
            "resourceType": "Patient",
            "id": "p1",
            "name": [{"family": "Shape", "given": ["Story"]}],
            "birthDate": "1950-04-12",
            "generalPractitioner": [ref("Practitioner/dr-a")],
        },
        practitioner("dr-a", "Alpha"),
        practitioner("dr-b", "Beta"),
        practitioner("rn-1", "Nurse"),
        *(
            conditions
            if conditions is not None
            else [
                condition("c-dm", "E11.9", "Type 2 diabetes mellitus without complications"),
                condition("c-htn", "I10", "Essential (primary) hypertension"),
            ]
        ),
        consent(),
        care_plan(),
        {
            "resourceType": "Communication",
            "id": "plan-shared-1",
            "status": "completed",
            "subject": ref("Patient/p1"),
            "about": [ref("CarePlan/plan-1")],
            "sent": "2026-01-06T09:00:00",
        },
        {
            "resourceType": "Encounter",
            "id": "visit-1",
            "status": "finished",
            "class": {"system": ACT_CODE, "code": "AMB"},
            "type": [concept(CPT, "99214")],
            "subject": ref("Patient/p1"),
            "participant": [{"individual": ref("Practitioner/dr-a")}],
            "period": {"start": "2025-12-10T10:00:00", "end": "2025-12-10T10:30:00"},
        },
        {
            "resourceType": "Task",
            "id": "attest-risk",
            "status": "completed",
            "intent": "order",
            "code": concept(CARE_ACTIVITY, "risk-attestation"),
            "for": ref("Patient/p1"),
            "owner": ref("Practitioner/dr-a"),
            "executionPeriod": {"start": "2026-01-05T10:30:00", "end": "2026-01-05T10:30:00"},
        },
    ]
    if entries:
        out += time_entry("te-1", "2026-03-03T09:00:00", "2026-03-03T09:25:00", 25)
    return out


def replace_resource(resources: list[dict[str, Any]], new: dict[str, Any]) -> list[dict[str, Any]]:
    key = (new["resourceType"], new["id"])
    return [new if (r["resourceType"], r["id"]) == key else r for r in resources]


def claim(rtype: str, cid: str, code: str, when: str, who: str, **extra: Any) -> dict[str, Any]:
    return {
        "resourceType": rtype,
        "id": cid,
        "status": "active",
        "use": "claim",
        "patient": ref("Patient/p1"),
        "created": when + "T12:00:00",
        "provider": ref("Organization/clinic"),
        "careTeam": [{"sequence": 1, "provider": ref(f"Practitioner/{who}")}],
        "item": [
            {
                "sequence": 1,
                "careTeamSequence": [1],
                "productOrService": concept(CPT, code),
                "servicedDate": when,
            }
        ],
        **extra,
    }


def stories() -> dict[str, dict[str, Any]]:
    """name -> {resources, expected, billing_practitioner?}; expectations follow cms-rules.md."""
    s: dict[str, dict[str, Any]] = {}
    s["ready-99490"] = {
        "resources": base(),
        "status": "ready",
        "codes": [["99490", 1]],
        "staff": 25,
        "rules": [],
        "why": "§3, §4: every prerequisite met, 25 staff minutes",
    }
    dst = base(entries=False)
    dst += time_entry("te-dst", "2026-03-08T01:50:00", "2026-03-08T03:05:00", None)  # 15 real minutes
    dst += time_entry("te-2", "2026-03-10T09:00:00", "2026-03-10T09:10:00", 10)
    s["dst-real-minutes"] = {
        "resources": dst,
        "status": "ready",
        "codes": [["99490", 1]],
        "staff": 25,
        "rules": [],
        "why": "§3.6: real minutes across the DST change (15, not 75)",
    }
    late = [
        *base(),
        consent(
            "consent-stop",
            status="inactive",
            when="2026-03-20T11:00:00",
            period={"start": "2026-01-05", "end": "2026-02-14"},
        ),
    ]
    s["late-recorded-stop"] = {
        "resources": late,
        "status": "blocked",
        "codes": [],
        "staff": 0,
        "rules": ["consent.stopped"],
        "why": "§3.3: a stop stated for Feb ends CCM with Feb",
    }
    sup = [*base(), consent("consent-b", when="2026-02-20T09:00:00", who="dr-b")]
    s["superseded-consent"] = {
        "resources": sup,
        "billing_practitioner": "dr-a",
        "status": "blocked",
        "codes": [],
        "staff": 0,
        "rules": ["consent.other-practitioner"],
        "why": "§3.3: a consent naming dr-b ends dr-a's coverage",
    }
    billed = [
        *base(),
        claim("Claim", "claim-1", "99490", "2026-03-02", "dr-a"),
        claim(
            "ExplanationOfBenefit",
            "eob-1",
            "99490",
            "2026-03-02",
            "dr-a",
            outcome="complete",
            claim=ref("Claim/claim-1"),
        ),
    ]
    s["already-billed-claim"] = {
        "resources": billed,
        "status": "blocked",
        "codes": [],
        "staff": 25,
        "rules": ["conflict.already-billed"],
        "why": "§2, §5.3: CCM once per month",
    }
    rp = [*base(entries=False), {"resourceType": "RelatedPerson", "id": "rp-1", "patient": ref("Patient/p1")}]
    rp += time_entry("te-rp", "2026-03-03T09:00:00", "2026-03-03T09:25:00", 25, who="RelatedPerson/rp-1")
    s["related-person-time"] = {
        "resources": rp,
        "status": "not-yet",
        "codes": [],
        "staff": 0,
        "rules": ["time.not-staff"],
        "why": "§3.6: only clinical staff time counts",
    }
    text = base(
        conditions=[
            condition("c-dm", "E11.9", "Type 2 diabetes mellitus without complications"),
            condition("c-frail", None, "Frailty and recurrent falls"),
        ]
    )
    s["text-only-condition"] = {
        "resources": text,
        "status": "not-eligible",
        "codes": [],
        "staff": 25,
        "rules": ["eligibility.chronic-conditions", "eligibility.uncoded-condition"],
        "why": "§3.1, §6: an uncoded condition cannot be classified",
    }
    s["cds-proposal-plan"] = {
        "resources": replace_resource(base(), care_plan("proposal")),
        "status": "blocked",
        "codes": [],
        "staff": 25,
        "rules": ["care-plan.missing"],
        "why": "§3.4: a CDS proposal is not an established care plan",
    }
    rpm = base(entries=False) + time_entry(
        "te-rpm", "2026-03-03T09:00:00", "2026-03-03T09:25:00", 25, codes=("99457",)
    )
    s["rpm-coded-time"] = {
        "resources": rpm,
        "status": "not-yet",
        "codes": [],
        "staff": 0,
        "rules": ["time.other-program"],
        "why": "§3.6: RPM minutes never count for CCM",
    }
    period_only = replace_resource(base(), consent(when=None, period={"start": "2026-01-05"}))
    s["consent-period-only"] = {
        "resources": period_only,
        "status": "ready",
        "codes": [["99490", 1]],
        "staff": 25,
        "rules": [],
        "why": "§3.3: a consent dated by its period is dated",
    }
    aged = base(
        conditions=[
            condition("c-dm", "E11.9", "Type 2 diabetes mellitus without complications"),
            condition(
                "c-htn",
                "I10",
                "Essential (primary) hypertension",
                abatementAge={
                    "value": 70,
                    "unit": "years",
                    "system": "http://unitsofmeasure.org",
                    "code": "a",
                },
            ),
        ]
    )
    s["abated-by-age"] = {
        "resources": aged,
        "status": "not-eligible",
        "codes": [],
        "staff": 25,
        "rules": ["eligibility.chronic-conditions"],
        "why": "§6: abated at age 70 (2020)",
    }
    return s


# ---- shapes --------------------------------------------------------------------------------------


def _uuid(key: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"ccm-ready-corpus/{key}"))


def _local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(TZ))


TIMES = {
    "epic": lambda t: _local(t).astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z"),
    "oracle": lambda t: _local(t).isoformat(),
    "athena": lambda t: t,
    "hapi": lambda t: _local(t).isoformat(),
    "ndjson": lambda t: _local(t).astimezone(ZoneInfo("UTC")).isoformat().replace("+00:00", "Z"),
}


def _generic(shape: str, key: str) -> str:
    if shape == "epic":
        return f"{EPIC_BASE}/{key}"
    if shape == "oracle":
        return f"{key}/_history/1"
    if shape == "hapi":
        return f"urn:uuid:{_uuid(key)}"
    return key


def _walk(node: Any, shape: str, owner: dict[str, Any], contained: dict[str, str]) -> Any:
    if isinstance(node, dict):
        out: dict[str, Any] = {}
        for k, v in node.items():
            if k == "reference" and isinstance(v, str) and "/" in v:
                out.update(_reference(v, shape, owner, contained))
            else:
                out[k] = _walk(v, shape, owner, contained)
        return out
    if isinstance(node, list):
        return [_walk(v, shape, owner, contained) for v in node]
    if isinstance(node, str) and _LOCAL_TIME.match(node):
        return TIMES[shape](node)
    return node


def _reference(key: str, shape: str, owner: dict[str, Any], contained: dict[str, str]) -> dict[str, Any]:
    rtype, rid = key.split("/", 1)
    if rtype != "Practitioner":
        return {"reference": _generic(shape, key)}
    if shape == "epic":
        return {"reference": f"{EPIC_BASE}/PractitionerRole/role-{rid}"}
    if shape == "oracle":
        return {"identifier": {"system": NPI, "value": NPIS[rid]}, "display": f"Practitioner {rid}"}
    if shape == "athena":
        local = contained.setdefault(rid, f"pr{len(contained) + 1}")
        return {"reference": f"#{local}"}
    if shape == "hapi":
        return {"reference": f"urn:uuid:{_uuid(key)}"}
    return {"reference": f"{key}/_history/2"}


def _dress(res: dict[str, Any], shape: str) -> dict[str, Any]:
    """Vendor decoration: unknown extensions and local codings beside the standard ones."""
    res = copy.deepcopy(res)
    if shape == "epic":
        res.setdefault("extension", []).append(
            {
                "url": "http://open.epic.com/FHIR/StructureDefinition/extension/legal-sex",
                "valueCodeableConcept": {
                    "coding": [
                        {
                            "system": "urn:oid:1.2.840.114350.1.13.861.1.7.10.698084.130.657370.19999000",
                            "code": "female",
                        }
                    ]
                },
            }
        )
        if res["resourceType"] == "Condition" and "coding" in res["code"]:
            res["code"]["coding"].insert(
                0, {"system": EPIC_LOCAL, "code": "1234" + res["id"][-2:], "display": "EPIC DX"}
            )
        if res["resourceType"] == "Encounter":
            res["type"].append({"coding": [{"system": EPIC_LOCAL, "code": "101", "display": "Office Visit"}]})
    if shape == "oracle" and res["resourceType"] == "Condition" and "coding" in res["code"]:
        res["code"]["coding"].append({"system": ORACLE_LOCAL, "code": "99887766", "userSelected": True})
    if shape == "oracle":
        res["meta"] = {"versionId": "1", "lastUpdated": "2026-03-31T12:00:00Z"}
    return res


def render(resources: list[dict[str, Any]], shape: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for res in resources:
        contained: dict[str, str] = {}
        body = _walk(_dress(res, shape), shape, res, contained)
        if contained:
            body["contained"] = [
                {
                    "resourceType": "Practitioner",
                    "id": local,
                    "identifier": [{"system": NPI, "value": NPIS[pid]}],
                }
                for pid, local in contained.items()
            ]
        out.append(body)
    if shape == "epic":
        for pid in sorted({r["id"] for r in resources if r["resourceType"] == "Practitioner"}):
            out.append(
                {
                    "resourceType": "PractitionerRole",
                    "id": f"role-{pid}",
                    "active": True,
                    "practitioner": {"reference": f"{EPIC_BASE}/Practitioner/{pid}"},
                    "organization": {"reference": f"{EPIC_BASE}/Organization/clinic"},
                }
            )
    return out


def bundle(name: str, shape: str, resources: list[dict[str, Any]]) -> dict[str, Any]:
    if shape == "hapi":
        entries = []
        for res in resources:
            key = f"{res['resourceType']}/{res['id']}"
            body = {k: v for k, v in res.items() if k != "id"}
            entries.append(
                {
                    "fullUrl": f"urn:uuid:{_uuid(key)}",
                    "resource": body,
                    "request": {"method": "POST", "url": res["resourceType"]},
                }
            )
        return {"resourceType": "Bundle", "type": "transaction", "entry": entries}
    entries = []
    for res in resources:
        key = f"{res['resourceType']}/{res['id']}"
        mode = (
            "include"
            if res["resourceType"] in ("Practitioner", "PractitionerRole", "RelatedPerson")
            else "match"
        )
        url = f"{EPIC_BASE}/{key}" if shape == "epic" else f"https://fhir.{shape}.example/r4/{key}"
        entries.append({"fullUrl": url, "resource": res, "search": {"mode": mode}})
    if shape == "epic":
        entries.append(
            {
                "resource": {
                    "resourceType": "OperationOutcome",
                    "issue": [
                        {
                            "severity": "warning",
                            "code": "processing",
                            "diagnostics": "Some results may be restricted.",
                        }
                    ],
                },
                "search": {"mode": "outcome"},
            }
        )
    return {
        "resourceType": "Bundle",
        "id": f"{name}-{shape}",
        "type": "searchset",
        "total": len(resources),
        "link": [{"relation": "self", "url": f"https://fhir.{shape}.example/r4/Patient/p1/$everything"}],
        "entry": entries,
    }


SHAPES = ("epic", "oracle", "athena", "hapi")


def main() -> None:
    OUT.mkdir(exist_ok=True)
    for old in OUT.glob("*.*json"):
        old.unlink()
    index: dict[str, Any] = {}
    for name, story in stories().items():
        for shape in SHAPES:
            data = bundle(name, shape, render(story["resources"], shape))
            (OUT / f"{name}.{shape}.json").write_text(json.dumps(data, indent=1) + "\n")
        lines = [json.dumps(r) for r in render(story["resources"], "ndjson")]
        (OUT / f"{name}.ndjson").write_text("\n".join(lines) + "\n")
        expected = {k: v for k, v in story.items() if k != "resources"}
        if "billing_practitioner" in expected:
            expected["billing_practitioner"] = (
                f"Practitioner?identifier={NPI}|{NPIS[expected['billing_practitioner']]}"
            )
        index[name] = expected
    (OUT / "stories.json").write_text(
        json.dumps({"month": MONTH, "timezone": TZ, "stories": index}, indent=1) + "\n"
    )


if __name__ == "__main__":
    main()
