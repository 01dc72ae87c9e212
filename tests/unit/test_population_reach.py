"""A population drops what the months' reach does not read as soon as it is parsed, patient by patient
(`fhir_mapping.reach.Dropping`); every patient's verdict is still the one a full reading of that patient
alone gives, whatever order the export's files and lines come in."""

from __future__ import annotations

import random
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_mapping.reach import Dropping, Reach
from fhir_mapping.reader import read_facts
from rules.evaluate import evaluate
from rules.month import Month
from smart_app.program.population import evaluate_population
from tests.support.corpus import load_corpus
from tests.unit.test_reach import history

MC = load_corpus()
OCTOBER = Reach.of(Month.parse("2026-10"))
PATIENTS = ("p1", "p2", "p3")


def _entry(eid: str, start: str, who: str = "p1") -> dict[str, Any]:
    enc, _task = MC.time_entry(eid, start, start, 20)
    enc["subject"] = {"reference": f"Patient/{who}"}
    return enc


def _task(tid: str, eid: str, who: str = "p1", code: str = "care-coordination") -> dict[str, Any]:
    _enc, task = MC.time_entry(eid, "2026-10-05T10:00:00Z", "2026-10-05T10:20:00Z", 20)
    task.update(id=tid, code=MC.concept(MC.CARE_ACTIVITY, code), **{"for": {"reference": f"Patient/{who}"}})
    return task


# ---------------------------------------------------------------------------------------------- cases


def test_an_out_of_reach_entry_and_the_tasks_documenting_it_are_dropped() -> None:
    dropping = Dropping(OCTOBER)
    assert not dropping.keep(_entry("old", "2026-03-04T10:00:00Z"), "Patient/p1")
    assert not dropping.keep(_task("t-old", "old"), "Patient/p1")
    assert dropping.keep(_task("t-attest", "old", code="risk-attestation"), "Patient/p1")  # read at any date
    assert dropping.keep(_entry("new", "2026-10-04T10:00:00Z"), "Patient/p1")
    assert dropping.keep(_task("t-new", "new"), "Patient/p1")


def test_a_task_is_never_dropped_for_another_patients_encounter() -> None:
    """One patient's reading never sees another's resources, so neither does what is dropped."""
    dropping = Dropping(OCTOBER)
    assert not dropping.keep(_entry("e1", "2026-03-04T10:00:00Z"), "Patient/p1")
    assert dropping.keep(_task("t1", "e1", who="p2"), "Patient/p2")


def test_a_task_kept_before_its_encounter_was_dropped_is_swept() -> None:
    dropping = Dropping(OCTOBER)
    early = _task("t-early", "old")
    kept = [r for r in (early, _entry("old", "2026-03-04T10:00:00Z")) if dropping.keep(r, "Patient/p1")]
    assert kept == [early] and dropping.late == {"Patient/p1"}
    assert dropping.sweep("Patient/p1", kept) == []
    assert dropping.sweep("Patient/p2", kept) == kept  # nothing late for another patient


def test_without_a_reach_everything_is_kept() -> None:
    dropping = Dropping(None)
    assert dropping.keep(_entry("old", "2020-03-04T10:00:00Z"), "Patient/p1")
    assert dropping.keep(_task("t-old", "old"), "Patient/p1")


def test_a_bounded_dropping_forgets_old_encounters() -> None:
    """A stream's memory stays flat: past the bound the oldest drops are forgotten (the Task then passes
    and the reader, which never saw its Encounter, attaches it to nothing)."""
    dropping = Dropping(OCTOBER, bound=2)
    for i in range(3):
        dropping.keep(_entry(f"e{i}", "2026-03-04T10:00:00Z"))
    assert len(dropping.dropped) <= 2


# ------------------------------------------------------------------------------------------- property


def _rename(value: Any, who: str) -> Any:
    """`value` made patient `who`'s: every id and reference but the shared practitioners' gets a prefix."""
    if isinstance(value, list):
        return [_rename(v, who) for v in value]
    if not isinstance(value, dict):
        return value
    out = {k: _rename(v, who) for k, v in value.items()}
    ref = out.get("reference")
    if isinstance(ref, str) and "/" in ref and not ref.startswith("Practitioner/"):
        rtype, rid = ref.split("/", 1)
        out["reference"] = f"Patient/{who}" if rtype == "Patient" else f"{rtype}/{who}-{rid}"
    if isinstance(out.get("id"), str) and "resourceType" in out and out["resourceType"] != "Practitioner":
        out["id"] = who if out["resourceType"] == "Patient" else f"{who}-{out['id']}"
    return out


def _outcome(facts: Any, month: str) -> tuple[Any, ...]:
    v = evaluate(facts, month, tz=MC.TZ)
    return v.status, v.codes, v.minutes, tuple((f.rule, f.severity, f.evidence) for f in v.findings)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    histories=st.lists(history(), min_size=len(PATIENTS), max_size=len(PATIENTS)),
    month=st.sampled_from(["2026-03", "2025-09"]),
    per_bucket=st.sampled_from([1000, 1]),
    seed=st.integers(0, 2**16),
)
def test_each_patient_of_a_population_gets_the_verdict_of_a_full_reading(
    histories: list[list[dict[str, Any]]], month: str, per_bucket: int, seed: int
) -> None:
    rng = random.Random(seed)
    people = [r for r in MC.base() if r["resourceType"] == "Practitioner"]
    mine = {
        who: [_rename(r, who) for r in MC.base() + extra if r["resourceType"] != "Practitioner"]
        for who, extra in zip(PATIENTS, histories, strict=True)
    }
    by_type: dict[str, list[bytes]] = {}
    for res in [r for rs in mine.values() for r in rs] + people:
        by_type.setdefault(res["resourceType"], []).append(orjson.dumps(res))
    types = sorted(by_type)
    rng.shuffle(types)  # a Task file before the Encounter file, or after
    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for i, rtype in enumerate(types):
            lines = by_type[rtype]
            rng.shuffle(lines)
            files.append(Path(tmp) / f"{i:02d}-{rtype}.ndjson")
            files[-1].write_bytes(b"\n".join(lines) + b"\n")
        found = evaluate_population(files, [month], tz=MC.TZ, per_bucket=per_bucket, workdir=Path(tmp))
        results = list(found)
    assert sorted(r.key for r in results) == [f"Patient/{who}" for who in PATIENTS]
    for r in results:
        who = r.key.split("/")[1]
        full = read_facts([*mine[who], *people], who, MC.TZ)
        assert _outcome(r.facts, month) == _outcome(full, month), who
        assert {s.resource for s in r.facts.skipped} <= {s.resource for s in full.skipped}
