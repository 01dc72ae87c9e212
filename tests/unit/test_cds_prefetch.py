"""The CDS prefetch templates ask for what the month's verdict needs, like the panel's one-batch fetch."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import parse_qsl

from fhir_mapping.write_consent import CONSENT_ID
from fhir_mapping.write_time import TIME_ENTRY_ID
from smart_app.readiness.fetch import ATTESTATION_CODES, VISIT_CODES, plan_queries

SERVICES = Path(__file__).resolve().parents[2] / "smart_app" / "cds" / "services.json"


def templates() -> dict[str, str]:
    return json.loads(SERVICES.read_text())["services"][0]["prefetch"]


def params(template: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for key, value in parse_qsl(template.partition("?")[2]):
        out.setdefault(key, []).append(value)
    return out


def test_every_type_the_fetch_reads_has_a_template() -> None:
    fetched = {q.url.split("?")[0].split("/")[0] for q in plan_queries("p1", "2026-10")}
    prefetched = {t.split("?")[0].split("/")[0] for t in templates().values()}
    assert fetched <= prefetched


def test_the_notes_template_asks_only_for_the_apps_own_notes() -> None:
    """Write profile "note": a time entry or consent the EHR holds only as our note counts on the card."""
    systems = params(templates()["notes"])["identifier"][0].split(",")
    assert sorted(systems) == sorted(f"{s}|" for s in (TIME_ENTRY_ID, CONSENT_ID))


def test_history_heavy_searches_are_bounded_by_date() -> None:
    t = templates()
    assert params(t["encounters"])["date"] == ["ge{{today() - 32 days}}"]  # the month, from any day in it
    assert params(t["encounters"])["_revinclude"] == ["Task:encounter"]
    assert params(t["chargeitems"])["occurrence"] == ["ge{{today() - 62 days}}"]  # from last month's start
    assert params(t["claims"])["created"] == params(t["eobs"])["created"] == ["ge{{today() - 62 days}}"]


def test_visits_and_attestations_are_filtered_by_the_fetch_codes() -> None:
    t = templates()
    assert params(t["visits"])["type"] == [",".join(VISIT_CODES)]
    assert sorted(params(t["tasks"])["code"][0].split(",")) == sorted(ATTESTATION_CODES)
    assert all("patient={{context.patientId}}" in v for k, v in t.items() if k != "patient")
