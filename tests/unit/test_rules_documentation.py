"""Documentation rules: missing and vague notes."""

from __future__ import annotations

import pytest

from rules.documentation import is_vague
from tests.support.facts import GOOD_NOTE, entry, ev, finding, ready_facts, rules_of, with_entries


@pytest.mark.parametrize(
    "note",
    [
        "followed up",
        "CCM call completed",
        "Called patient.",
        "Spoke with patient, doing well",
        "left message",
        "LVM",
        "done",
        "Called pt and followed up re ccm, spoke with patient today",
        "Chart review",
    ],
)
def test_vague_notes(note: str) -> None:
    assert is_vague(note)


@pytest.mark.parametrize(
    "note",
    [
        GOOD_NOTE,
        "Called patient about rising A1c 8.9; reviewed diet log; started metformin XR per Dr. Lee; recheck "
        "A1c in 3 months",
        "Medication reconciliation after ED discharge: stopped ibuprofen, added pantoprazole; follow up "
        "visit June 3",
    ],
)
def test_specific_notes(note: str) -> None:
    assert not is_vague(note)


def test_missing_note_warns_with_entry_ids() -> None:
    v = ev(with_entries(ready_facts(), entry("a", "2026-03-03T14:00:00", 25, notes=())))
    f = finding(v, "documentation.missing-note")
    assert f.severity == "warning" and f.evidence == ("Encounter/a",) and v.status == "ready"
    assert "problem addressed" in f.message and "next step" in f.message


def test_vague_note_warns_with_entry_and_task_ids() -> None:
    v = ev(
        with_entries(
            ready_facts(),
            entry("a", "2026-03-03T14:00:00", 15, notes=("followed up",)),
            entry("b", "2026-03-04T14:00:00", 15),
        )
    )
    f = finding(v, "documentation.vague-note")
    assert f.evidence == ("Encounter/a", "Task/a-t") and "1 CCM time entry" in f.message


def test_only_this_months_ccm_entries_are_checked() -> None:
    v = ev(
        with_entries(
            ready_facts(),
            entry("a", "2026-03-03T14:00:00", 25),
            entry("b", "2026-02-03T14:00:00", 25, notes=()),
            entry("r", "2026-03-05T14:00:00", 25, program="rpm", notes=()),
        )
    )
    assert not {"documentation.missing-note", "documentation.vague-note"} & rules_of(v)
