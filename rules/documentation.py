"""Documentation: every CCM time entry needs a note that says what was done (problem, action, next step)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from rules import rule_ids
from rules.packs import Citation
from rules.patient_month import PatientMonth
from rules.records import TimeEntry
from rules.verdict import Finding

CITE_NOTES = Citation("Noridian CCM Q&A; OIG CCM/RPM audit focus", "3.6, 5.1", ("S3", "S10"), "M")

GOOD_NOTE = (
    'A good note names the problem addressed, the action taken and the next step, e.g. "BP log 150s/90s '
    '(hypertension); increased lisinopril to 20 mg after talking with Dr. Lee; recheck BP readings Friday."'
)
# Phrases that say a contact happened but not what was done.
VAGUE_PHRASES = (
    "ccm call completed",
    "call completed",
    "ccm call",
    "ccm time",
    "ccm services",
    "followed up",
    "follow up",
    "follow-up",
    "f/u",
    "called patient",
    "called pt",
    "call to patient",
    "phone call",
    "spoke with patient",
    "spoke to patient",
    "spoke with pt",
    "spoke to pt",
    "talked to patient",
    "talked with patient",
    "left message",
    "left voicemail",
    "left vm",
    "lvm",
    "checked in",
    "check in",
    "check-in",
    "touched base",
    "chart review",
    "reviewed chart",
    "monthly call",
    "care management",
    "no concerns",
    "doing well",
    "patient doing well",
    "pt doing well",
    "as above",
    "done",
    "completed",
    "ok",
    "n/a",
    "see note",
)
FILLER = frozenset(
    {
        "a",
        "an",
        "the",
        "and",
        "or",
        "to",
        "with",
        "for",
        "of",
        "on",
        "in",
        "at",
        "by",
        "was",
        "is",
        "be",
        "pt",
        "patient",
        "patients",
        "call",
        "called",
        "today",
        "this",
        "month",
        "per",
        "re",
        "regarding",
        "about",
        "ccm",
        "time",
        "minutes",
        "min",
        "mins",
        "her",
        "his",
        "their",
        "them",
        "he",
        "she",
        "they",
        "we",
        "i",
        "via",
        "phone",
    }
)
_PHRASE = re.compile("|".join(re.escape(p) for p in sorted(VAGUE_PHRASES, key=len, reverse=True)))
_WORD = re.compile(r"[a-z0-9]+(?:[/'.-][a-z0-9]+)*")
MIN_WORDS = 6  # fewer words than this cannot say problem, action and next step
MIN_SUBSTANCE = 4  # words left once vague phrases and filler are removed


@lru_cache(maxsize=8192)
def is_vague(note: str) -> bool:
    """True for notes like "followed up" or "CCM call completed" that do not say what was done."""
    text = note.strip().lower()
    words = _WORD.findall(text)
    if len(words) < MIN_WORDS:
        return True
    rest = _WORD.findall(_PHRASE.sub(" ", text))
    substance = [w for w in rest if w not in FILLER and not w.isdigit()]
    return len(substance) < MIN_SUBSTANCE


def check(pm: PatientMonth, entries: Iterable[TimeEntry]) -> tuple[Finding, ...]:
    """Warnings for CCM time entries of the month without a note, or with a vague one."""
    missing: list[TimeEntry] = []
    vague: list[TimeEntry] = []
    for e in entries:
        notes = [n for n in e.notes if n and n.strip()]
        if not notes:
            missing.append(e)
        elif is_vague(" ".join(notes)):
            vague.append(e)
    out: list[Finding] = []
    if missing:
        n = len(missing)
        out.append(
            Finding(
                rule_ids.DOCUMENTATION_MISSING_NOTE,
                "documentation",
                "warning",
                f"{n} CCM time {'entry has' if n == 1 else 'entries have'} no note of what was done. "
                f"{GOOD_NOTE}",
                str(CITE_NOTES),
                _evidence(missing),
            )
        )
    if vague:
        n = len(vague)
        out.append(
            Finding(
                rule_ids.DOCUMENTATION_VAGUE_NOTE,
                "documentation",
                "warning",
                f"{n} CCM time {'entry has a note' if n == 1 else 'entries have notes'} too vague for an "
                "audit "
                f'(such as "followed up" or "CCM call completed"). {GOOD_NOTE}',
                str(CITE_NOTES),
                _evidence(vague),
            )
        )
    return tuple(out)


def _evidence(entries: list[TimeEntry]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(i for e in entries for i in (e.id, *e.task_ids)))
