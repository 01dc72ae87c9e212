"""Is a coded condition chronic (for CCM's ">= 2 chronic conditions"), and which condition is it?

- ICD-10-CM: AHRQ HCUP CCIR v2023.1 decides (1 chronic, 0 not, 9 no determination = not counted).
  FY2024-FY2026 codes that CCIR does not list inherit from the nearest listed parent, or from the
  CCIR codes under the nearest shared prefix when those agree, else from the CMS CCW lists
  (precomputed by scripts/build_valuesets.py; cms-rules.md section 6 step 2).
- SNOMED CT: the eCQM (VSAC) value sets chosen in valuesets/ecqm_valuesets.csv, minus the codes in
  valuesets/snomed_exclusions.csv, then a small cited list (valuesets/curated_snomed.csv).
- Every chronic code gets a canonical `condition_key` (valuesets/condition_groups.csv) so that one
  disease counts once across codes and code systems: E11.9, E11.65 and SNOMED 44054006 are all
  "diabetes". ICD-10-CM codes outside every group key on their 3-character category
  ("icd10cm:J32").

Chronic here means "expected to last >= 12 months"; whether the conditions place the patient at
significant risk is the practitioner's call (cms-rules.md section 3.1) and is not decided here.
Data are loaded lazily, once, from package files; classify() itself is dictionary look-ups.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from collections.abc import Iterable, Iterator
from functools import cache, lru_cache
from pathlib import Path
from typing import Literal

from rules.record_type import record
from rules.records import Coding

ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
ICD10_WHO = "http://hl7.org/fhir/sid/icd-10"
SNOMED = "http://snomed.info/sct"
CCIR = "CCIR v2023.1"

Source = Literal["CCIR", "eCQM", "curated"]

_ICD_CODE = re.compile(r"^[A-Z][0-9A-Z]{2,6}$")
_SOURCE_RANK = {"CCIR": 0, "eCQM": 1, "curated": 2}


@record
class Classification:
    """How one coding was classified. `condition_key` is None unless chronic."""

    chronic: bool
    source: Source | None
    condition_key: str | None
    condition_label: str
    display: str
    reason: str


@record
class ConditionGroup:
    """One distinct chronic condition and the code lists that point to it."""

    key: str
    label: str
    ccw_categories: tuple[str, ...]
    ecqm_valuesets: tuple[str, ...]
    icd10cm_prefixes: tuple[str, ...]


# A Condition known only by its text is classified as Coding(TEXT, text, text) (rules.eligibility).
TEXT = "urn:ccm-ready:condition-text"


@record
class _Core:
    """Everything of a Classification except the caller's display text."""

    chronic: bool
    source: Source | None
    key: str | None
    label: str
    display: str
    reason: str

    def with_display(self, display: str) -> Classification:
        return Classification(self.chronic, self.source, self.key, self.label,
                              display or self.display, self.reason)


@record
class _Tables:
    """The value-set tables, loaded once."""

    ccir: dict[str, str]
    derived: dict[str, tuple[str, str, str, int]]  # code -> (indicator, basis, via, count)
    titles: dict[str, str]  # ICD-10-CM 3-character category -> title
    ccw: dict[str, tuple[str, ...]]  # code -> CCW categories
    ecqm: dict[str, tuple[tuple[str, str], ...]]  # SNOMED code -> ((valueset key, display), ...)
    ecqm_sets: dict[str, tuple[str, str]]  # valueset key -> (title, OID)
    curated: dict[str, tuple[str, str, str]]  # SNOMED code -> (display, condition key, citation)
    groups: dict[str, ConditionGroup]  # in priority order
    rank: dict[str, int]  # condition key -> priority
    ccw_key: dict[str, str]
    ecqm_key: dict[str, str]
    prefix_key: dict[str, str]


# ---------------------------------------------------------------------------- loading


VALUESET_DIR = Path(__file__).resolve().parent / "valuesets"


def _read(name: str) -> str:
    data = (VALUESET_DIR / name).read_bytes()
    if name.endswith(".gz"):
        data = gzip.decompress(data)
    return data.decode("utf-8")


def _tsv(name: str, columns: int) -> Iterator[tuple[str, ...]]:
    """Rows of a generated TSV (header skipped). Fast path: one split over the whole text."""
    text = _read(name)
    body = text[text.index("\n") + 1:].rstrip("\n")
    if not body:
        return iter(())
    cells = body.replace("\n", "\t").split("\t")
    if len(cells) % columns:
        raise ValueError(f"rules/valuesets/{name}: expected {columns} columns per row")
    it = iter(cells)
    return zip(*([it] * columns), strict=True)


def _csv(name: str) -> list[dict[str, str]]:
    return [{k: (v or "").strip() for k, v in row.items()}
            for row in csv.DictReader(io.StringIO(_read(name)))]


def _split(cell: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in cell.split(";") if part.strip())


@cache
def _tables() -> _Tables:
    groups: dict[str, ConditionGroup] = {}
    for row in _csv("condition_groups.csv"):
        group = ConditionGroup(row["condition_key"], row["condition_label"], _split(row["ccw_categories"]),
                               _split(row["ecqm_valuesets"]), _split(row["icd10cm_prefixes"]))
        groups[group.key] = group
    ccw: dict[str, list[str]] = {}
    for code, category in _tsv("ccw_icd10cm.tsv", 2):
        ccw.setdefault(code, []).append(category)
    ecqm: dict[str, list[tuple[str, str]]] = {}
    for code, valueset, display in _tsv("ecqm_snomed.tsv", 3):
        ecqm.setdefault(code, []).append((valueset, display))
    return _Tables(
        ccir={code: ind for code, ind in _tsv("ccir_v2023_1.tsv.gz", 2)},
        derived={c: (ind, basis, via, int(n))
                 for c, ind, basis, via, n in _tsv("icd10cm_fy2026_not_in_ccir.tsv.gz", 5)},
        titles={code: title for code, title in _tsv("icd10cm_category_titles.tsv", 2)},
        ccw={code: tuple(cats) for code, cats in ccw.items()},
        ecqm={code: tuple(sets) for code, sets in ecqm.items()},
        ecqm_sets={key: (title, oid) for key, oid, title, _version in _tsv("ecqm_sets.tsv", 4)},
        curated={r["code"]: (r["display"], r["condition_key"], r["citation"])
                 for r in _csv("curated_snomed.csv")},
        groups=groups,
        rank={key: i for i, key in enumerate(groups)},
        ccw_key={cat: g.key for g in groups.values() for cat in g.ccw_categories},
        ecqm_key={vs: g.key for g in groups.values() for vs in g.ecqm_valuesets},
        prefix_key={p: g.key for g in groups.values() for p in g.icd10cm_prefixes},
    )


def condition_groups() -> tuple[ConditionGroup, ...]:
    """All canonical chronic conditions, in priority order."""
    return tuple(_tables().groups.values())


def condition_label(key: str) -> str:
    """Label for a condition key ("diabetes" -> "Diabetes"; "icd10cm:J32" -> category title)."""
    t = _tables()
    if key in t.groups:
        return t.groups[key].label
    if key.startswith("icd10cm:"):
        return t.titles.get(key[8:], key)
    return key


# ---------------------------------------------------------------------------- classify


def _name(text: str) -> str:
    """Text compared for an exact name: case, spacing and a SNOMED semantic tag ("(disorder)") ignored."""
    words = " ".join(text.lower().split())
    for tag in (" (disorder)", " (finding)"):
        words = words.removesuffix(tag)
    return words


@cache
def _names() -> dict[str, str]:
    """Exact condition names of the value sets -> the SNOMED CT code they display (first wins)."""
    t = _tables()
    out: dict[str, str] = {}
    for code, sets in sorted(t.ecqm.items()):
        for _vs, display in sets:
            out.setdefault(_name(display), code)
    for code, (display, _key, _cite) in sorted(t.curated.items()):
        out.setdefault(_name(display), code)
    return out


def classify_text(text: str) -> Classification:
    """A text-only condition: chronic only when the text is exactly a value-set condition's name."""
    code = _names().get(_name(text)) if text.strip() else None
    if code is None:
        return Classification(False, None, None, "", text,
                              "text only, not the exact name of a condition in the value sets: code it")
    core = _snomed(code)
    return Classification(core.chronic, core.source, core.key, core.label, text,
                          f"text names {core.display} exactly; {core.reason}")


def classify(coding: Coding) -> Classification:
    """Classify one coding. Never raises for odd input; unknown input is simply not chronic."""
    if coding.system == TEXT:
        return classify_text(coding.display or coding.code)
    system = _canonical_system(coding.system)
    code = (coding.code or "").strip()
    display = (coding.display or "").strip()
    if system == ICD10CM:
        return _icd(code.upper().replace(".", "").replace(" ", ""), False).with_display(display)
    if system == SNOMED:
        return _snomed(code).with_display(display)
    if system == ICD10_WHO:
        return _icd(code.upper().replace(".", "").replace(" ", ""), True).with_display(display)
    return Classification(False, None, None, "", display or code,
                          f"code system {system or '(none)'} is not used to identify chronic conditions "
                          "(ICD-10-CM or SNOMED CT expected)")


def classify_codings(codings: Iterable[Coding]) -> Classification:
    """Best classification among one Condition's codings: chronic first, then CCIR > eCQM > curated."""
    best: Classification | None = None
    best_rank = (2, 9)
    for coding in codings:
        result = classify(coding)
        rank = (0 if result.chronic else 1 if result.source else 2, _SOURCE_RANK.get(result.source or "", 9))
        if best is None or rank < best_rank:
            best, best_rank = result, rank
    if best is None:
        return Classification(False, None, None, "", "", "no coding")
    return best


def _canonical_system(system: str) -> str:
    s = (system or "").strip().rstrip("/")
    if s.startswith("https://"):
        s = "http://" + s[8:]
    return s


def _dotted(code: str) -> str:
    return code if len(code) <= 3 else f"{code[:3]}.{code[3:]}"


@lru_cache(maxsize=65536)
def _icd(code: str, who: bool) -> _Core:
    t = _tables()
    note = "WHO ICD-10 code read as ICD-10-CM (meanings can differ); " if who else ""
    title = t.titles.get(code[:3], "")
    display = f"{_dotted(code)} ({code[:3]}: {title})" if title else _dotted(code)
    if not _ICD_CODE.match(code):
        return _Core(False, None, None, "", display, f"{note}not a valid ICD-10-CM code")
    indicator = t.ccir.get(code)
    if indicator is not None:
        reason = {
            "1": f"{CCIR}: chronic",
            "0": f"{CCIR}: not chronic",
            "9": f"{CCIR}: no determination (indicator 9), not counted as chronic",
        }[indicator]
    elif code in t.derived:
        indicator, basis, via, count = t.derived[code]
        reason = f"not in {CCIR}; " + _derived_reason(indicator, basis, via, count)
    else:
        return _Core(False, None, None, "", display, f"{note}unknown ICD-10-CM code")
    if indicator != "1":
        return _Core(False, "CCIR", None, "", display, note + reason)
    key = _icd_key(code)
    return _Core(True, "CCIR", key, condition_label(key), display, note + reason)


def _derived_reason(indicator: str, basis: str, via: str, count: int) -> str:
    word = {"1": "chronic", "0": "not chronic", "9": "of no determination"}[indicator]
    if basis == "parent":
        return f"parent {_dotted(via)} is {word}"
    if basis == "children":
        return f"all {count} CCIR codes under {_dotted(via)} are {word}"
    if basis == "ccw":
        return f"listed in the CMS CCW {via} codes, so counted as chronic"
    if basis == "mixed":
        return (f"the {count} CCIR codes under {_dotted(via)} disagree: "
                "no determination, not counted as chronic")
    return "no CCIR code shares its category: no determination, not counted as chronic"


def _icd_key(code: str) -> str:
    t = _tables()
    keys = [t.ccw_key[c] for c in t.ccw.get(code, ()) if c in t.ccw_key]
    if keys:
        return min(keys, key=t.rank.__getitem__)
    for n in range(len(code), 2, -1):
        key = t.prefix_key.get(code[:n])
        if key:
            return key
    return f"icd10cm:{code[:3]}"


@lru_cache(maxsize=65536)
def _snomed(code: str) -> _Core:
    t = _tables()
    sets = t.ecqm.get(code)
    if sets:
        valueset, display = min(sets, key=lambda s: (t.rank[t.ecqm_key[s[0]]], s[0]))
        key = t.ecqm_key[valueset]
        title, oid = t.ecqm_sets[valueset]
        return _Core(True, "eCQM", key, t.groups[key].label, display,
                     f"eCQM value set {title} ({oid})")
    curated = t.curated.get(code)
    if curated:
        display, key, citation = curated
        label = t.groups[key].label
        return _Core(True, "curated", key, label, display, f"curated: {label} — {citation}")
    return _Core(False, None, None, "", code,
                 "SNOMED CT code not in the chronic-condition value sets (eCQM or curated)")
