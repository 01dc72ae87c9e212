#!/usr/bin/env python3
"""Regenerate the chronic-condition value sets in rules/valuesets/ from ../shared/data.

Deterministic: the same inputs give byte-identical outputs (sorted rows, gzip with mtime 0 and
no file name). Inputs are the public files described in rules/valuesets/SOURCE.md plus the
hand-curated CSVs in rules/valuesets/ (condition_groups.csv, ecqm_valuesets.csv,
snomed_exclusions.csv, curated_snomed.csv), which this script reads and checks but never writes.

Usage:
    python scripts/build_valuesets.py [--shared ../shared/data] [--out rules/valuesets] [--check]

--check rebuilds into memory and exits 1 if a committed file differs.
"""

from __future__ import annotations

import argparse
import csv
import gzip
import io
import sys
import xml.etree.ElementTree as ET
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SHARED = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "rules" / "valuesets"

CCIR_FILE = "hcup-ccir/CCIR_v2023-1.csv"
FY2026_LIST = "icd10cm-fy2026/code-list-April-2026.txt"
FY2026_TABULAR = "icd10cm-fy2026/icd10cm-tabular-April-1-2026.xml.gz"
CCW_FILE = "cms-ccw/ccw_30_chronic_icd10cm_codes.csv"
VSAC_FILE = "vsac-ecqm/vsac_chronic_condition_codes.csv"

SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"

# CCW groups that remove codes from a condition rather than qualify them.
CCW_EXCLUSION_GROUPS = frozenset({"bph_exclude", "stroke_exclude1"})
# CCW groups whose codes CCIR mostly calls acute: membership is no evidence of chronicity when
# a new code is missing from CCIR (hip fracture 414 of 433 codes not chronic, pneumonia 85 of 93).
CCW_NOT_EVIDENCE_OF_CHRONICITY = frozenset({"hip_fracture", "pneumonia"})

# Outputs (all generated; never edit by hand).
OUT_CCIR = "ccir_v2023_1.tsv.gz"
OUT_DERIVED = "icd10cm_fy2026_not_in_ccir.tsv.gz"
OUT_TITLES = "icd10cm_category_titles.tsv"
OUT_CCW = "ccw_icd10cm.tsv"
OUT_ECQM = "ecqm_snomed.tsv"
OUT_ECQM_SETS = "ecqm_sets.tsv"
GENERATED = (OUT_CCIR, OUT_DERIVED, OUT_TITLES, OUT_CCW, OUT_ECQM, OUT_ECQM_SETS)


class BuildError(Exception):
    """Inputs are missing or inconsistent."""


@dataclass(frozen=True)
class Derived:
    """Chronic indicator inferred for an FY2026 code that CCIR v2023.1 does not list."""

    indicator: str  # "1" | "0" | "9"
    basis: str  # parent | children | ccw | mixed | none
    via: str  # the CCIR code, prefix or CCW group the decision rests on ("" for none)
    count: int  # how many CCIR codes share that prefix (children/mixed), else 0


# ---------------------------------------------------------------------------- readers


def read_ccir(path: Path) -> dict[str, str]:
    """CCIR v2023.1: dot-less code -> indicator ("0" | "1" | "9")."""
    out: dict[str, str] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        rows = csv.reader(fh)
        preamble = [next(rows) for _ in range(3)]
        if "v2023.1" not in preamble[0][0] or "CHRONIC INDICATOR" not in preamble[2][2]:
            raise BuildError(f"{path}: not the CCIR v2023.1 layout")
        for row in rows:
            if not row:
                continue
            code, indicator = row[0].strip().strip("'"), row[2].strip()
            if indicator not in {"0", "1", "9"}:
                raise BuildError(f"{path}: indicator {indicator!r} for {code}")
            out[code] = indicator
    return out


def read_fy2026_codes(path: Path) -> set[str]:
    """Every FY2026 ICD-10-CM code (categories, subcategories, leaves); no chapters or blocks."""
    text = path.read_text(encoding="ascii")
    return {line.strip() for line in text.splitlines() if line.strip() and line.strip()[0].isalpha()
            and "-" not in line}


def read_category_titles(path: Path) -> dict[str, str]:
    """3-character category -> title, from the CDC tabular XML."""
    titles: dict[str, str] = {}
    with gzip.open(path, "rb") as fh:
        for _event, elem in ET.iterparse(fh, events=("end",)):
            if elem.tag != "diag":
                continue
            name = (elem.findtext("name") or "").replace(".", "")
            if len(name) == 3:
                titles[name] = " ".join((elem.findtext("desc") or "").split())
            # keep memory flat: children already read
            if len(name) > 3:
                elem.clear()
    return titles


def read_ccw(path: Path) -> dict[str, set[str]]:
    """Dot-less ICD-10-CM code -> CCW category abbreviations (exclusion groups skipped)."""
    out: dict[str, set[str]] = defaultdict(set)
    with path.open(newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            group = row["ccw_abbrev"].strip()
            if group in CCW_EXCLUSION_GROUPS:
                continue
            code = row["icd10cm"].strip().replace(".", "").upper()
            if code:
                out[code].add(group)
    return out


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return [{k: (v or "").strip() for k, v in row.items()} for row in csv.DictReader(fh)]


# ---------------------------------------------------------------------------- derivation


def prefix_counts(ccir: dict[str, str]) -> dict[str, Counter[str]]:
    """For every prefix (length >= 3) of a CCIR code: indicator counts of CCIR codes under it."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for code, indicator in ccir.items():
        for n in range(3, len(code) + 1):
            counts[code[:n]][indicator] += 1
    return counts


def derive(code: str, ccir: dict[str, str], counts: dict[str, Counter[str]],
           ccw: dict[str, set[str]]) -> Derived:
    """Nearest listed parent, else unanimous CCIR codes under the nearest prefix, else CCW, else 9.

    cms-rules.md section 6 step 2: codes missing from CCIR fall back to the nearest parent code
    or to the CCW lists.
    """
    for n in range(len(code), 2, -1):
        prefix = code[:n]
        if prefix != code and prefix in ccir:
            return Derived(ccir[prefix], "parent", prefix, 0)
        below = counts.get(prefix)
        if below:
            if len(below) == 1:
                (indicator,) = below
                return Derived(indicator, "children", prefix, below[indicator])
            evidence = sorted(ccw.get(code, set()) - CCW_NOT_EVIDENCE_OF_CHRONICITY)
            if evidence:
                return Derived("1", "ccw", evidence[0], 0)
            return Derived("9", "mixed", prefix, sum(below.values()))
    evidence = sorted(ccw.get(code, set()) - CCW_NOT_EVIDENCE_OF_CHRONICITY)
    if evidence:
        return Derived("1", "ccw", evidence[0], 0)
    return Derived("9", "none", "", 0)


# ---------------------------------------------------------------------------- checks


def check_groups(groups: list[dict[str, str]], ecqm_sets: list[dict[str, str]],
                 ccw: dict[str, set[str]], vsac_keys: set[str]) -> dict[str, str]:
    """Validate condition_groups.csv against the inputs; return eCQM set key -> condition key."""
    keys = [g["condition_key"] for g in groups]
    if len(keys) != len(set(keys)):
        raise BuildError("condition_groups.csv: duplicate condition_key")
    ccw_groups = {g for groups_ in ccw.values() for g in groups_}
    set_to_key: dict[str, str] = {}
    mapped_ccw: set[str] = set()
    for g in groups:
        for cat in filter(None, g["ccw_categories"].split(";")):
            if cat not in ccw_groups:
                raise BuildError(f"condition_groups.csv: unknown CCW category {cat!r}")
            if cat in mapped_ccw:
                raise BuildError(f"condition_groups.csv: CCW category {cat!r} in two groups")
            mapped_ccw.add(cat)
        for vs in filter(None, g["ecqm_valuesets"].split(";")):
            if vs in set_to_key:
                raise BuildError(f"condition_groups.csv: eCQM set {vs!r} in two groups")
            set_to_key[vs] = g["condition_key"]
    unmapped = sorted(ccw_groups - mapped_ccw)
    if unmapped:
        raise BuildError(f"condition_groups.csv: CCW categories not mapped: {unmapped}")
    listed = {row["valueset_key"]: row["included"] for row in ecqm_sets}
    if set(listed) != vsac_keys:
        odd = sorted(vsac_keys ^ set(listed))
        raise BuildError(f"ecqm_valuesets.csv must list exactly the VSAC sets: {odd}")
    for vs, included in listed.items():
        if included not in {"yes", "no"}:
            raise BuildError(f"ecqm_valuesets.csv: included must be yes/no for {vs}")
        if (included == "yes") != (vs in set_to_key):
            raise BuildError(f"eCQM set {vs!r}: included={included} but condition_groups.csv disagrees")
    return set_to_key


# ---------------------------------------------------------------------------- writers


def tsv(rows: Iterable[Iterable[str]], header: Iterable[str]) -> bytes:
    lines = ["\t".join(header)]
    for row in rows:
        cells = list(row)
        if any("\t" in c or "\n" in c for c in cells):
            raise BuildError(f"tab or newline inside a cell: {cells}")
        lines.append("\t".join(cells))
    return ("\n".join(lines) + "\n").encode("utf-8")


def gz(data: bytes) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, mtime=0, compresslevel=9) as fh:
        fh.write(data)
    return buf.getvalue()


def build(shared: Path, hand: Path) -> tuple[dict[str, bytes], list[str]]:
    """Return {file name: bytes} for every generated file, plus report lines."""
    for rel in (CCIR_FILE, FY2026_LIST, FY2026_TABULAR, CCW_FILE, VSAC_FILE):
        if not (shared / rel).is_file():
            raise BuildError(f"missing input {shared / rel}")
    report: list[str] = []
    ccir = read_ccir(shared / CCIR_FILE)
    fy2026 = read_fy2026_codes(shared / FY2026_LIST)
    titles = read_category_titles(shared / FY2026_TABULAR)
    ccw = read_ccw(shared / CCW_FILE)
    vsac = read_csv(shared / VSAC_FILE)
    groups = read_csv(hand / "condition_groups.csv")
    ecqm_sets = read_csv(hand / "ecqm_valuesets.csv")
    exclusions = read_csv(hand / "snomed_exclusions.csv")
    curated = read_csv(hand / "curated_snomed.csv")

    set_to_key = check_groups(groups, ecqm_sets, ccw, {r["valueset_key"] for r in vsac})

    # 1. CCIR as is.
    out: dict[str, bytes] = {}
    out[OUT_CCIR] = gz(tsv(sorted(ccir.items()), ("code", "indicator")))
    report.append(f"CCIR v2023.1: {len(ccir)} codes {dict(sorted(Counter(ccir.values()).items()))}")

    # 2. FY2026 codes CCIR does not list.
    counts = prefix_counts(ccir)
    derived = {code: derive(code, ccir, counts, ccw) for code in sorted(fy2026 - ccir.keys())}
    out[OUT_DERIVED] = gz(tsv(
        ((c, d.indicator, d.basis, d.via, str(d.count)) for c, d in derived.items()),
        ("code", "indicator", "basis", "via", "count"),
    ))
    leaves = set(derived) & leaf_codes(fy2026)
    basis_all = Counter((d.basis, d.indicator) for d in derived.values())
    basis_leaf = Counter((derived[c].basis, derived[c].indicator) for c in leaves)
    report.append(f"FY2026 codes not in CCIR: {len(derived)} (leaf codes {len(leaves)})")
    report.append(f"  by basis/indicator, all: {dict(sorted(basis_all.items()))}")
    report.append(f"  by basis/indicator, leaves: {dict(sorted(basis_leaf.items()))}")

    # 3. Category titles (labels for icd10cm:XXX keys and display fallback).
    out[OUT_TITLES] = tsv(sorted(titles.items()), ("category", "title"))

    # 4. CCW code -> category (qualifying groups only).
    out[OUT_CCW] = tsv(
        sorted((code, g) for code, gs in ccw.items() for g in gs), ("code", "ccw_category")
    )

    # 5. SNOMED codes of the included eCQM sets, minus exclusions.
    excluded = {(r["code"], r["valueset_key"]) for r in exclusions}
    vsac_pairs = {(r["code"], r["valueset_key"]) for r in vsac if r["system"] == SNOMED}
    unknown = excluded - vsac_pairs
    if unknown:
        raise BuildError(f"snomed_exclusions.csv: codes not in that set: {sorted(unknown)}")
    ecqm_rows: set[tuple[str, str, str]] = set()
    for r in vsac:
        if r["system"] != SNOMED or r["valueset_key"] not in set_to_key:
            continue
        if (r["code"], r["valueset_key"]) in excluded:
            continue
        ecqm_rows.add((r["code"], r["valueset_key"], r["display"]))
    out[OUT_ECQM] = tsv(sorted(ecqm_rows), ("code", "valueset_key", "display"))
    sets = {(r["valueset_key"], r["valueset_oid"], r["valueset_title"], r["valueset_version"])
            for r in vsac if r["valueset_key"] in set_to_key}
    if len({s[0] for s in sets}) != len(sets):
        raise BuildError("a VSAC set key has two OIDs/titles/versions")
    out[OUT_ECQM_SETS] = tsv(sorted(sets), ("valueset_key", "oid", "title", "version"))
    ecqm_codes = {c for c, _, _ in ecqm_rows}
    report.append(f"eCQM SNOMED codes kept: {len(ecqm_codes)} in {len(set(set_to_key))} sets "
                  f"({len(excluded)} excluded code by code)")

    # Checks of the hand-curated SNOMED list.
    group_keys = {g["condition_key"] for g in groups}
    seen: set[str] = set()
    for row in curated:
        code = row["code"]
        if not code.isdigit():
            raise BuildError(f"curated_snomed.csv: bad code {code!r}")
        if code in seen:
            raise BuildError(f"curated_snomed.csv: duplicate {code}")
        seen.add(code)
        if row["condition_key"] not in group_keys:
            raise BuildError(f"curated_snomed.csv: unknown condition_key {row['condition_key']!r}")
        if not row["citation"]:
            raise BuildError(f"curated_snomed.csv: {code} has no citation")
        if code in ecqm_codes:
            raise BuildError(f"curated_snomed.csv: {code} is already in an eCQM set")
    report.append(f"curated SNOMED codes: {len(curated)}")

    # Cross-check: eCQM ICD-10-CM codes of included sets vs CCIR (information only).
    disagree = Counter()
    for r in vsac:
        if r["system"] == ICD10CM and r["valueset_key"] in set_to_key:
            code = r["code"].replace(".", "")
            ind = ccir.get(code) or (derived[code].indicator if code in derived else "unknown")
            if ind != "1":
                disagree[(r["valueset_key"], ind)] += 1
    report.append(f"eCQM ICD-10-CM codes (included sets) that CCIR does not call chronic: "
                  f"{dict(sorted(disagree.items()))}")
    return out, report


def leaf_codes(codes: set[str]) -> set[str]:
    """Codes that no other code extends (in sorted order a parent comes right before its child)."""
    ordered = sorted(codes)
    return {c for c, nxt in zip(ordered, [*ordered[1:], ""], strict=True) if not nxt.startswith(c)}


def differing(files: dict[str, bytes], out: Path) -> list[str]:
    """Names of generated files that are missing from `out` or differ from it."""
    return [n for n, data in files.items() if not (out / n).is_file() or (out / n).read_bytes() != data]


def write(files: dict[str, bytes], out: Path) -> None:
    for name, data in files.items():
        (out / name).write_bytes(data)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--shared", type=Path, default=DEFAULT_SHARED, help="path to shared/data")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="rules/valuesets folder")
    parser.add_argument("--check", action="store_true", help="compare only; exit 1 on difference")
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    try:
        files, report = build(args.shared, args.out)
    except BuildError as exc:
        print(f"build_valuesets: {exc}", file=sys.stderr)
        return 2
    if not args.quiet:
        print("\n".join(report))
    if args.check:
        names = differing(files, args.out)
        for name in names:
            print(f"differs: {name}", file=sys.stderr)
        return 1 if names else 0
    write(files, args.out)
    if not args.quiet:
        for name, data in files.items():
            print(f"wrote {name} ({len(data)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
