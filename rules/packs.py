"""Policy packs: the CMS billing policy of one year as cited data (rules/packs/<id>.json).

A pack holds every number the rules use (thresholds, unit caps, add-on/base pairs, national payments,
exclusive groups, the same-month concurrency table, the initiating-visit codes), each with its citation.
Packs are read once, validated on load and cached; `evaluate()` never touches the file system.

Why over 400 lines: the pack loader validates every field of the pack format with its own message;
the checks are data-shaped and read best in one place.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import cache
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

from rules.month import Month
from rules.record_type import record
from rules.verdict import Severity

PACK_DIR = Path(__file__).resolve().parent / "packs"
DEFAULT_PACK = "cms-pfs-2026"

Role = Literal["clinical-staff", "practitioner", "practice"]
Kind = Literal["base", "add-on", "visit-add-on"]
Allowed = Literal["yes", "no", "once", "unverified"]

ROLES: frozenset[str] = frozenset({"clinical-staff", "practitioner", "practice"})
KINDS: frozenset[str] = frozenset({"base", "add-on", "visit-add-on"})
ALLOWED: frozenset[str] = frozenset({"yes", "no", "once", "unverified"})
SEVERITIES: frozenset[str] = frozenset({"blocker", "warning", "info"})
CONFIDENCES: frozenset[str] = frozenset({"H", "M", "L", "M/L", "M/H", "H/M", "L/M"})
MINUTE_SOURCES: frozenset[str] = frozenset({"clinical_staff", "billing_practitioner"})
_PACK_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")


class UnknownPolicy(ValueError):
    """A policy pack id that does not exist, or a month no pack covers."""


class PackError(ValueError):
    """A pack file that breaks the pack rules (missing citation, add-on without base, ...)."""


@record
class Citation:
    """Where a rule comes from: source, cms-rules.md section, source ids, confidence."""

    source: str  # the CMS (or other) source in words
    section: str  # cms-rules.md section(s)
    tags: tuple[str, ...]  # [S#] source tags
    confidence: str  # H | M | L (or a range such as M/L)
    note: str = ""

    def __str__(self) -> str:
        return f"{self.source}; cms-rules.md §{self.section} [{','.join(self.tags)}]; conf. {self.confidence}"


@record
class CodeSpec:
    """One code of a policy pack: label, family, thresholds, caps and payment."""

    code: str
    label: str  # our own short label (never the AMA descriptor)
    # ccm, pcm, apcm, tcm, rpm, rtm, bhi, cpo-home-health, cpo-hospice, esrd, cpt-not-with-ccm, ccm-initiation
    family: str
    role: str  # clinical-staff | practitioner | practice
    kind: str  # base | add-on | visit-add-on
    threshold: int | None  # minutes (for an add-on: each further full block)
    bases: tuple[str, ...]  # base code(s) an add-on needs
    cap: int | None  # units per month; None = no known cap (see cap_note and citation)
    payment: Decimal | None  # national non-facility amount; None = unknown (see payment_note)
    citation: Citation
    cap_note: str = ""
    payment_note: str = ""
    payment_citation: Citation | None = None
    cap_citation: Citation | None = None  # required for every add-on (cms-rules.md §5.3)

    @property
    def base(self) -> str | None:
        """The (first) base code of an add-on, None for a base code."""
        return self.bases[0] if self.bases else None

    @property
    def is_add_on(self) -> bool:
        return self.kind == "add-on"


@record
class Track:
    """One way to bill CCM in a month: a base code at a threshold plus an add-on per further block."""

    id: str  # clinical-staff | practitioner | complex
    label: str
    base: str
    add_on: str
    minutes: str  # which Minutes field feeds it: clinical_staff | billing_practitioner
    requires_mdm: bool
    base_minutes: int
    add_on_minutes: int
    add_on_cap: int | None
    citation: Citation

    def units(self, minutes: int) -> tuple[int, int]:
        """(base units, add-on units) earned by `minutes`; thresholds are met in full, never rounded."""
        if minutes < self.base_minutes:
            return 0, 0
        extra = (minutes - self.base_minutes) // self.add_on_minutes
        if self.add_on_cap is not None:
            extra = min(extra, self.add_on_cap)
        return 1, extra

    @property
    def max_minutes(self) -> int | None:
        """Minutes beyond which the track earns nothing more (None = no cap)."""
        if self.add_on_cap is None:
            return None
        return self.base_minutes + self.add_on_cap * self.add_on_minutes


@record
class ExclusiveGroup:
    """Code sets that must not be billed together in one month (scope: patient-month or same-practitioner)."""

    id: str
    scope: str
    sets: tuple[frozenset[str], ...]
    citation: Citation


@record
class Outcome:
    """What the concurrency table says about another service in the same month."""

    allowed: str  # yes | no | once | unverified
    rule: str  # finding rule id
    severity: Severity


@record
class Concurrency:
    """Can another service family be billed in the same month as CCM?"""

    family: str
    label: str
    same_practitioner: Outcome
    different_practitioner: Outcome
    note: str
    citation: Citation


@record
class InitiatingVisitPolicy:
    """Which visits can initiate CCM, and how long ago."""

    cpt: frozenset[str]
    hcpcs: frozenset[str]
    lookback_months: int
    citation: Citation
    codes: frozenset[str] = frozenset()  # cpt | hcpcs, filled in by the parser


@record(eq=False)
class PolicyPack:
    """One year's CMS rules as data (rules/packs/*.json)."""

    id: str
    version: str
    title: str
    effective_start: date
    effective_end: date | None
    conversion_factor: Decimal
    conversion_factor_citation: Citation
    payment_basis: str
    codes: Mapping[str, CodeSpec]  # read-only
    tracks: tuple[Track, ...]
    exclusive_groups: tuple[ExclusiveGroup, ...]
    concurrency: tuple[Concurrency, ...]
    initiating_visit: InitiatingVisitPolicy

    def code(self, code: str) -> CodeSpec:
        """The spec of `code`; KeyError when the pack does not know it."""
        try:
            return self.codes[code]
        except KeyError:
            raise KeyError(f"{code!r} is not in policy pack {self.id}") from None

    def find(self, code: str) -> CodeSpec | None:
        return self.codes.get(code.strip().upper()) if isinstance(code, str) else None

    def track(self, track_id: str) -> Track:
        for t in self.tracks:
            if t.id == track_id:
                return t
        raise KeyError(f"no track {track_id!r} in policy pack {self.id}")

    def family(self, family: str) -> tuple[CodeSpec, ...]:
        return tuple(c for c in self.codes.values() if c.family == family)

    def concurrency_for(self, family: str) -> Concurrency | None:
        """The same-month rule for `family` vs CCM, None when the table has no entry."""
        return next((c for c in self.concurrency if c.family == family), None)

    def covers(self, month: Month) -> bool:
        first = month.first_day
        return self.effective_start <= first and (self.effective_end is None or first <= self.effective_end)

    @property
    def ccm_codes(self) -> frozenset[str]:
        return frozenset(c.code for c in self.codes.values() if c.family == "ccm")


# --------------------------------------------------------------------------------------------- loading


def available() -> list[str]:
    """Ids of the packs shipped in rules/packs/."""
    return list(_available())


@cache
def _available() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PACK_DIR.glob("*.json")))


def load_pack(pack_id: str) -> PolicyPack:
    """The pack `pack_id` (cached). UnknownPolicy when there is none; PackError when it is malformed."""
    if not isinstance(pack_id, str) or not _PACK_ID.match(pack_id) or pack_id not in _available():
        raise UnknownPolicy(f"unknown policy pack {pack_id!r}; available: {', '.join(_available())}")
    return _load(pack_id)


@cache
def _load(pack_id: str) -> PolicyPack:
    path = PACK_DIR / f"{pack_id}.json"
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise PackError(f"{path.name}: cannot read: {exc}") from exc
    pack = parse_pack(raw, where=path.name)
    if pack.id != pack_id:
        raise PackError(f"{path.name}: id {pack.id!r} does not match the file name")
    return pack


def pack_for_month(month: Month | str) -> PolicyPack:
    """The pack in effect for `month` (the latest-starting pack whose period covers it)."""
    return _pack_for(Month.parse(month) if isinstance(month, str) else month)


@cache
def _pack_for(m: Month) -> PolicyPack:
    covering = [p for p in (load_pack(i) for i in _available()) if p.covers(m)]
    if not covering:
        raise UnknownPolicy(f"no policy pack covers {m}; available: {', '.join(_available())}")
    return max(covering, key=lambda p: p.effective_start)


def resolve_pack(pack: str | PolicyPack | None, month: Month) -> PolicyPack:
    """`pack` as given, by id, or (None) the pack in effect for `month`."""
    if isinstance(pack, PolicyPack):
        return pack
    if pack is None:
        return pack_for_month(month)
    return load_pack(pack)


# --------------------------------------------------------------------------------------------- parsing


def parse_pack(raw: Any, where: str = "pack") -> PolicyPack:
    """Build and validate a PolicyPack from its JSON form; PackError names the first problem."""
    p = _Parser(where)
    return p.pack(raw)


class _Parser:
    def __init__(self, where: str) -> None:
        self.where = where

    def fail(self, what: str) -> PackError:
        return PackError(f"{self.where}: {what}")

    def obj(self, value: Any, what: str) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(f"{what} must be an object")
        return value

    def text(self, value: Any, what: str) -> str:
        if not isinstance(value, str) or not value.strip():
            raise self.fail(f"{what} must be a non-empty string")
        return value

    def opt_int(self, value: Any, what: str) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise self.fail(f"{what} must be a positive integer or null")
        return value

    def money(self, value: Any, what: str) -> Decimal | None:
        if value is None:
            return None
        try:
            amount = Decimal(str(value))
        except InvalidOperation:
            raise self.fail(f"{what} is not a decimal amount: {value!r}") from None
        if not amount.is_finite() or amount < 0:
            raise self.fail(f"{what} must be a non-negative amount")
        return amount

    def day(self, value: Any, what: str) -> date:
        try:
            return date.fromisoformat(self.text(value, what))
        except ValueError:
            raise self.fail(f"{what} must be YYYY-MM-DD, got {value!r}") from None

    def citation(self, value: Any, what: str) -> Citation:
        if value is None:
            raise self.fail(f"{what} has no citation")
        c = self.obj(value, f"{what} citation")
        tags = c.get("tags")
        if not isinstance(tags, list) or not tags or not all(isinstance(t, str) and t for t in tags):
            raise self.fail(f"{what} citation needs [S#] tags")
        confidence = c.get("confidence")
        if confidence not in CONFIDENCES:
            raise self.fail(f"{what} citation confidence must be H, M or L, got {confidence!r}")
        return Citation(
            source=self.text(c.get("source"), f"{what} citation source"),
            section=self.text(c.get("section"), f"{what} citation section"),
            tags=tuple(tags),
            confidence=confidence,
            note=c.get("note") or "",
        )

    def code(self, value: Any) -> CodeSpec:
        c = self.obj(value, "code entry")
        code = self.text(c.get("code"), "code")
        what = f"code {code}"
        role, kind = c.get("role"), c.get("kind")
        if role not in ROLES:
            raise self.fail(f"{what}: role must be one of {sorted(ROLES)}")
        if kind not in KINDS:
            raise self.fail(f"{what}: kind must be one of {sorted(KINDS)}")
        bases = c.get("bases") or []
        if not isinstance(bases, list) or not all(isinstance(b, str) for b in bases):
            raise self.fail(f"{what}: bases must be a list of codes")
        if kind == "add-on" and not bases:
            raise self.fail(f"{what}: an add-on needs its base code(s)")
        if kind == "base" and bases:
            raise self.fail(f"{what}: a base code cannot have bases")
        payment = self.money(c.get("payment"), f"{what} payment")
        payment_note = c.get("payment_note") or ""
        if payment is None and not payment_note:
            raise self.fail(f"{what}: a null payment needs a payment_note saying why")
        payment_citation = c.get("payment_citation")
        if payment is not None and payment_citation is None:
            raise self.fail(f"{what}: a payment needs a payment_citation")
        cap = self.opt_int(c.get("cap"), f"{what} cap")
        cap_citation = c.get("cap_citation")
        if kind == "add-on" and (cap is None or cap_citation is None):
            raise self.fail(f"{what}: an add-on needs a unit cap and its cap_citation (cms-rules.md §5.3)")
        return CodeSpec(
            code=code,
            label=self.text(c.get("label"), f"{what} label"),
            family=self.text(c.get("family"), f"{what} family"),
            role=role,
            kind=kind,
            threshold=self.opt_int(c.get("threshold_minutes"), f"{what} threshold_minutes"),
            bases=tuple(bases),
            cap=cap,
            payment=payment,
            citation=self.citation(c.get("citation"), what),
            cap_note=c.get("cap_note") or "",
            payment_note=payment_note,
            cap_citation=self.citation(cap_citation, f"{what} cap") if cap_citation is not None else None,
            payment_citation=(
                self.citation(payment_citation, f"{what} payment") if payment_citation is not None else None
            ),
        )

    def outcome(self, value: Any, what: str) -> Outcome:
        o = self.obj(value, what)
        if o.get("allowed") not in ALLOWED:
            raise self.fail(f"{what}: allowed must be one of {sorted(ALLOWED)}")
        if o.get("severity") not in SEVERITIES:
            raise self.fail(f"{what}: severity must be one of {sorted(SEVERITIES)}")
        rule = self.text(o.get("rule"), f"{what} rule")
        if not rule.startswith("conflict."):
            raise self.fail(f"{what}: rule ids of the concurrency table start with 'conflict.'")
        return Outcome(allowed=o["allowed"], rule=rule, severity=o["severity"])

    def pack(self, raw: Any) -> PolicyPack:
        r = self.obj(raw, "pack")
        pack_id = self.text(r.get("id"), "id")
        effective = self.obj(r.get("effective"), "effective")
        start = self.day(effective.get("start"), "effective.start")
        end = None if effective.get("end") is None else self.day(effective.get("end"), "effective.end")
        if end is not None and end < start:
            raise self.fail("effective.end is before effective.start")
        cf = self.obj(r.get("conversion_factor"), "conversion_factor")
        cf_value = self.money(cf.get("value"), "conversion_factor.value")
        if cf_value is None or cf_value <= 0:
            raise self.fail("conversion_factor.value must be positive")

        codes: dict[str, CodeSpec] = {}
        entries = r.get("codes")
        if not isinstance(entries, list) or not entries:
            raise self.fail("codes must be a non-empty list")
        for entry in entries:
            spec = self.code(entry)
            if spec.code in codes:
                raise self.fail(f"code {spec.code} is listed twice")
            codes[spec.code] = spec
        for spec in codes.values():
            if spec.kind == "add-on":
                for b in spec.bases:
                    if b not in codes:
                        raise self.fail(f"code {spec.code}: base {b} is not in the pack")
                    if codes[b].kind != "base":
                        raise self.fail(f"code {spec.code}: base {b} is itself an add-on")

        tracks = tuple(self.track(t, codes) for t in self.list_of(r.get("tracks"), "tracks"))
        if len({t.id for t in tracks}) != len(tracks):
            raise self.fail("track ids must be unique")
        groups = tuple(
            self.group(g, codes) for g in self.list_of(r.get("exclusive_groups"), "exclusive_groups")
        )
        concurrency = tuple(
            self.concurrency(c, codes) for c in self.list_of(r.get("concurrency"), "concurrency")
        )
        if len({c.family for c in concurrency}) != len(concurrency):
            raise self.fail("concurrency families must be unique")
        iv = self.obj(r.get("initiating_visit"), "initiating_visit")
        lookback = self.opt_int(iv.get("lookback_months"), "initiating_visit.lookback_months")
        if lookback is None:
            raise self.fail("initiating_visit.lookback_months is required")
        cpt = frozenset(self.list_of(iv.get("cpt"), "initiating_visit.cpt"))
        hcpcs = frozenset(iv.get("hcpcs") or ())
        visit = InitiatingVisitPolicy(
            cpt=cpt,
            hcpcs=hcpcs,
            lookback_months=lookback,
            citation=self.citation(iv.get("citation"), "initiating_visit"),
            codes=cpt | hcpcs,
        )
        return PolicyPack(
            id=pack_id,
            version=self.text(r.get("version"), "version"),
            title=self.text(r.get("title"), "title"),
            effective_start=start,
            effective_end=end,
            conversion_factor=cf_value,
            conversion_factor_citation=self.citation(cf.get("citation"), "conversion_factor"),
            payment_basis=self.text(r.get("payment_basis"), "payment_basis"),
            codes=MappingProxyType(codes),
            tracks=tracks,
            exclusive_groups=groups,
            concurrency=concurrency,
            initiating_visit=visit,
        )

    def list_of(self, value: Any, what: str) -> list[Any]:
        if not isinstance(value, list) or not value:
            raise self.fail(f"{what} must be a non-empty list")
        return value

    def track(self, value: Any, codes: dict[str, CodeSpec]) -> Track:
        t = self.obj(value, "track")
        tid = self.text(t.get("id"), "track id")
        base, add_on = t.get("base"), t.get("add_on")
        if base not in codes or add_on not in codes:
            raise self.fail(f"track {tid}: base and add_on must be codes in the pack")
        b, a = codes[base], codes[add_on]
        if b.kind != "base" or b.threshold is None:
            raise self.fail(f"track {tid}: base {base} must be a timed base code")
        if a.kind != "add-on" or base not in a.bases or a.threshold is None:
            raise self.fail(f"track {tid}: add_on {add_on} must be a timed add-on of {base}")
        if t.get("minutes") not in MINUTE_SOURCES:
            raise self.fail(f"track {tid}: minutes must be one of {sorted(MINUTE_SOURCES)}")
        return Track(
            id=tid,
            label=self.text(t.get("label"), f"track {tid} label"),
            base=base,
            add_on=add_on,
            minutes=t["minutes"],
            requires_mdm=bool(t.get("requires_mdm")),
            base_minutes=b.threshold,
            add_on_minutes=a.threshold,
            add_on_cap=a.cap,
            citation=self.citation(t.get("citation"), f"track {tid}"),
        )

    def group(self, value: Any, codes: dict[str, CodeSpec]) -> ExclusiveGroup:
        g = self.obj(value, "exclusive group")
        gid = self.text(g.get("id"), "exclusive group id")
        if g.get("scope") not in ("patient-month", "same-practitioner"):
            raise self.fail(f"exclusive group {gid}: scope must be patient-month or same-practitioner")
        sets = self.list_of(g.get("sets"), f"exclusive group {gid} sets")
        if len(sets) < 2:
            raise self.fail(f"exclusive group {gid} needs at least two sets")
        for s in sets:
            for c in self.list_of(s, f"exclusive group {gid} set"):
                if c not in codes:
                    raise self.fail(f"exclusive group {gid}: {c} is not in the pack")
        return ExclusiveGroup(
            id=gid,
            scope=g["scope"],
            sets=tuple(frozenset(s) for s in sets),
            citation=self.citation(g.get("citation"), f"exclusive group {gid}"),
        )

    def concurrency(self, value: Any, codes: dict[str, CodeSpec]) -> Concurrency:
        c = self.obj(value, "concurrency entry")
        family = self.text(c.get("family"), "concurrency family")
        if not any(s.family == family for s in codes.values()):
            raise self.fail(f"concurrency family {family!r} has no codes in the pack")
        return Concurrency(
            family=family,
            label=self.text(c.get("label"), f"concurrency {family} label"),
            same_practitioner=self.outcome(
                c.get("same_practitioner"), f"concurrency {family} same_practitioner"
            ),
            different_practitioner=self.outcome(
                c.get("different_practitioner"), f"concurrency {family} different_practitioner"
            ),
            note=self.text(c.get("note"), f"concurrency {family} note"),
            citation=self.citation(c.get("citation"), f"concurrency {family}"),
        )
