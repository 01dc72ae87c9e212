"""Same-month conflicts (cms-rules.md §2), driven by the pack's concurrency table."""

from __future__ import annotations

import pytest

from tests.support.facts import DOC, OTHER_DOC, add, charge, ev, finding, ready_facts, rules_of

SAME, OTHER = DOC, OTHER_DOC


@pytest.mark.parametrize(
    ("code", "performer", "rule", "severity", "status"),
    [
        ("99490", OTHER, "conflict.ccm-other-practitioner", "blocker", "blocked"),
        ("99491", OTHER, "conflict.ccm-other-practitioner", "blocker", "blocked"),
        ("99487", OTHER, "conflict.ccm-other-practitioner", "blocker", "blocked"),
        ("99490", SAME, "conflict.already-billed", "blocker", "blocked"),  # §2: CCM once per month
        ("99424", SAME, "conflict.pcm-same-practitioner", "blocker", "blocked"),
        ("99426", SAME, "conflict.pcm-same-practitioner", "blocker", "blocked"),
        ("99424", OTHER, "conflict.pcm-other-practitioner", "info", "ready"),
        ("G0556", SAME, "conflict.apcm-same-practitioner", "blocker", "blocked"),
        ("G0558", SAME, "conflict.apcm-same-practitioner", "blocker", "blocked"),
        ("G0557", OTHER, "conflict.apcm-other-practitioner", "blocker", "blocked"),
        ("99495", SAME, "conflict.tcm", "info", "ready"),
        ("99496", OTHER, "conflict.tcm", "info", "ready"),
        ("99457", SAME, "conflict.rpm", "info", "ready"),
        ("99454", OTHER, "conflict.rpm", "info", "ready"),
        ("98980", SAME, "conflict.rtm", "info", "ready"),
        ("98977", OTHER, "conflict.rtm", "info", "ready"),
        ("99484", SAME, "conflict.bhi", "info", "ready"),
        ("99493", OTHER, "conflict.bhi", "info", "ready"),
        ("G0181", SAME, "conflict.g0181", "blocker", "blocked"),
        ("G0181", OTHER, "conflict.g0181", "blocker", "blocked"),
        ("G0182", SAME, "conflict.g0182", "blocker", "blocked"),
        ("G0182", OTHER, "conflict.g0182", "blocker", "blocked"),
        ("90951", SAME, "conflict.esrd", "blocker", "blocked"),
        ("90970", OTHER, "conflict.esrd", "blocker", "blocked"),
    ],
)
def test_conflict_pairs(code: str, performer: str, rule: str, severity: str, status: str) -> None:
    v = ev(add(ready_facts(), billed=(charge("ch1", code, performer=performer),)))
    f = finding(v, rule)
    assert (f.severity, f.category, f.evidence) == (severity, "conflict", ("ChargeItem/ch1",))
    assert v.status == status
    assert code in f.message and f.citation
    assert len(rules_of(v) & {r for r in rules_of(v) if r.startswith("conflict.")}) == 1


def test_allowed_pairs_say_minutes_must_not_count_twice() -> None:
    for code in ("99495", "99457"):
        f = next(
            f
            for f in ev(add(ready_facts(), billed=(charge("c", code),))).findings
            if f.category == "conflict"
        )
        assert "allowed" in f.message and ("no minute" in f.message.lower() or "never count" in f.message)


@pytest.mark.parametrize(
    ("when", "status"),
    [
        ("2026-02-28T12:00:00+00:00", "billable"),
        ("2026-04-01T00:00:00+00:00", "billed"),
        ("2026-03-10T12:00:00+00:00", "planned"),
        ("2026-03-10T12:00:00+00:00", "entered-in-error"),
    ],
)
def test_charges_outside_the_month_or_not_charged_are_ignored(when: str, status: str) -> None:
    v = ev(add(ready_facts(), billed=(charge("c", "G0181", when=when, status=status),)))
    assert v.status == "ready" and not any(f.category == "conflict" for f in v.findings)


def test_charge_month_uses_the_practice_time_zone() -> None:
    facts = add(ready_facts(), billed=(charge("c", "G0181", when="2026-04-01T03:00:00+00:00"),))
    assert "conflict.g0181" not in rules_of(ev(facts, tz="UTC"))
    assert "conflict.g0181" in rules_of(ev(facts, tz="America/Chicago"))


def test_unknown_performer_takes_the_stricter_outcome() -> None:
    v = ev(add(ready_facts(), billed=(charge("c", "99424", performer=None),)))
    f = finding(v, "conflict.pcm-same-practitioner")
    assert f.severity == "blocker" and "could not be matched" in f.message


def test_charges_of_one_rule_share_one_finding() -> None:
    v = ev(add(ready_facts(), billed=(charge("a", "99490"), charge("b", "99439"))))
    f = finding(v, "conflict.ccm-other-practitioner")
    assert f.evidence == ("ChargeItem/a", "ChargeItem/b")


def test_codes_outside_the_table_are_ignored() -> None:
    v = ev(add(ready_facts(), billed=(charge("a", "G0506"), charge("b", "99213"))))
    assert v.status == "ready" and not any(f.category == "conflict" for f in v.findings)
