"""The month's reach (fhir_mapping.reach): what a month's verdict reads of the logged-time history.

Only the calendar month's minutes count (cms-rules.md §3.6: "minutes from different months can never be
combined"), so time entries and stays wholly outside the month (two days of slack either side) are not
read; visits and billing evidence (CPT/HCPCS-typed Encounters, §3.2, §2) are read at any date. The
properties: reading with the reach never changes a verdict (status, codes, minutes, findings), and only
drops from `skipped` what `unread` names; `within` (the stream's early drop) gives read_facts the same
facts in any order.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_mapping.reach import Reach, charge_outside, outside, unread, within
from fhir_mapping.reader import read_facts
from rules.evaluate import evaluate
from rules.month import Month
from smart_app.readiness.fetch import plan_queries
from smart_app.readiness.options import EvaluationOptions
from smart_app.readiness.use_case import ResourceSource, verdict_for, verdicts_for_months
from tests.support.corpus import load_corpus

SETTINGS = settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
OCTOBER = Reach.of(Month.parse("2026-10"))


MC = load_corpus()


def entry(start: Any, end: Any = None, length: Any = None, *, types: Any = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "Encounter",
        "id": "e1",
        "status": "finished",
        "type": types if types is not None else [MC.concept(MC.CARE_PROGRAM, "ccm")],
        "subject": {"reference": "Patient/p1"},
        "period": {k: v for k, v in (("start", start), ("end", end)) if v is not None},
    }
    if length is not None:
        res["length"] = length
    return res


# ---------------------------------------------------------------------------------------------- cases


def test_the_reach_is_the_month_and_two_days_either_side() -> None:
    assert (OCTOBER.lo.isoformat(), OCTOBER.hi.isoformat()) == ("2026-09-29", "2026-11-03")
    assert Reach.of(Month.parse("2026-09"), Month.parse("2026-10")).lo.isoformat() == "2026-08-30"


def test_the_panel_asks_the_server_for_the_same_dates() -> None:
    """One definition: the panel's Encounter search and the file reader use the same reach."""
    lo, hi = Reach.of(Month.parse("2026-10")).search()
    month_search = next(q.url for q in plan_queries("p1", "2026-10") if "_revinclude" in q.url)
    assert f"date={lo}" in month_search and f"date={hi}" in month_search


def test_entries_in_or_near_the_month_are_read() -> None:
    for start, end in [("2026-10-15T10:00:00Z", "2026-10-15T10:20:00Z"), ("2026-09-30T23:00:00-05:00", None),
                       ("2026-11-01T00:30:00+14:00", None), ("2026-09-28", "2026-10-01")]:
        assert not outside(entry(start, end, {"value": 20, "unit": "min"}), OCTOBER), start


def test_entries_long_before_or_after_the_month_are_not_read() -> None:
    assert outside(entry("2026-03-04T10:00:00Z", "2026-03-04T10:20:00Z", {"value": 20}), OCTOBER)
    assert outside(entry("2026-12-01T10:00:00-05:00"), OCTOBER)  # starts after: nothing else matters
    assert outside(entry("2025-11-04", "2025-11-04"), OCTOBER)


def test_a_length_that_could_run_into_the_month_keeps_the_entry() -> None:
    """Minutes are counted from the start and the length (§3.6), so the length is read as hours, the
    largest unit a length may have: an entry is never judged over while its minutes could reach in."""
    assert not outside(entry("2026-09-20T10:00:00Z", "2026-09-20T10:20:00Z", {"value": 300}), OCTOBER)
    assert outside(entry("2026-09-20T10:00:00Z", "2026-09-20T10:20:00Z", {"value": 24}), OCTOBER)
    assert not outside(entry("2026-09-27T10:00:00Z", "2026-09-27", {"value": 24, "unit": "min"}), OCTOBER)
    assert outside(entry("2026-09-26T10:00:00Z", "2026-09-26", {"value": 24, "unit": "min"}), OCTOBER)


def test_entries_without_a_known_end_or_with_odd_dates_are_read_and_judged_by_the_reader() -> None:
    for res in [entry("2026-03-04T10:00:00Z"), entry("2026-03"), entry("not a date", "2026-03-04"),
                entry("2026-03-04T10:00:00Z", "2026-13-xx"), entry("2026-03-04T10:00:00Z", 5),
                entry("2026-03-04T10:00:00Z", None, {"value": "12"}), entry(None, "2026-03-04"),
                entry("2026-03-04T10:00:00Z", "2026-03-04T10:20:00Z", {"value": float("nan")})]:
        assert not outside(res, OCTOBER), res["period"]


def test_visits_and_billing_evidence_are_read_at_any_date() -> None:
    """An initiating visit within the year before (§3.2) and CPT-typed Encounters whatever their date."""
    hcpcs = "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets"
    for system in (MC.CPT, "urn:oid:2.16.840.1.113883.6.12", "CPT", hcpcs):
        visit = entry("2026-01-04T10:00:00Z", "2026-01-04T10:30:00Z", types=[MC.concept(system, "99213")])
        assert not outside(visit, OCTOBER), system


def test_an_inpatient_stay_without_an_end_is_read() -> None:
    """A stay with no end is still going on (§3.6: inpatient minutes do not count); a length is no end."""
    for length in (None, {"value": 5, "unit": "min"}):
        stay = entry("2026-02-24T23:00:00Z", None, length, types=[])
        stay["class"] = {"code": "IMP"}
        assert not outside(stay, OCTOBER)


def charge(when: Any = None, period: Any = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "ChargeItem", "id": "c1", "status": "billed",
                           "code": MC.concept(MC.CPT, "99490"), "subject": {"reference": "Patient/p1"}}
    if when is not None:
        res["occurrenceDateTime"] = when
    if period is not None:
        res["occurrencePeriod"] = period
    return res


def test_services_billed_in_other_months_are_not_read() -> None:
    """Concurrency asks what was billed in the month (§2): a ChargeItem wholly outside the reach is not read;
    an undated one, an open period or an odd date is read (and judged by the reader)."""
    assert charge_outside(charge("2026-03-31"), OCTOBER)
    assert charge_outside(charge("2026-12-01T10:00:00Z"), OCTOBER)
    assert charge_outside(charge(period={"start": "2026-08-01", "end": "2026-08-31"}), OCTOBER)
    for res in [charge("2026-10-31"), charge("2026-09-29T23:00:00-12:00"), charge(),
                charge(period={"start": "2026-08-01"}),
                charge(period={"start": "2026-08-01", "end": "2026-10-02"}),
                charge("2026-xx-01"), charge(period="2026-08"), charge(5)]:
        assert not charge_outside(res, OCTOBER), res


def _old_entry_with_task(eid: str, *, attestation: bool = False, malformed: bool = False) -> list[Any]:
    enc, task = MC.time_entry(eid, "2025-11-04T10:00:00-05:00", "2025-11-04T10:20:00-05:00", 20)
    if attestation:
        task["code"] = MC.concept(MC.CARE_ACTIVITY, "risk-attestation")
    if malformed:
        task["note"] = "not a list"
    return [enc, task]


def test_tasks_of_unread_entries_are_not_read_unless_they_attest() -> None:
    reach = Reach.of(Month.parse("2026-03"))
    old = _old_entry_with_task("old", malformed=True)
    attest = _old_entry_with_task("old2", attestation=True)
    resources = [*MC.base(), *old, *attest]
    assert unread(resources, reach) == {"Encounter/old", "Task/task-old", "Encounter/old2"}
    for order in (resources, list(reversed(resources))):
        facts = read_facts(order, "p1", MC.TZ, reach)
        assert "Task/task-old" not in {s.resource for s in facts.skipped}  # not read: its entry is unread
        assert "Encounter/old" not in {t.id for t in facts.time_entries}
        assert "Task/task-old2" in {a.id for a in facts.attestations}
    full = read_facts(resources, "p1", MC.TZ)
    assert "Task/task-old" in {s.resource for s in full.skipped}  # read without a reach: reported


# ------------------------------------------------------------------------------------------- properties

_ZONES = [UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=13)), None]
_UNITS = ["min", "h", "s", "d", "furlong", None]


def _text(moment: datetime, tz: tzinfo | None) -> str:
    return moment.replace(tzinfo=tz).isoformat() if tz else moment.isoformat()


@st.composite
def history(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Time entries (some with Tasks), stays and visits over the 14 months around March 2026."""
    out: list[dict[str, Any]] = []
    for i in range(draw(st.integers(min_value=1, max_value=10))):
        start = datetime(2026, 3, 15, 12) + timedelta(hours=draw(st.integers(-420 * 24, 420 * 24)))
        tz = draw(st.sampled_from(_ZONES))
        minutes = draw(st.sampled_from([5, 20, 45, 90, 1500, 50000]))
        spell = draw(st.sampled_from(["datetime", "date", "no-end", "garbage-end"]))

        end: Any = _text(start + timedelta(minutes=minutes), tz)
        if spell == "date":
            end = (start + timedelta(minutes=minutes)).date().isoformat()
        elif spell == "no-end":
            end = None
        elif spell == "garbage-end":
            end = "2026-99-99"
        kind = draw(st.sampled_from(["ccm", "ccm", "rpm", "stay", "visit", "charge"]))
        if kind == "charge":
            who = draw(st.sampled_from(["dr-a", "dr-b"]))
            item = {
                "resourceType": "ChargeItem", "id": f"ci{i}",
                "status": draw(st.sampled_from(["billable", "billed", "entered-in-error", "planned"])),
                "code": MC.concept(MC.CPT, draw(st.sampled_from(["99490", "99424", "99487", "G0556"]))),
                "subject": {"reference": "Patient/p1"},
                "performer": [{"actor": {"reference": f"Practitioner/{who}"}}],
            }
            if spell == "no-end":
                item["occurrencePeriod"] = {"start": _text(start, tz)}
            elif draw(st.booleans()):
                item["occurrenceDateTime"] = _text(start, tz) if spell != "date" else start.date().isoformat()
            else:
                item["occurrencePeriod"] = {"start": _text(start, tz), "end": end}
            out.append(item)
            continue
        eid = f"h{i}"
        enc, task = MC.time_entry(eid, _text(start, tz), end or _text(start, tz), minutes)
        if end is None:
            del enc["period"]["end"]
        else:
            enc["period"]["end"] = end
        unit = draw(st.sampled_from(_UNITS))
        if "length" in enc and draw(st.booleans()):
            enc["length"] = {"value": draw(st.sampled_from([minutes, float(minutes), -3, "12"]))} | (
                {"unit": unit} if unit else {}
            )
        elif draw(st.booleans()):
            enc.pop("length", None)
        if kind == "rpm":
            enc["type"] = [MC.concept(MC.CARE_PROGRAM, "rpm")]
        elif kind == "stay":
            enc["type"], enc["class"] = [], {"code": "IMP"}
        elif kind == "visit":
            enc["type"] = [MC.concept(MC.CPT, draw(st.sampled_from(["99213", "99490", "G0506"])))]
        out.append(enc)
        if kind in ("ccm", "rpm") and draw(st.booleans()):
            if draw(st.booleans()):
                task["code"] = MC.concept(MC.CARE_ACTIVITY, "risk-attestation")
            if draw(st.booleans()):
                task["note"] = "not a list"
            out.insert(draw(st.integers(0, len(out))), task)
    return out


def _verdict(resources: list[dict[str, Any]], month: str, reach: Reach | None) -> tuple[Any, ...]:
    facts = read_facts(resources, "p1", MC.TZ, reach)
    v = evaluate(facts, month, tz=MC.TZ)
    findings = tuple((f.rule, f.severity, f.evidence) for f in v.findings)
    return v.status, v.codes, v.minutes, findings, {s.resource for s in v.skipped}


@SETTINGS
@given(extra=history(), month=st.sampled_from(["2026-02", "2026-03", "2026-04", "2025-03", "2027-03"]),
       data=st.data())
def test_reading_with_the_reach_never_changes_the_verdict(
    extra: list[dict[str, Any]], month: str, data: st.DataObject
) -> None:
    resources = data.draw(st.permutations([*MC.base(), *extra]))
    reach = Reach.of(Month.parse(month))
    *with_reach, skipped = _verdict(resources, month, reach)
    *full, all_skipped = _verdict(resources, month, None)
    assert with_reach == full
    gone = unread(resources, reach)  # and an attesting Task's notes, which had an unread entry to go on
    gone |= {f"Task/{r['id']}" for r in resources if r.get("encounter", {}).get("reference") in gone}
    assert skipped <= all_skipped and all_skipped - skipped <= gone


@SETTINGS
@given(extra=history(), month=st.sampled_from(["2026-03", "2025-09"]), data=st.data())
def test_dropping_early_in_the_stream_gives_the_reader_the_same_facts(
    extra: list[dict[str, Any]], month: str, data: st.DataObject
) -> None:
    resources = data.draw(st.permutations([*MC.base(), *extra]))
    reach = Reach.of(Month.parse(month))
    assert read_facts(list(within(resources, reach)), "p1", MC.TZ, reach) == read_facts(
        resources, "p1", MC.TZ, reach
    )


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(extra=history(), data=st.data())
def test_the_worklist_trend_gives_each_month_the_panel_verdict(
    extra: list[dict[str, Any]], data: st.DataObject
) -> None:
    """The worklist reads once with its months' reach together; each month's verdict is the one a single
    month's reading gives (status, codes, minutes, findings)."""
    resources = data.draw(st.permutations([*MC.base(), *extra]))
    months = [Month.parse(m) for m in ("2026-01", "2026-02", "2026-03")]
    options = EvaluationOptions(months[-1], MC.TZ)
    _, trend = verdicts_for_months(resources, "p1", options, months)
    for month, v in zip(months, trend, strict=True):
        one = verdict_for(ResourceSource(resources), "p1", options.for_month(month)).verdict
        assert (v.status, v.codes, v.minutes) == (one.status, one.codes, one.minutes)
        assert v.findings == one.findings
