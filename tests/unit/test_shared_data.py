"""Every shared Synthea and carebundle bundle reads and evaluates without a crash."""

from __future__ import annotations

from pathlib import Path

import pytest

from fhir_mapping.reader import read_facts
from fhir_mapping.sources import load_path
from rules.evaluate import evaluate
from rules.verdict import STATUSES, to_json

# Synthea's data ends in 2021; no pack covers 2021, so the oldest pack (2025 rules) is applied explicitly.
DATA_SETS = {"synthea-smart-r4": ("2021-03", "cms-pfs-2025"), "carebundle-r4": ("2026-10", None)}


@pytest.mark.parametrize(("folder", "month", "pack"), [(k, *v) for k, v in sorted(DATA_SETS.items())])
def test_data_set_evaluates(
    shared_data: Path, folder: str, month: str, pack: str | None, capsys: pytest.CaptureFixture[str]
) -> None:
    files = sorted((shared_data / folder / "bundles").glob("*.json"))
    assert files, f"no bundles in {folder}"
    statuses: dict[str, int] = dict.fromkeys(STATUSES, 0)
    skipped = 0
    for path in files:
        facts = read_facts(load_path(path))
        assert facts.patient.id.startswith("Patient/") and facts.patient.id != "Patient/unknown", path.name
        verdict = evaluate(facts, month, pack=pack)
        to_json(verdict)  # the contract serialises
        statuses[verdict.status] += 1
        skipped += len(verdict.skipped)
    eligible = len(files) - statuses["not-eligible"]
    with capsys.disabled():
        print(
            f"\n{folder} ({month}): {eligible} of {len(files)} patients eligible (not not-eligible); "
            f"statuses {statuses}; {skipped} resources skipped"
        )
    assert sum(statuses.values()) == len(files)
    assert eligible > 0  # both sets hold patients with two or more chronic conditions
