"""Audit packet as printable HTML (escaped, no JS, no external resources) and as PDF (headless chromium).

People are shown by name: the narrative's rows carry references (`Practitioner/<id>`), which this face
replaces with the names it resolved (`names`), in every table but the integrity hashes and the ledger.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from fhir_mapping import packet_narrative as narrative
from rules.month import Month, zone
from smart_app import config
from smart_app.packet.document import Packet
from smart_app.readiness import wording
from smart_app.web import printing

TEMPLATES = config.TEMPLATES / "packet"
CSS = (TEMPLATES / "packet.css").read_text("utf-8")
_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))


def style_csp_source(css: str = CSS) -> str:
    """The CSP source that allows exactly the packet's inline <style>."""
    return printing.style_csp_source(css)


def packet_people(packet: Packet) -> list[str]:
    """Every person reference the packet's tables show (for one batch of name look-ups)."""
    v, facts = packet.verdict, packet.facts
    refs: list[str | None] = [v.billing_practitioner]
    refs += [x for c in facts.consents for x in (c.billing_practitioner, c.obtained_by)]
    refs += [p.author for p in facts.care_plans]
    refs += [x for visit in facts.visits for x in visit.participants]
    refs += [t.performer for t in facts.time_entries]
    refs += [b.performer for b in facts.billed]
    found = [r for x in refs if x for r in wording.person_refs(x)]
    found += [r for f in v.findings for r in wording.person_refs(f.message)]
    return list(dict.fromkeys(found))


def _named(rows: Sequence[Sequence[str]], names: Mapping[str, str]) -> list[tuple[str, ...]]:
    return [tuple(wording.with_names(cell, names) for cell in row) for row in rows]


def render_html(
    packet: Packet, packet_sha256: str | None = None, names: dict[str, str] | None = None
) -> str:
    """Reviewer HTML: patient, month, verdict, findings + citations, consent, plan, time log, hashes."""
    v, facts = packet.verdict, packet.facts
    tz = zone(v.timezone)
    month = Month.parse(v.month)
    h = narrative.HEADERS
    who = names or {}

    def named(rows: Sequence[Sequence[str]]) -> list[tuple[str, ...]]:
        return _named(rows, who)

    tables = {
        "codes": narrative.table(h["codes"], narrative.code_rows(v), "No code is billable for this month."),
        "findings": narrative.table(h["findings"], named(narrative.finding_rows(v))),
        "conditions": narrative.table(h["conditions"], narrative.condition_rows(v, facts)),
        "consents": narrative.table(h["consents"], named(narrative.consent_rows(facts, tz))),
        "plans": narrative.table(h["plans"], named(narrative.plan_rows(facts, tz))),
        "visits": narrative.table(h["visits"], named(narrative.visit_rows(facts, tz))),
        "time": narrative.table(h["time"], named(narrative.time_rows(facts, month, tz))),
        "billed": narrative.table(h["billed"], named(narrative.billed_rows(facts, tz))),
        "hashes": narrative.table(h["hashes"], list(packet.hashes)),
    }
    if packet.ledger is not None:
        tables["ledger"] = narrative.table(
            ["#", "Kind", "Recorded (UTC)", "Who", "Record id", "SHA-256 (chained)"],
            [[str(r["seq"]), r["kind"], r["recorded"], r.get("user") or "", r["id"], r["hash"]]
             for r in packet.ledger.records],
            "The app's ledger holds no record for this patient.",
        )
    patient = facts.patient
    return _env.get_template("packet.html").render(
        css=Markup(CSS),  # our own constant stylesheet
        tables={k: Markup(t) for k, t in tables.items()},  # built with html.escape on every cell
        verdict=v,
        month=v.month,
        status_words=wording.status_words(v.status),
        summary=narrative.verdict_summary(v),
        chronic="; ".join(sorted({c.condition_label or c.display for c in v.chronic_conditions})),
        patient_ref=v.patient,
        patient_name=patient.name if patient else "",
        birth_date=patient.birth_date.isoformat() if patient and patient.birth_date else "",
        generated=packet.generated_at.isoformat(),
        canonicalisation=narrative.CANONICALISATION,
        packet_sha256=packet_sha256,
        billing_name=wording.person_label(v.billing_practitioner, who) if v.billing_practitioner else "",
        money=wording.format_money,
        ledger_status=packet.ledger.status_text if packet.ledger is not None else None,
    )
