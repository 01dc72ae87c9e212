"""benchmarks/evaluate.py runs end to end on a small population (timings are printed, never asserted)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from fhir_mapping.reader import group_by_patient, read_facts
from fhir_mapping.sources import load_path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "evaluate.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_evaluate", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_benchmark().main(["--patients", "15"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("population: 15 patients")
    assert re.fullmatch(r"ratio_to_parse_floor=\d+\.\d\d", lines[-1])


def test_generated_patients_read_cleanly(tmp_path: Path) -> None:
    bench = load_benchmark()
    path = tmp_path / "p.ndjson"
    bench.write_population(path, 5, seed=7)
    groups = group_by_patient(load_path(path))
    assert len(groups) == 5
    for key, resources in groups.items():
        facts = read_facts(resources, key)
        assert facts.skipped == ()
        assert 2 <= len(facts.time_entries) <= 15
        assert all(entry.notes for entry in facts.time_entries)
        assert facts.consents and facts.care_plans and facts.visits and facts.conditions
