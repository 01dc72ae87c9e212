"""Verdict fields the faces render (issue 10 item 2): computed once by evaluate(), cms-rules.md §2-§5."""

from __future__ import annotations

import pathlib
import re

from rules import rule_ids
from rules.verdict import to_face_json, to_json
from tests.support.facts import DOC, add, charge, consent, ev, ready_facts


def test_ready_next_step_names_the_code_and_the_next_threshold() -> None:
    v = ev(ready_facts())
    assert v.status == "ready" and v.next_step.startswith("Bill 99490.")
    assert "99439" in v.next_step
    assert ev(ready_facts(), month_closed=True).next_step == "Bill 99490."


def test_not_yet_next_step_gives_minutes_only_while_the_month_is_open() -> None:
    open_ = ev(ready_facts(time_entries=()))
    assert open_.status == "not-yet" and open_.next_step.startswith("Log ")
    closed = ev(ready_facts(time_entries=()), month_closed=True)
    assert "Log" not in closed.next_step and "nothing to bill" in closed.next_step


def test_blocked_next_step_is_the_first_blocker_never_minutes() -> None:
    v = ev(ready_facts(consents=(), time_entries=()))
    assert v.status == "blocked"
    assert v.next_step == v.blockers[0].message and "more" not in v.next_step


def test_not_eligible_next_step_says_why() -> None:
    v = ev(ready_facts(conditions=()))
    assert v.status == "not-eligible" and v.next_step == v.blockers[0].message
    assert v.blockers[0].category == "eligibility"


def test_consent_states() -> None:
    """cms-rules.md §3.3: given, missing, declined, stopped (a stop this month is still given)."""
    assert ev(ready_facts()).consent_state == "given"
    assert ev(ready_facts(consents=())).consent_state == "missing"
    assert ev(ready_facts(consents=(consent(status="rejected"),))).consent_state == "declined"
    stopped = consent(status="inactive", stop="2026-01-20T00:00:00+00:00")
    assert ev(ready_facts(consents=(stopped,))).consent_state == "stopped"
    this_month = consent(status="inactive", stop="2026-03-20T00:00:00+00:00")
    assert ev(ready_facts(consents=(this_month,))).consent_state == "given"


def test_distinct_conditions_counts_condition_keys() -> None:
    assert ev(ready_facts()).distinct_conditions == 2


def test_billed_in_month_only_for_ccm_by_the_billing_practitioner() -> None:
    """cms-rules.md §2: only one practitioner bills CCM per month."""
    assert ev(ready_facts()).billed_in_month is False
    assert ev(add(ready_facts(), billed=(charge("b1", "99490", performer=DOC),))).billed_in_month
    assert not ev(add(ready_facts(), billed=(charge("b1", "99490"),))).billed_in_month
    assert not ev(add(ready_facts(), billed=(charge("b1", "99457", performer=DOC),))).billed_in_month
    before = charge("b1", "99490", when="2026-02-10T12:00:00+00:00", performer=DOC)
    assert not ev(add(ready_facts(), billed=(before,))).billed_in_month


def test_face_json_adds_fields_and_to_json_is_unchanged() -> None:
    v = ev(ready_facts())
    face = to_face_json(v)
    assert {k: face[k] for k in to_json(v)} == to_json(v)
    assert face["consent_state"] == "given" and face["next_step"] == v.next_step
    assert "next_step" not in to_json(v)


def test_rules_use_named_rule_ids_not_literals() -> None:
    ids = {v for k, v in vars(rule_ids).items() if k.isupper() and isinstance(v, str)}
    root = pathlib.Path(__file__).resolve().parents[2] / "rules"
    for path in root.glob("*.py"):
        if path.name == "rule_ids.py":
            continue
        literals = set(re.findall(r'"([a-z-]+\.[a-z0-9-]+)"', path.read_text()))
        assert not literals & ids, f"{path.name} spells rule ids as literals: {literals & ids}"
