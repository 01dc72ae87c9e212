"""benchmarks/evaluate.py runs end to end on a tiny population (timings are printed, never asserted)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from fhir_mapping.reader import read_facts
from fhir_mapping.stream import iter_resources, patient_runs

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "evaluate.py"


def load_benchmark():
    spec = importlib.util.spec_from_file_location("bench_evaluate", BENCH)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    assert load_benchmark().main(["--sizes", "3", "--runs", "1", "--startup-runs", "1"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith("population: 3 patients")
    assert re.fullmatch(
        r"ratio_to_parse_floor=\d+\.\d\d rss_ratio=\d+\.\d\d patient_ratio=\d+\.\d\d startup_ratio=\d+\.\d\d",
        lines[-1],
    )


def test_generated_patients_read_cleanly(tmp_path: Path) -> None:
    bench = load_benchmark()
    path = tmp_path / "p.ndjson"
    bench.write_population(path, 5, seed=7)
    runs = list(patient_runs(iter_resources(path)))
    assert [k for k, _ in runs] == [f"Patient/b{i}" for i in range(5)]
    for key, resources in runs:
        assert read_facts(resources, key).skipped == ()
