"""Golden scenarios: each tests/data/scenarios/<name>.json through the CLI gives its expected verdict."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path

import pytest

from smart_app.cli.commands import build_parser
from smart_app.cli.evaluate import run

SCENARIOS = Path(__file__).resolve().parents[1] / "data" / "scenarios"
NAMES = sorted(p.name.removesuffix(".expected.json") for p in SCENARIOS.glob("*.expected.json"))
# Every rule id of the catalogue must be exercised by at least one scenario.
CATALOGUE = {
    "eligibility.chronic-conditions",
    "eligibility.deceased",
    "eligibility.risk-attestation",
    "consent.missing",
    "consent.declined",
    "consent.stopped",
    "consent.stop-effective",
    "consent.other-practitioner",
    "consent.disclosures-incomplete",
    "billing-practitioner.unknown",
    "care-plan.missing",
    "initiating-visit.missing",
    "time.below-threshold",
    "time.before-consent",
    "time.overlap",
    "time.inpatient",
    "time.other-program",
    "time.staff-cap",
    "time.track-choice",
    "conflict.ccm-other-practitioner",
    "conflict.pcm-same-practitioner",
    "conflict.pcm-other-practitioner",
    "conflict.apcm-same-practitioner",
    "conflict.g0181",
    "conflict.g0182",
    "conflict.esrd",
    "conflict.tcm",
    "conflict.rpm",
    "documentation.missing-note",
    "documentation.vague-note",
}


def evaluate_scenario(name: str) -> tuple[dict, dict]:
    expected = json.loads((SCENARIOS / f"{name}.expected.json").read_text())
    argv = [
        "evaluate",
        str(SCENARIOS / f"{name}.json"),
        "--month",
        expected["month"],
        "--timezone",
        expected["timezone"],
        "--format",
        "json",
    ]
    if expected["billing_practitioner"]:
        argv += ["--billing-practitioner", expected["billing_practitioner"]]
    out, err = io.StringIO(), io.StringIO()
    code = run(build_parser().parse_args(argv), out, err)
    assert code == 0, err.getvalue()
    return json.loads(out.getvalue()), expected


def test_scenarios_exist() -> None:
    assert len(NAMES) >= 30


def test_every_catalogue_rule_has_a_scenario() -> None:
    covered: set[str] = set()
    for name in NAMES:
        covered |= set(json.loads((SCENARIOS / f"{name}.expected.json").read_text())["rules"])
    assert CATALOGUE - covered == set()


@pytest.mark.parametrize("name", NAMES)
def test_scenario(name: str) -> None:
    verdict, expected = evaluate_scenario(name)
    rules = {f["rule"] for f in verdict["findings"]}
    assert verdict["status"] == expected["status"], verdict["findings"]
    assert verdict["codes"] == expected["codes"]
    assert verdict["minutes"] == expected["minutes"]
    assert set(expected["rules"]) <= rules, f"missing {set(expected['rules']) - rules}"
    assert not (set(expected["absent_rules"]) & rules)
    if "next_threshold" in expected:
        assert verdict["next_threshold"] == expected["next_threshold"]
    if "skipped" in expected:
        skipped = {s["resource"] for s in verdict["skipped"]}
        assert set(expected["skipped"]) <= skipped
        assert len(verdict["skipped"]) == expected["skipped_count"]


def test_committed_files_match_the_generator() -> None:
    spec = importlib.util.spec_from_file_location("make_scenarios", SCENARIOS.parent / "make_scenarios.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[spec.name]
    generated = {s.name: s for s in module.scenarios()}
    assert sorted(generated) == NAMES
    for name, s in generated.items():
        assert json.loads((SCENARIOS / f"{name}.json").read_text()) == s.bundle(), name
        assert json.loads((SCENARIOS / f"{name}.expected.json").read_text()) == s.expected, name
