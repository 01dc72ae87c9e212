"""Verdict -> CDS Hooks card: one small pure function, checked per status."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest

from rules.verdict import ChronicCondition, CodeLine, Finding, Minutes, NextThreshold, Verdict
from smart_app.cds.card import build_card, indicator, md, summary

LAUNCH = "http://127.0.0.1:5000/launch"
MID = date(2026, 11, 10)


def _verdict(status: str, **kw: object) -> Verdict:
    base = Verdict(
        patient="Patient/p1",
        month="2026-11",
        policy="cms-pfs-2026",
        policy_version="2026.07",
        status=status,  # type: ignore[arg-type]
        codes=(),
        minutes=Minutes(clinical_staff=14, billing_practitioner=0),
        next_threshold=NextThreshold("99490", 6, "clinical-staff", 20),
        chronic_conditions=(),
        findings=(),
        track="clinical-staff",
    )
    return replace(base, **kw)  # type: ignore[arg-type]


CONSENT = Finding(
    "consent.missing", "consent", "blocker", "No CCM consent is recorded.", "MLN909188 [S1]", ("Patient/p1",)
)
PLAN = Finding("care-plan.missing", "care-plan", "blocker", "No care plan.", "MLN909188 [S1]")
READY = _verdict(
    "ready",
    codes=(CodeLine("99490", 1, "CCM first 20 min", Decimal("66.13")),),
    minutes=Minutes(25, 0),
    next_threshold=NextThreshold("99439", 15, "clinical-staff", 40),
)


def test_not_eligible_gets_no_card() -> None:
    assert build_card(_verdict("not-eligible"), launch_url=LAUNCH, today=MID) is None


def test_ready_card() -> None:
    card = build_card(READY, launch_url=LAUNCH, today=MID, source_url="http://127.0.0.1:5000/")
    assert card is not None
    assert card["indicator"] == "info"
    assert card["summary"] == "CCM 2026-11: ready to bill 99490 (25 min); 15 min more for 99439"
    assert card["source"] == {"label": "CCM Ready", "url": "http://127.0.0.1:5000/"}
    assert card["links"] == [
        {"label": "Open CCM Ready", "url": LAUNCH, "type": "smart", "appContext": '{"month":"2026-11"}'}
    ]
    assert json.loads(card["links"][0]["appContext"]) == {"month": "2026-11"}
    assert "99490 x1" in card["detail"] and "$66.13" in card["detail"]
    assert len(card["uuid"]) == 36


def test_not_yet_card_states_minutes_and_next_step() -> None:
    card = build_card(_verdict("not-yet"), launch_url=LAUNCH, today=MID)
    assert card is not None
    assert card["summary"] == "CCM 2026-11: 14 of 20 min; log 6 more for 99490"
    assert card["indicator"] == "info"


def test_not_yet_turns_warning_near_month_end() -> None:
    v = _verdict("not-yet")
    assert indicator(v, date(2026, 11, 26)) == "warning"
    assert indicator(v, date(2026, 11, 23)) == "info"
    assert indicator(v, date(2026, 12, 2)) == "info"  # the month is over: nothing left to act on


def test_blocked_card_names_the_blocker_and_cites_rules() -> None:
    card = build_card(_verdict("blocked", findings=(CONSENT, PLAN)), launch_url=LAUNCH, today=MID)
    assert card is not None
    assert card["indicator"] == "warning"
    assert card["summary"] == "CCM 2026-11: 14 min; blocked: consent missing (+1 more)"
    assert "`consent.missing`" in card["detail"] and "MLN909188 \\[S1\\]" in card["detail"]


@pytest.mark.parametrize("status", ["ready", "not-yet", "blocked"])
def test_summary_always_under_140_chars(status: str) -> None:
    long_rule = Finding(
        "documentation." + "very-long-rule-name-" * 12,
        "documentation",
        "blocker" if status == "blocked" else "warning",
        "x" * 500,
        "c",
    )
    codes = tuple(CodeLine(f"9949{i}", 9) for i in range(12))
    v = _verdict(
        status,
        findings=(long_rule,) * 3,
        codes=codes,
        minutes=Minutes(123456, 654321),
        next_threshold=NextThreshold("99439", 987654, "", 999999),
    )
    text = summary(v)
    assert len(text) < 140
    assert text.startswith("CCM 2026-11:")


def test_fhir_text_cannot_inject_markdown_or_html() -> None:
    evil = ChronicCondition(
        "http://hl7.org/fhir/sid/icd-10-cm",
        "E11.9",
        "x",
        "CCIR",
        "diabetes",
        "[click](javascript:alert(1)) <img src=x onerror=alert(1)>",
        ("Condition/c1",),
    )
    card = build_card(_verdict("not-yet", chronic_conditions=(evil,)), launch_url=LAUNCH, today=MID)
    assert card is not None
    assert re.search(r"(?<!\\)[<\[\]]", card["detail"]) is None  # every <, [ and ] is escaped
    assert md("a*b_c<d>") == "a\\*b\\_c\\<d\\>"
