"""Audit packet as printable HTML (escaped, no JS, no external resources) and as PDF (headless chromium)."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup

from rules.month import Month, zone
from smart_app import config
from smart_app.packet.document import Packet, narrative

TEMPLATES = config.TEMPLATES / "packet"
CSS = (TEMPLATES / "packet.css").read_text("utf-8")
STATUS_WORDS = {
    "ready": "ready to bill",
    "not-yet": "not yet billable",
    "blocked": "blocked",
    "not-eligible": "not eligible for CCM",
}
# Flags for every headless chromium we start (PDF printing here, Playwright in the browser tests).
CHROMIUM_COMMON_FLAGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
CHROMIUM_FLAGS = ("--headless", *CHROMIUM_COMMON_FLAGS, "--no-pdf-header-footer")
_env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=select_autoescape(["html"]))


class PdfError(RuntimeError):
    """Chromium is missing or could not render the PDF (one-line message)."""


def style_csp_source(css: str = CSS) -> str:
    """The CSP source that allows exactly one inline <style> with `css` (default: the packet's)."""
    return "'sha256-" + base64.b64encode(hashlib.sha256(css.encode("utf-8")).digest()).decode() + "'"


def render_html(packet: Packet, packet_sha256: str | None = None) -> str:
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
    patient = facts.patient
    return _env.get_template("packet.html").render(
        css=Markup(CSS),  # our own constant stylesheet
        tables={k: Markup(t) for k, t in tables.items()},  # built with html.escape on every cell
        verdict=v,
        month=v.month,
        status_words=STATUS_WORDS.get(v.status, v.status),
        summary=narrative.verdict_summary(v),
        chronic="; ".join(sorted({c.condition_label or c.display for c in v.chronic_conditions})),
        patient_ref=v.patient,
        patient_name=patient.name if patient else "",
        birth_date=patient.birth_date.isoformat() if patient and patient.birth_date else "",
        generated=packet.generated_at.isoformat(),
        canonicalisation=narrative.CANONICALISATION,
        packet_sha256=packet_sha256,
    )


def chromium_path() -> str:
    """CCM_READY_CHROMIUM, else /usr/bin/chromium, else `chromium` on PATH."""
    for candidate in (os.environ.get("CCM_READY_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")):
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise PdfError("chromium not found: install Debian chromium or set CCM_READY_CHROMIUM")


def render_pdf(html_path: Path, pdf_path: Path, *, timeout: float = 90.0) -> None:
    """Print `html_path` to `pdf_path` with headless chromium (a throwaway profile, no network)."""
    with tempfile.TemporaryDirectory(prefix="ccm-ready-chromium-") as profile:
        cmd = [
            chromium_path(),
            *CHROMIUM_FLAGS,
            f"--user-data-dir={profile}",
            f"--print-to-pdf={pdf_path.resolve()}",
            html_path.resolve().as_uri(),
        ]
        try:
            done = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise PdfError(f"chromium did not finish printing the PDF within {timeout:g} s") from None
    if done.returncode != 0 or not pdf_path.is_file() or pdf_path.stat().st_size == 0:
        tail = " ".join(done.stderr.decode("utf-8", "replace").split())[-200:]
        raise PdfError(f"chromium could not print the PDF (exit {done.returncode}): {tail}")


def print_pdf(html: str, *, timeout: float = 90.0) -> bytes:
    """The PDF of an HTML document (written to a throwaway directory first); PdfError when it fails."""
    with tempfile.TemporaryDirectory(prefix="ccm-ready-pdf-") as tmp:
        page, pdf = Path(tmp) / "page.html", Path(tmp) / "page.pdf"
        page.write_text(html, "utf-8")
        render_pdf(page, pdf, timeout=timeout)
        return pdf.read_bytes()
