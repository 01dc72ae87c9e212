"""What a reviewer reads in an audit packet: table rows from the facts and verdict, and the
Composition sections (XHTML narrative + entry references) built from them. Everything escaped."""

from __future__ import annotations

import html
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from datetime import datetime, tzinfo
from typing import Any

from rules.month import Month, zone
from rules.records import PatientFacts
from rules.verdict import Verdict

XHTML = "http://www.w3.org/1999/xhtml"
SECTION_SYSTEM = "https://ccm-ready.org/fhir/CodeSystem/packet-section"
CANONICALISATION = (
    "SHA-256 of each resource's canonical JSON: keys sorted at every level, separators ',' and ':' "
    "with no whitespace, UTF-8, non-ASCII characters not escaped (Python json.dumps(sort_keys=True, "
    "separators=(',', ':'), ensure_ascii=False))."
)
_FORBIDDEN = {
    "script",
    "style",
    "iframe",
    "object",
    "embed",
    "form",
    "input",
    "button",
    "base",
    "link",
    "meta",
}

Row = tuple[str, ...]


def when(moment: datetime | None, tz: tzinfo, with_time: bool = True) -> str:
    if moment is None:
        return "-"
    local = moment.astimezone(tz) if moment.tzinfo else moment
    return local.strftime("%Y-%m-%d %H:%M %Z" if with_time else "%Y-%m-%d").strip()


def condition_rows(verdict: Verdict, facts: PatientFacts) -> list[Row]:
    if verdict.conditions_reviewed:
        return [
            (r.evidence, r.display, f"{r.code}", "chronic" if r.chronic else "not chronic", r.reason)
            for r in verdict.conditions_reviewed
        ]
    chronic = {e for c in verdict.chronic_conditions for e in c.evidence}
    return [
        (
            c.id,
            c.text or (c.codings[0].display if c.codings else ""),
            c.codings[0].code if c.codings else "",
            "chronic" if c.id in chronic else "not chronic",
            c.clinical_status or "",
        )
        for c in facts.conditions
    ]


def consent_rows(facts: PatientFacts, tz: tzinfo) -> list[Row]:
    return [
        (
            c.id,
            c.status,
            ", ".join(c.programs),
            when(c.obtained_at, tz),
            c.method or "-",
            c.billing_practitioner or "-",
            c.obtained_by or "-",
            ", ".join(sorted(c.disclosures)) or "none recorded",
            when(c.stop_date, tz, False),
        )
        for c in facts.consents
    ]


def plan_rows(facts: PatientFacts, tz: tzinfo) -> list[Row]:
    return [
        (
            p.id,
            p.status,
            ", ".join(p.programs) or "-",
            when(p.period_start, tz, False),
            when(p.period_end, tz, False),
            when(p.created, tz, False),
            p.author or "-",
            when(p.last_reviewed, tz, False),
            when(p.shared_with_patient_at, tz, False),
        )
        for p in facts.care_plans
    ]


def visit_rows(facts: PatientFacts, tz: tzinfo) -> list[Row]:
    return [
        (v.id, v.status, ", ".join(c.code for c in v.codings), when(v.start, tz), ", ".join(v.participants))
        for v in facts.visits
    ]


def time_rows(facts: PatientFacts, month: Month, tz: tzinfo) -> list[Row]:
    start, end = month.bounds(tz)
    rows: list[Row] = []
    for t in sorted(facts.time_entries, key=lambda t: t.start):
        if t.end < start or t.start >= end:
            continue
        rows.append(
            (
                t.id,
                when(t.start, tz),
                when(t.end, tz),
                f"{t.minutes:g}",
                t.program,
                t.status,
                t.performer or "-",
                ", ".join(a.code for a in t.activities) or "-",
                " | ".join(t.notes) or "(no documentation)",
            )
        )
    return rows


def billed_rows(facts: PatientFacts, tz: tzinfo) -> list[Row]:
    return [
        (b.id, b.code, str(b.units), b.status, when(b.start, tz, False), b.performer or "-")
        for b in facts.billed
    ]


def finding_rows(verdict: Verdict) -> list[Row]:
    return [
        (f"{f.severity}: {f.rule}", f.message, f.citation, ", ".join(f.evidence) or "-")
        for f in verdict.findings
    ]


def code_rows(verdict: Verdict) -> list[Row]:
    return [
        (c.code, c.label, str(c.units), f"${c.payment_each}" if c.payment_each is not None else "-")
        for c in verdict.codes
    ]


HEADERS: dict[str, Row] = {
    "conditions": ("Resource", "Condition", "Code", "Classified", "Reason"),
    "consents": (
        "Resource",
        "Status",
        "Programs",
        "Obtained",
        "Method",
        "Billing practitioner",
        "Obtained by",
        "Disclosures",
        "Stop date",
    ),
    "plans": (
        "Resource",
        "Status",
        "Programs",
        "Start",
        "End",
        "Created",
        "Author",
        "Last reviewed",
        "Shared with patient",
    ),
    "visits": ("Resource", "Status", "Codes", "Date", "Participants"),
    "time": (
        "Resource",
        "Start",
        "End",
        "Minutes",
        "Program",
        "Status",
        "Performer",
        "Activities",
        "Documentation",
    ),
    "billed": ("Resource", "Code", "Units", "Status", "Date", "Performer"),
    "findings": ("Rule", "Finding", "Citation", "Evidence"),
    "codes": ("Code", "Label", "Units", "National non-facility each"),
    "hashes": ("Entry", "Resource", "SHA-256"),
}


def table(headers: Row, rows: Sequence[Row], empty: str = "None recorded.") -> str:
    if not rows:
        return f"<p>{html.escape(empty)}</p>"
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _div(inner: str) -> dict[str, str]:
    return {"status": "generated", "div": f'<div xmlns="{XHTML}">{inner}</div>'}


def _section(
    code: str, title: str, inner: str, refs: Sequence[str], url_of: dict[str, str]
) -> dict[str, Any]:
    section: dict[str, Any] = {
        "title": title,
        "code": {"coding": [{"system": SECTION_SYSTEM, "code": code}]},
        "text": _div(inner),
    }
    urls = list(dict.fromkeys(url_of[r] for r in refs if r in url_of))
    if urls:
        section["entry"] = [{"reference": u} for u in urls]
    else:
        section["emptyReason"] = {
            "coding": [
                {"system": "http://terminology.hl7.org/CodeSystem/list-empty-reason", "code": "nilknown"}
            ]
        }
    return section


def verdict_summary(verdict: Verdict) -> str:
    nt = verdict.next_threshold
    parts = [
        f"Status: {verdict.status}",
        f"clinical staff minutes {verdict.minutes.clinical_staff}",
        f"billing practitioner minutes {verdict.minutes.billing_practitioner}",
    ]
    if verdict.codes:
        parts.append("codes " + ", ".join(f"{c.code} x{c.units}" for c in verdict.codes))
    if nt:
        parts.append(f"next: {nt.minutes_needed} more minutes for {nt.code}")
    parts.append(f"policy {verdict.policy} {verdict.policy_version}; time zone {verdict.timezone}")
    return "; ".join(parts) + "."


def sections(
    verdict: Verdict,
    facts: PatientFacts,
    month: Month,
    url_of: dict[str, str],
    hashes: Sequence[tuple[str, str, str]],
) -> list[dict[str, Any]]:
    """The Composition sections, each citing the resources it describes."""
    tz = zone(verdict.timezone)
    esc = html.escape
    chronic = (
        "; ".join(sorted({c.condition_label or c.display for c in verdict.chronic_conditions})) or "none"
    )
    risk = [a.id for a in facts.attestations if a.kind == "risk-attestation"]
    time_ids = [t.id for t in facts.time_entries] + [k for t in facts.time_entries for k in t.task_ids]
    evidence = [e for f in verdict.findings for e in f.evidence] + [verdict.patient]
    return [
        _section(
            "eligibility",
            "Eligibility: chronic conditions",
            f"<p>Distinct chronic conditions: {esc(chronic)}</p>"
            + table(HEADERS["conditions"], condition_rows(verdict, facts)),
            [c.id for c in facts.conditions] + risk,
            url_of,
        ),
        _section(
            "consent",
            "Consent",
            table(HEADERS["consents"], consent_rows(facts, tz)),
            [c.id for c in facts.consents],
            url_of,
        ),
        _section(
            "care-plan",
            "Care plan",
            table(HEADERS["plans"], plan_rows(facts, tz)),
            [p.id for p in facts.care_plans],
            url_of,
        ),
        _section(
            "initiating-visit",
            "Initiating visit",
            table(HEADERS["visits"], visit_rows(facts, tz)),
            [v.id for v in facts.visits],
            url_of,
        ),
        _section(
            "time-log",
            f"Time log {month}",
            table(HEADERS["time"], time_rows(facts, month, tz)),
            time_ids + [s.id for s in facts.stays],
            url_of,
        ),
        _section(
            "billed",
            "Services already billed",
            table(HEADERS["billed"], billed_rows(facts, tz)),
            [b.id for b in facts.billed],
            url_of,
        ),
        _section(
            "verdict",
            "Verdict",
            f"<p>{esc(verdict_summary(verdict))}</p>"
            + table(HEADERS["codes"], code_rows(verdict), "No code is billable for this month.")
            + table(HEADERS["findings"], finding_rows(verdict)),
            evidence,
            url_of,
        ),
        _section(
            "integrity",
            "Integrity: resource hashes",
            f"<p>{esc(CANONICALISATION)}</p>" + table(HEADERS["hashes"], list(hashes)),
            [],
            url_of,
        ),
    ]


def check_xhtml(composition: dict[str, Any]) -> None:
    """Every section narrative must be well-formed XHTML in a div, without active content."""
    for section in composition.get("section", ()):
        div = section["text"]["div"]
        try:
            root = ET.fromstring(div)
        except ET.ParseError as exc:
            raise ValueError(
                f"section {section.get('title')!r} narrative is not well-formed XHTML: {exc}"
            ) from None
        if root.tag != f"{{{XHTML}}}div":
            raise ValueError(f"section {section.get('title')!r} narrative must be an XHTML div")
        bad = {el.tag.split("}")[-1] for el in root.iter()} & _FORBIDDEN
        if bad:
            raise ValueError(f"section narrative contains forbidden elements: {sorted(bad)}")
