"""Audit packet as printable HTML (escaped, no JS, no external resources) and as PDF (headless chromium)."""

from __future__ import annotations

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


def render_html(
    packet: Packet, packet_sha256: str | None = None, names: dict[str, str] | None = None
) -> str:
    """Reviewer HTML: patient, month, verdict, findings + citations, consent, plan, time log, hashes."""
    v, facts = packet.verdict, packet.facts
    tz = zone(v.timezone)
    month = Month.parse(v.month)
    h = narrative.HEADERS
    tables = {
        "codes": narrative.table(h["codes"], narrative.code_rows(v), "No code is billable for this month."),
        "findings": narrative.table(h["findings"], narrative.finding_rows(v)),
        "conditions": narrative.table(h["conditions"], narrative.condition_rows(v, facts)),
        "consents": narrative.table(h["consents"], narrative.consent_rows(facts, tz)),
        "plans": narrative.table(h["plans"], narrative.plan_rows(facts, tz)),
        "visits": narrative.table(h["visits"], narrative.visit_rows(facts, tz)),
        "time": narrative.table(h["time"], narrative.time_rows(facts, month, tz)),
        "billed": narrative.table(h["billed"], narrative.billed_rows(facts, tz)),
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
        names=names or {},
        money=wording.format_money,
        ledger_status=packet.ledger.status_text if packet.ledger is not None else None,
    )
