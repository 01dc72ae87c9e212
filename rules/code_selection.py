"""Code selection: one CCM track a month, the highest-paying compliant option by the pack's payments.

A track earns its base code when its minutes reach the base threshold, then one add-on unit per further full
block, up to the add-on's cap. Complex CCM also needs a moderate or high MDM attestation by the billing
practitioner in the month. Never two tracks, never an add-on without its base, never units over a cap.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from rules import rule_ids
from rules.packs import PolicyPack, Track
from rules.patient_month import PatientMonth
from rules.record_type import record
from rules.records import Attestation
from rules.verdict import CodeLine, Finding, Minutes, NextThreshold

MDM_KINDS = frozenset({"mdm-moderate", "mdm-high"})
SOURCE_WORDS = {
    "clinical_staff": "clinical-staff time (including the practitioner's own)",
    "billing_practitioner": "the billing practitioner's own time",
}


@record
class Option:
    """The codes one track would bill."""

    track: Track
    minutes: int
    lines: tuple[CodeLine, ...]  # empty when the base threshold is not met
    payment: Decimal
    payment_known: bool

    @property
    def earns(self) -> bool:
        return bool(self.lines)

    @property
    def add_on_units(self) -> int:
        return sum(line.units for line in self.lines if line.code == self.track.add_on)


@record
class Selection:
    """The track chosen, why, and its codes."""

    track: Track | None
    reason: str
    codes: tuple[CodeLine, ...]
    next_threshold: NextThreshold | None
    findings: tuple[Finding, ...]

    @property
    def payment(self) -> Decimal:
        return sum(((c.payment_each or Decimal(0)) * c.units for c in self.codes), Decimal(0))


def mdm_attestation(pm: PatientMonth) -> Attestation | None:
    """A moderate/high MDM attestation by the billing practitioner dated in the month."""
    if not pm.practitioner:
        return None
    for a in pm.facts.attestations:
        if a.kind in MDM_KINDS and pm.is_practitioner(a.practitioner) and pm.in_month(a.at):
            return a
    return None


def option(pack: PolicyPack, track: Track, minutes: int) -> Option:
    """What `minutes` earn on `track`."""
    base_units, add_units = track.units(minutes)
    lines: list[CodeLine] = []
    known = True
    total = Decimal(0)
    for code, units in ((track.base, base_units), (track.add_on, add_units)):
        if units <= 0:
            continue
        spec = pack.code(code)
        lines.append(CodeLine(code, units, spec.label, spec.payment))
        if spec.payment is None:
            known = False
        else:
            total += spec.payment * units
    return Option(track, minutes, tuple(lines), total, known)


def describe(lines: Iterable[CodeLine]) -> str:
    parts = [
        line.code if line.units == 1 and i == 0 else f"{line.units}×{line.code}"
        for i, line in enumerate(lines)
    ]
    return " + ".join(parts) or "nothing"


def _money(o: Option) -> str:
    return f"${o.payment:.2f}" if o.payment_known else f"${o.payment:.2f} (some amounts unknown)"


def select(pm: PatientMonth, minutes: Minutes, mdm: Attestation | None) -> Selection:
    pack = pm.pack
    options: list[Option] = []
    skipped: list[str] = []
    for track in pack.tracks:
        if track.requires_mdm and mdm is None:
            skipped.append(
                f"{track.id} track ({track.base}) needs a moderate or high MDM attestation by the billing "
                "practitioner this month"
            )
            continue
        options.append(option(pack, track, int(getattr(minutes, track.minutes))))
    earning = [o for o in options if o.earns]
    findings: list[Finding] = []
    if earning:
        order = {o.track.id: i for i, o in enumerate(options)}
        chosen = max(earning, key=lambda o: (o.payment, -order[o.track.id]))
        t = chosen.track
        others = []
        for o in options:
            if o is chosen:
                continue
            if o.earns:
                others.append(f"{o.track.id} track would earn {describe(o.lines)} ({_money(o)})")
            else:
                others.append(f"{o.track.id} track has {o.minutes} of {o.track.base_minutes} min")
        reason = (
            f"{t.label}: {chosen.minutes} min of {SOURCE_WORDS[t.minutes]} earn {describe(chosen.lines)} "
            f"({_money(chosen)}), the highest-paying compliant option"
            + (f"; {'; '.join(others + skipped)}" if others or skipped else "")
            + ". One track per month: never both."
        )
        findings.append(Finding(rule_ids.TIME_TRACK_CHOICE, "time", "info", reason, str(t.citation)))
        nxt = _next_on(chosen)
        staff_cap = _staff_cap(pm, minutes, chosen, mdm)
        if staff_cap is not None:
            findings.append(staff_cap)
        return Selection(t, reason, chosen.lines, nxt, tuple(findings))

    nearest: Option | None = None
    for o in options:
        if nearest is None or (o.track.base_minutes - o.minutes) < (
            nearest.track.base_minutes - nearest.minutes
        ):
            nearest = o
    if nearest is None:  # a pack without usable tracks: nothing is billable
        return Selection(None, "", (), None, ())
    need = nearest.track.base_minutes - nearest.minutes
    t = nearest.track
    alt = [
        f"{o.track.id} track: {o.minutes} of {o.track.base_minutes} min" for o in options if o is not nearest
    ]
    findings.append(
        Finding(
            rule_ids.TIME_BELOW_THRESHOLD,
            "time",
            "info",
            f"{nearest.minutes} min of {SOURCE_WORDS[t.minutes]} counted this month; {need} more min are "
            f"needed for {t.base} ({t.base_minutes} min, met in full, never rounded)"
            + (f". Other tracks: {'; '.join(alt + skipped)}" if alt or skipped else "")
            + ".",
            str(t.citation),
        )
    )
    return Selection(None, "", (), NextThreshold(t.base, need, t.id, t.base_minutes), tuple(findings))


def _next_on(o: Option) -> NextThreshold | None:
    t = o.track
    units = o.add_on_units
    if t.add_on_cap is not None and units >= t.add_on_cap:
        return None
    total = t.base_minutes + (units + 1) * t.add_on_minutes
    return NextThreshold(t.add_on, total - o.minutes, t.id, total)


def _staff_cap(pm: PatientMonth, minutes: Minutes, chosen: Option, mdm: Attestation | None) -> Finding | None:
    staff = next((t for t in pm.pack.tracks if t.minutes == "clinical_staff" and not t.requires_mdm), None)
    if staff is None or staff.max_minutes is None or chosen.track.requires_mdm:
        return None
    over = minutes.clinical_staff - staff.max_minutes
    if over <= 0:
        return None
    complex_track = next((t for t in pm.pack.tracks if t.requires_mdm), None)
    tail = ""
    if complex_track is not None and mdm is None:
        tail = (
            f" Complex CCM ({complex_track.base} at {complex_track.base_minutes} min, {complex_track.add_on} "
            f"per further {complex_track.add_on_minutes} min) needs a moderate or high MDM attestation by "
            "the billing practitioner this month."
        )
    return Finding(
        rule_ids.TIME_STAFF_CAP,
        "time",
        "info",
        f"{over} clinical-staff min beyond {staff.max_minutes} are not billable on the clinical-staff track "
        f"({staff.add_on} is capped at {staff.add_on_cap} units a month).{tail}",
        str(staff.citation),
    )


def violations(pack: PolicyPack, lines: Iterable[CodeLine]) -> list[str]:
    """Claim edits our own selection must pass: caps, add-on bases, mutually exclusive groups (§5.3)."""
    lines = list(lines)
    codes = {line.code for line in lines}
    problems: list[str] = []
    for line in lines:
        spec = pack.find(line.code)
        if spec is None:
            problems.append(f"{line.code} is not in {pack.id}")
            continue
        if line.units < 1:
            problems.append(f"{line.code} has {line.units} units")
        if spec.cap is not None and line.units > spec.cap:
            problems.append(f"{line.code} has {line.units} units, over its cap of {spec.cap}")
        if spec.is_add_on and not codes.intersection(spec.bases):
            problems.append(f"add-on {line.code} without its base ({', '.join(spec.bases)})")
    for group in pack.exclusive_groups:
        hit = [s for s in group.sets if s & codes]
        if len(hit) > 1:
            problems.append(f"codes from mutually exclusive sets of {group.id}")
    return problems
