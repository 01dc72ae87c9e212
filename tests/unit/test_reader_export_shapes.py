"""Export-shape corpus (issue 11): each story gives the same verdict in every vendor shape.

Stories and their expectations (with the cms-rules.md section that decides them) are in
tests/data/corpus/stories.json, written by tests/data/make_corpus.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from fhir_mapping.reader import read_facts
from fhir_mapping.sources import load_path
from rules.evaluate import evaluate
from tests.support.corpus import load_corpus

CORPUS = Path(__file__).resolve().parents[1] / "data" / "corpus"
INDEX = json.loads((CORPUS / "stories.json").read_text())
SHAPES = ("epic", "oracle", "athena", "hapi", "ndjson")


def _file(story: str, shape: str) -> Path:
    return CORPUS / (f"{story}.ndjson" if shape == "ndjson" else f"{story}.{shape}.json")


def verdict_of(story: str, shape: str) -> dict[str, Any]:
    spec = INDEX["stories"][story]
    facts = read_facts(load_path(_file(story, shape)), tz=INDEX["timezone"])
    v = evaluate(
        facts, INDEX["month"], tz=INDEX["timezone"], billing_practitioner=spec.get("billing_practitioner")
    )
    return {
        "status": v.status,
        "codes": [[c.code, c.units] for c in v.codes],
        "staff": v.minutes.clinical_staff,
        "rules": sorted({f.rule for f in v.findings}),
    }


@pytest.mark.parametrize("story", sorted(INDEX["stories"]))
def test_every_shape_gives_the_expected_verdict(story: str) -> None:
    spec = INDEX["stories"][story]
    seen = {shape: verdict_of(story, shape) for shape in SHAPES}
    for shape, got in seen.items():
        assert (got["status"], got["codes"], got["staff"]) == (
            spec["status"],
            spec["codes"],
            spec["staff"],
        ), (
            shape,
            got,
            spec["why"],
        )
        assert set(spec["rules"]) <= set(got["rules"]), (shape, got["rules"])
    first = seen["epic"]
    assert all(got == first for got in seen.values()), seen


def test_corpus_is_what_the_generator_writes(tmp_path: Path) -> None:
    module = load_corpus()
    module.OUT = tmp_path
    module.main()
    for path in tmp_path.iterdir():
        assert path.read_text() == (CORPUS / path.name).read_text(), path.name
