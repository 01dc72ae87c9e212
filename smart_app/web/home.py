"""home blueprint: `/` lists the demo patients (when a demo manifest is configured), else a landing page."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlencode

from flask import Blueprint, current_app, render_template

from smart_app.demo.seed import Manifest, SeededPatient, read_manifest
from smart_app.readiness import wording

bp = Blueprint("home", __name__)

STATE_LABELS = wording.STATUS_LABELS
STATE_ORDER = wording.STATUS_ORDER


def manifest_path() -> Path | None:
    """The demo manifest the app was started with (config DEMO_MANIFEST or env CCM_READY_DEMO_MANIFEST)."""
    value = current_app.config.get("DEMO_MANIFEST")
    return Path(value) if value else None


def open_link(fhir_base: str, patient_id: str) -> str:
    """The open-server entry for one patient (served by the launch blueprint)."""
    return "/open?" + urlencode({"iss": fhir_base, "patient": patient_id})


def _sorted(patients: tuple[SeededPatient, ...]) -> list[SeededPatient]:
    rank = {s: i for i, s in enumerate(STATE_ORDER)}
    return sorted(patients, key=lambda p: rank.get(p.expected, len(rank)))


@bp.get("/")
def index() -> str:
    path = manifest_path()
    manifest: Manifest | None = None
    problem = ""
    if path is not None:
        try:
            manifest = read_manifest(path)
        except (OSError, ValueError):
            current_app.logger.warning("demo manifest at %s could not be read", path)
            problem = "The demo patient list could not be read; start the demo again with `ccm-ready demo`."
    rows = []
    if manifest is not None:
        rows = [
            {"patient": p, "state_label": STATE_LABELS.get(p.expected, p.expected),
             "href": open_link(manifest.fhir_base, p.id)}
            for p in _sorted(manifest.patients)
        ]
    program_query = urlencode({"iss": manifest.fhir_base, "month": manifest.month}) if manifest else ""
    return render_template(
        "home/index.html", manifest=manifest, rows=rows, problem=problem, program_query=program_query
    )
