"""Metamorphic properties (issue 11): FHIR in, verdict out, and the verdict must not depend on the form.

From every export-shape story (tests/data/make_corpus.py) the verdict stays the same when
- each reference independently takes another form (relative, absolute, versioned, contained, via
  PractitionerRole, by NPI only) and each time another spelling (UTC, local offset, no offset);
- resources are reordered or duplicated;
- unrelated resources (other patients, Observations, Organizations) are added;
- all times shift by a whole number of days across the March daylight-saving change in the practice zone.
And a verdict is never `ready` while a blocker stands (cms-rules.md §5.3, §7).
"""

from __future__ import annotations

import copy
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_mapping.reader import read_facts
from fhir_mapping.sources import resources_from_json
from rules.evaluate import evaluate
from tests.support.corpus import load_corpus
from tests.unit.test_rules_properties import facts_strategy

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


MC = load_corpus()
STORIES: dict[str, dict[str, Any]] = MC.stories()
NAMES = sorted(STORIES)
FORMS = ("epic", "oracle", "athena", "ndjson")  # reference and time spellings that need no transaction


def verdict(resources: list[Any], story: dict[str, Any]) -> tuple[Any, ...]:
    who = story.get("billing_practitioner")
    bp = f"Practitioner?identifier={MC.NPI}|{MC.NPIS[who]}" if who else None
    facts = read_facts(resources_from_json(resources), patient_id="p1", tz=MC.TZ)
    v = evaluate(facts, MC.MONTH, tz=MC.TZ, billing_practitioner=bp)
    assert not (v.status == "ready" and v.blockers), "ready while a blocker stands"
    return (
        v.status,
        tuple((c.code, c.units) for c in v.codes),
        v.minutes.clinical_staff,
        v.minutes.billing_practitioner,
    )


def mixed(resources: list[dict[str, Any]], draw: Any) -> list[dict[str, Any]]:
    """Each reference and each time in its own, randomly drawn, spelling."""
    pick = st.sampled_from(FORMS)
    out: list[dict[str, Any]] = []

    def walk(node: Any, contained: dict[str, str]) -> Any:
        if isinstance(node, dict):
            result: dict[str, Any] = {}
            for k, v in node.items():
                if k == "reference" and isinstance(v, str) and "/" in v:
                    result.update(MC._reference(v, draw(pick), None, contained))
                else:
                    result[k] = walk(v, contained)
            return result
        if isinstance(node, list):
            return [walk(v, contained) for v in node]
        if isinstance(node, str) and MC._LOCAL_TIME.match(node):
            return MC.TIMES[draw(pick)](node)
        return node

    for res in resources:
        contained: dict[str, str] = {}
        body = walk(copy.deepcopy(res), contained)
        if contained:
            body["contained"] = [
                {
                    "resourceType": "Practitioner",
                    "id": local,
                    "identifier": [{"system": MC.NPI, "value": MC.NPIS[p]}],
                }
                for p, local in contained.items()
            ]
        out.append(body)
    for pid in MC.NPIS:  # the roles an Epic-style reference may go through
        out.append(
            {
                "resourceType": "PractitionerRole",
                "id": f"role-{pid}",
                "practitioner": {"reference": f"Practitioner/{pid}"},
            }
        )
    return out


def baseline(name: str) -> tuple[Any, ...]:
    story = STORIES[name]
    return verdict(MC.render(story["resources"], "athena"), story)


BASELINES = {name: baseline(name) for name in NAMES}


@SETTINGS
@given(name=st.sampled_from(NAMES), data=st.data())
def test_reference_and_time_forms_do_not_change_the_verdict(name: str, data: st.DataObject) -> None:
    story = STORIES[name]
    assert verdict(mixed(story["resources"], data.draw), story) == BASELINES[name]


UNRELATED = [
    {
        "resourceType": "Observation",
        "id": "obs-1",
        "status": "final",
        "code": {"text": "BP"},
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": "2026-03-04T10:00:00Z",
    },
    {"resourceType": "Organization", "id": "clinic", "name": "Clinic"},
    {"resourceType": "Patient", "id": "p2", "birthDate": "1940-01-01"},
    {
        "resourceType": "Condition",
        "id": "other-dm",
        "clinicalStatus": {"coding": [{"code": "active"}]},
        "code": {"coding": [{"system": MC.ICD10, "code": "E11.9"}]},
        "subject": {"reference": "Patient/p2"},
    },
    {
        "resourceType": "Claim",
        "id": "other-claim",
        "status": "active",
        "patient": {"reference": "Patient/p2"},
        "item": [
            {
                "sequence": 1,
                "productOrService": {"coding": [{"system": MC.CPT, "code": "99490"}]},
                "servicedDate": "2026-03-02",
            }
        ],
    },
    {
        "resourceType": "Encounter",
        "id": "other-te",
        "status": "finished",
        "type": [{"coding": [{"system": MC.CARE_PROGRAM, "code": "ccm"}]}],
        "subject": {"reference": "Patient/p2"},
        "participant": [{"individual": {"reference": "Practitioner/rn-1"}}],
        "period": {"start": "2026-03-03T09:00:00Z", "end": "2026-03-03T10:00:00Z"},
    },
]


@SETTINGS
@given(
    name=st.sampled_from(NAMES),
    order=st.randoms(use_true_random=False),
    dupes=st.lists(st.integers(min_value=0, max_value=40), max_size=6),
    extra=st.lists(st.sampled_from(range(len(UNRELATED))), max_size=len(UNRELATED), unique=True),
)
def test_order_duplicates_and_unrelated_resources_do_not_change_the_verdict(
    name: str, order: Any, dupes: list[int], extra: list[int]
) -> None:
    story = STORIES[name]
    resources = MC.render(story["resources"], "athena")
    resources += [copy.deepcopy(resources[i % len(resources)]) for i in dupes]
    resources += [copy.deepcopy(UNRELATED[i]) for i in extra]
    order.shuffle(resources)
    assert verdict(resources, story) == BASELINES[name]


def shifted(node: Any, days: int) -> Any:
    """Every local time moved by `days` x 24 real hours, every date by `days` days."""
    zone = ZoneInfo(MC.TZ)
    if isinstance(node, dict):
        return {k: v if k == "birthDate" else shifted(v, days) for k, v in node.items()}
    if isinstance(node, list):
        return [shifted(v, days) for v in node]
    if isinstance(node, str) and MC._LOCAL_TIME.match(node):
        instant = datetime.fromisoformat(node).replace(tzinfo=zone).astimezone(ZoneInfo("UTC"))
        return (instant + timedelta(days=days)).astimezone(zone).replace(tzinfo=None).isoformat()
    if isinstance(node, str) and len(node) == 10 and node[4] == "-" and node[7] == "-" and node[:4].isdigit():
        return (datetime.fromisoformat(node) + timedelta(days=days)).date().isoformat()
    return node


@SETTINGS
@given(
    name=st.sampled_from(NAMES), days=st.integers(min_value=-1, max_value=13), shape=st.sampled_from(FORMS)
)
def test_shifting_all_times_across_dst_does_not_change_the_verdict(name: str, days: int, shape: str) -> None:
    """The story's month events lie on 1-10 March; shifted they cross 8 March (DST) and stay in March."""
    story = STORIES[name]
    moved = [shifted(r, days) for r in story["resources"]]
    assert verdict(MC.render(moved, shape), story) == BASELINES[name]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts=facts_strategy, tz=st.sampled_from(["UTC", "America/New_York", "Pacific/Auckland"]))
def test_never_ready_while_a_blocker_stands(facts: Any, tz: str) -> None:
    v = evaluate(facts, "2026-03", tz=tz)
    assert not (v.status == "ready" and v.blockers)
    assert (v.status == "ready") == bool(v.codes)
