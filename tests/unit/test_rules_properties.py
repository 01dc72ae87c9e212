"""Property tests (hypothesis): monotone in minutes, never an invalid claim, never raises on odd facts."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rules.code_selection import violations
from rules.packs import load_pack
from rules.records import (
    Attestation,
    BilledService,
    CarePlanRecord,
    Coding,
    ConditionRecord,
    ConsentRecord,
    InpatientStay,
    PatientFacts,
    PatientRecord,
    TimeEntry,
    VisitRecord,
)
from tests.support.facts import CPT, DOC, ICD10, NURSE, NURSE2, OTHER_DOC, FakeClassifier, ev, ready_facts

PEOPLE = st.sampled_from([DOC, OTHER_DOC, NURSE, NURSE2, None, "PractitionerRole/r1"])
ZONES = st.sampled_from(["UTC", "America/Chicago", "Pacific/Auckland", "Asia/Kolkata"])
MONTHS = st.sampled_from(["2026-02", "2026-03", "2026-04", "2025-12"])
CLASSIFY = FakeClassifier()
try:  # the real, data-backed classifier (rules.chronic) when it is present
    from rules.chronic import classify as REAL
except ImportError:  # pragma: no cover - only while the value-sets module is missing
    REAL = None
SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# Moments around March 2026, sometimes without an offset, sometimes with odd offsets.
_BASE = datetime(2026, 1, 1, tzinfo=UTC)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=-5)), timezone(timedelta(hours=13)), None])
moments = st.builds(
    lambda secs, tz: (
        (_BASE + timedelta(seconds=secs)).astimezone(tz)
        if tz
        else (_BASE + timedelta(seconds=secs)).replace(tzinfo=None)
    ),
    st.integers(min_value=-40 * 86400, max_value=150 * 86400),
    offsets,
)
maybe = st.none() | moments
statuses = st.sampled_from(["finished", "entered-in-error", "cancelled", "in-progress", "", "FINISHED"])
programs = st.sampled_from(["ccm", "ccm", "ccm", "rpm", "pcm", "tcm", "bhi", "weird"])
lengths = st.one_of(
    st.floats(min_value=0, max_value=200, allow_nan=False),
    st.sampled_from([float("nan"), float("inf"), -3.0]),
)
notes = st.lists(
    st.sampled_from(["followed up", "", "Reviewed BP log; raised dose; recheck Friday ok", "x" * 5]),
    max_size=2,
).map(tuple)


@st.composite
def time_entries(draw: st.DrawFn, program: st.SearchStrategy[str] = programs) -> TimeEntry:
    start = draw(moments)
    minutes = draw(lengths)
    return TimeEntry(
        id=f"Encounter/e{draw(st.integers(0, 10_000))}",
        status=draw(statuses),
        program=draw(program),
        start=start,
        end=start,
        minutes=minutes,
        performer=draw(PEOPLE),
        notes=draw(notes),
    )


@st.composite
def ccm_entries(draw: st.DrawFn) -> TimeEntry:
    start = datetime(2026, 3, 1, tzinfo=UTC) + timedelta(minutes=draw(st.integers(-600, 31 * 24 * 60)))
    minutes = draw(st.floats(min_value=0.5, max_value=90, allow_nan=False))
    return TimeEntry(
        id=f"Encounter/n{draw(st.integers(0, 10_000))}",
        status="finished",
        program="ccm",
        start=start,
        end=start + timedelta(minutes=minutes),
        minutes=minutes,
        performer=draw(PEOPLE),
    )


codes = st.sampled_from(["E11.9", "E11.65", "I10", "I50.9", "J44.9", "J00", "", "zzz"])
conditions = st.builds(
    lambda code, cs, vs, onset: ConditionRecord(
        "Condition/c", (Coding(ICD10, code),), "", cs, vs, onset, None
    ),
    codes,
    st.sampled_from([None, "active", "resolved", "relapse", "Inactive"]),
    st.sampled_from([None, "confirmed", "refuted", "entered-in-error"]),
    maybe,
)
consents = st.builds(
    lambda status, obtained, who, stop, disc: ConsentRecord(
        "Consent/k", status, ("ccm",), obtained, who, None, stop, "verbal", frozenset(disc)
    ),
    st.sampled_from(["active", "rejected", "inactive", "draft", "proposed"]),
    maybe,
    PEOPLE,
    maybe,
    st.sets(st.sampled_from(["ccm-available", "cost-sharing", "one-practitioner", "right-to-stop", "other"])),
)
plans = st.builds(
    lambda status, start, end, prog: CarePlanRecord("CarePlan/p", status, prog, start, end),
    st.sampled_from(["active", "draft", "completed"]),
    maybe,
    maybe,
    st.sampled_from([("ccm",), (), ("pcm",)]),
)
visits = st.builds(
    lambda code, start, who: VisitRecord("Encounter/v", "finished", (Coding(CPT, code),), start, None, who),
    st.sampled_from(["99213", "99211", "G0439", "x"]),
    maybe,
    st.lists(PEOPLE.filter(bool), max_size=2).map(tuple),
)
attestations = st.builds(
    lambda kind, who, when: Attestation("Task/a", kind, who, when),
    st.sampled_from(["risk-attestation", "mdm-moderate", "mdm-high", "mdm-low", "?"]),
    PEOPLE,
    maybe,
)
billed = st.builds(
    lambda code, status, start, end, who: BilledService("ChargeItem/b", code, status, start, end, who),
    st.sampled_from(["99490", "99424", "G0556", "99495", "G0181", "90960", "99999", "", "g0182"]),
    st.sampled_from(["billed", "billable", "planned"]),
    maybe,
    maybe,
    PEOPLE,
)
stays = st.builds(lambda s, e: InpatientStay("Encounter/s", s, e), maybe, maybe)
patients = st.builds(
    lambda dead, when, gps: PatientRecord(
        "Patient/p", deceased=dead, deceased_at=when, general_practitioners=gps
    ),
    st.booleans(),
    maybe,
    st.lists(PEOPLE.filter(bool), max_size=2).map(tuple),
)
facts_strategy = st.builds(
    PatientFacts,
    patient=patients,
    conditions=st.lists(conditions, max_size=4).map(tuple),
    consents=st.lists(consents, max_size=3).map(tuple),
    care_plans=st.lists(plans, max_size=2).map(tuple),
    visits=st.lists(visits, max_size=2).map(tuple),
    time_entries=st.lists(time_entries(), max_size=8).map(tuple),
    attestations=st.lists(attestations, max_size=3).map(tuple),
    billed=st.lists(billed, max_size=3).map(tuple),
    stays=st.lists(stays, max_size=2).map(tuple),
)


def _check_claim(v) -> None:  # type: ignore[no-untyped-def]
    pack = load_pack(v.policy)
    assert violations(pack, v.codes) == []
    if v.codes:
        track = pack.track(v.track)
        assert {c.code for c in v.codes} <= {track.base, track.add_on}
        assert v.codes[0].code == track.base and v.status == "ready"
    else:
        assert v.status != "ready"


@SETTINGS
@given(facts=facts_strategy, month=MONTHS, tz=ZONES, who=st.none() | PEOPLE, real=st.booleans())
def test_evaluate_never_raises_and_never_bills_an_invalid_claim(facts, month, tz, who, real) -> None:  # type: ignore[no-untyped-def]
    classifier = REAL if real and REAL is not None else CLASSIFY
    v = ev(facts, month, tz=tz, billing_practitioner=who, classifier=classifier)
    assert v.status in ("ready", "not-yet", "blocked", "not-eligible")
    _check_claim(v)
    assert v.minutes.billing_practitioner <= v.minutes.clinical_staff
    assert v.minutes.clinical_staff >= 0 and v.minutes.not_counted >= 0
    if v.next_threshold is not None:
        assert v.next_threshold.minutes_needed >= 1


@SETTINGS
@given(
    base=st.lists(ccm_entries(), max_size=6),
    extra=ccm_entries(),
    tz=ZONES,
    mdm=st.booleans(),
    blocked=st.booleans(),
)
def test_adding_ccm_time_never_lowers_payment_or_units(base, extra, tz, mdm, blocked) -> None:  # type: ignore[no-untyped-def]
    facts = ready_facts(time_entries=tuple(base))
    if mdm:
        facts = replace(
            facts,
            attestations=(
                *facts.attestations,
                Attestation("Task/m", "mdm-high", DOC, datetime(2026, 3, 15, tzinfo=UTC)),
            ),
        )
    if blocked:
        facts = replace(facts, care_plans=())
    before = ev(facts, "2026-03", tz=tz, classifier=CLASSIFY)
    after = ev(
        replace(facts, time_entries=(*facts.time_entries, extra)), "2026-03", tz=tz, classifier=CLASSIFY
    )
    _check_claim(before)
    _check_claim(after)
    assert after.minutes.clinical_staff >= before.minutes.clinical_staff
    assert after.minutes.billing_practitioner >= before.minutes.billing_practitioner
    assert after.payment_total >= before.payment_total
    if before.status == "ready":
        assert after.status == "ready"
    if blocked:
        assert before.status == after.status == "blocked"
    if before.track is not None and before.track == after.track:
        units_before = {c.code: c.units for c in before.codes}
        units_after = {c.code: c.units for c in after.codes}
        assert all(units_after.get(code, 0) >= n for code, n in units_before.items())


@settings(max_examples=300, deadline=None)
@given(
    a=st.integers(0, 400), b=st.integers(0, 400), pack_id=st.sampled_from(["cms-pfs-2025", "cms-pfs-2026"])
)
def test_track_units_are_monotone_and_capped(a: int, b: int, pack_id: str) -> None:
    lo, hi = sorted((a, b))
    for track in load_pack(pack_id).tracks:
        base_lo, add_lo = track.units(lo)
        base_hi, add_hi = track.units(hi)
        assert base_hi >= base_lo and add_hi >= add_lo
        assert base_hi <= 1 and (track.add_on_cap is None or add_hi <= track.add_on_cap)
        assert add_hi == 0 or base_hi == 1
