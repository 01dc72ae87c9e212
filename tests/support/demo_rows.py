"""The demo's crafted patients as worklist rows for October 2026 (offline: read_facts -> evaluate -> row)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from fhir_mapping.reader import read_facts
from rules.evaluate import evaluate
from rules.month import Month, zone
from smart_app.demo.seed import demo_cases
from smart_app.program.population import patient_key
from smart_app.program.worklist import build_row

TZ = "America/Chicago"
NOW = datetime(2026, 10, 20, 15, 0, tzinfo=zone(TZ))
MONTH = Month(2026, 10)


def demo_population() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """The crafted demo cases as server-style resources (ids, relative references); case key per patient."""
    resources: list[dict[str, Any]] = []
    spec_of: dict[str, str] = {}
    for case in demo_cases(NOW, TZ, include_copied=False):
        urls = {
            e["fullUrl"]: f"{e['resource']['resourceType']}/{e['fullUrl'][9:]}" for e in case.bundle["entry"]
        }
        text = json.dumps([e["resource"] for e in case.bundle["entry"]])
        for url, ref in urls.items():
            text = text.replace(f'"{url}"', f'"{ref}"')
        for url, res in zip(urls, json.loads(text), strict=True):
            res["id"] = url[9:]
            if res["resourceType"] == "Patient":
                spec_of[f"Patient/{res['id']}"] = case.key
            resources.append(res)
    return resources, spec_of


def demo_rows() -> dict[str, Any]:
    """The demo's crafted cases as server-style resources, one worklist row per case key."""
    resources, spec_of = demo_population()
    out = {}
    for key, spec in spec_of.items():
        mine = [r for r in resources if patient_key(r) == key]
        facts = read_facts(mine, key.split("/")[1], TZ)
        out[spec] = build_row(facts, evaluate(facts, MONTH, tz=TZ), today=NOW.date())
    return out
