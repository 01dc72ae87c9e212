"""The CDS card names people: names from the prefetch, at most one extra batch of reads, never raw ids."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import date
from typing import Any

from rules.verdict import Finding, Minutes, NextThreshold, Verdict
from smart_app.cds.card import build_card, card_names, card_people
from smart_app.readiness.names import names_in

LAUNCH = "http://127.0.0.1:5000/launch"
DR = "Practitioner/8a749752-1c2d-4e5f-9a0b-112233445566"
OTHER = "Practitioner/other-billing"
NPI_ONLY = "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1234567893"

SUPERSEDED = Finding(
    "consent.different-practitioner", "consent", "blocker",
    f"The CCM consent names a different billing practitioner ({OTHER}), not {DR}. A new consent is needed.",
    "cms-rules.md 3.3", ("Consent/c1",),
)


def _verdict(**kw: Any) -> Verdict:
    base = Verdict(
        patient="Patient/p1", month="2026-11", policy="cms-pfs-2026", policy_version="2026.07",
        status="blocked", codes=(), minutes=Minutes(25, 0),
        next_threshold=NextThreshold("99490", 0, "clinical-staff", 20), chronic_conditions=(),
        findings=(SUPERSEDED,), track="clinical-staff", billing_practitioner=DR,
    )
    return replace(base, **kw)


PREFETCH = [
    {"resourceType": "Patient", "id": "p1"},
    {"resourceType": "Consent", "id": "c1", "provision": {"actor": [
        {"reference": {"reference": OTHER, "display": "Dr. Alan Turing"}}]}},
    {"resourceType": "Practitioner", "id": DR.split("/")[1],
     "name": [{"given": ["Grace"], "family": "Hopper"}],
     "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}]},
]


def test_the_card_shows_names_from_the_prefetch_and_no_ids() -> None:
    verdict = _verdict()
    names = card_names(verdict, PREFETCH)
    card = build_card(verdict, launch_url=LAUNCH, today=date(2026, 11, 10), names=names)
    assert card is not None
    text = card["detail"] + card["summary"]
    assert "Practitioner/" not in text
    assert "Billing practitioner: Grace Hopper" in card["detail"]
    assert "different billing practitioner (Dr. Alan Turing), not Grace Hopper" in card["detail"]


def test_a_practitioner_known_only_by_npi_is_named_from_the_prefetch() -> None:
    assert names_in(PREFETCH)[NPI_ONLY] == "Grace Hopper"
    card = build_card(_verdict(billing_practitioner=NPI_ONLY, findings=()), launch_url=LAUNCH,
                      today=date(2026, 11, 10), names=names_in(PREFETCH))
    assert card is not None and "Billing practitioner: Grace Hopper" in card["detail"]


@dataclass
class _Answer:
    resources: list[dict[str, Any]]
    ok: bool = True


@dataclass
class _Batches:
    answers: list[dict[str, Any]]
    calls: list[list[str]] = field(default_factory=list)

    def __call__(self, urls: list[str]) -> list[_Answer]:
        self.calls.append(list(urls))
        return [_Answer([r]) for r in self.answers if f"{r['resourceType']}/{r['id']}" in urls]


def test_missing_names_cost_one_batch_and_none_when_all_are_known() -> None:
    verdict = _verdict()
    turing = {"resourceType": "Practitioner", "id": "other-billing", "name": [{"text": "Alan Turing"}]}
    batch = _Batches([turing, PREFETCH[2]])
    names = card_names(verdict, [PREFETCH[0]], batch)
    assert batch.calls == [[DR, OTHER]]  # one request, only for the people the card shows
    assert names[DR] == "Grace Hopper" and names[OTHER] == "Alan Turing"
    again = _Batches([])
    card_names(verdict, PREFETCH, again)
    assert again.calls == []


def test_without_a_name_the_card_says_unnamed_never_the_id() -> None:
    def failing(urls: list[str]) -> list[Any]:
        raise OSError("server down")

    verdict = _verdict()
    names = card_names(verdict, [], failing)
    card = build_card(verdict, launch_url=LAUNCH, today=date(2026, 11, 10), names=names)
    assert card is not None
    assert "Practitioner/" not in card["detail"]
    assert "Unnamed practitioner" in card["detail"]
    assert card_people(verdict) == [DR, OTHER]
