"""rules.chronic: chronic-condition classification and distinct-condition keys.

The first part needs only the package data committed in rules/valuesets/. The last part reads the
shared synthetic patients (../shared/data) directly and is skipped when they are absent.
"""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from rules import chronic
from rules.chronic import ICD10_WHO, ICD10CM, SNOMED, Classification, classify, classify_codings
from rules.records import Coding


def icd(code: str, display: str = "") -> Classification:
    return classify(Coding(ICD10CM, code, display))


def sct(code: str, display: str = "") -> Classification:
    return classify(Coding(SNOMED, code, display))


# ---------------------------------------------------------------------------- ICD-10-CM / CCIR


def test_type_2_diabetes_codes_are_one_chronic_condition() -> None:
    a, b = icd("E11.9"), icd("E11.65")
    assert a.chronic and b.chronic
    assert a.source == b.source == "CCIR"
    assert a.condition_key == b.condition_key == "diabetes"
    assert a.condition_label == "Diabetes"
    assert a.reason == "CCIR v2023.1: chronic"


@pytest.mark.parametrize("variant", ["E119", "e11.9", " E11.9 ", "e119"])
def test_icd_code_with_or_without_dot_any_case(variant: str) -> None:
    assert icd(variant) == icd("E11.9")


def test_essential_hypertension_is_chronic() -> None:
    result = icd("I10")
    assert (result.chronic, result.source, result.condition_key) == (True, "CCIR", "hypertension")


def test_acute_upper_respiratory_infection_is_not_chronic() -> None:
    result = icd("J06.9")
    assert not result.chronic
    assert result.source == "CCIR"
    assert result.condition_key is None
    assert result.reason == "CCIR v2023.1: not chronic"


@pytest.mark.parametrize("code", ["D50.9", "D64.9"])
def test_anaemia_is_chronic_in_ccir(code: str) -> None:
    # CCIR v2023.1 gives D50.9 (iron deficiency anemia, unspecified) and D64.9 (anemia, unspecified)
    # indicator 1; both are in the CMS CCW anemia list, so they share one key.
    result = icd(code)
    assert (result.chronic, result.source, result.condition_key) == (True, "CCIR", "anemia")
    assert result.reason == "CCIR v2023.1: chronic"


def test_no_determination_is_not_counted() -> None:
    result = icd("Z79.4")  # long-term insulin use: CCIR indicator 9
    assert not result.chronic
    assert result.source == "CCIR"
    assert "no determination" in result.reason


def test_fy2026_code_missing_from_ccir_inherits_from_ccw_list() -> None:
    # I1A.0 (resistant hypertension, FY2023+) is absent from CCIR v2023.1 and has no CCIR sibling
    # under I1A; the CMS CCW hypertension list names it.
    result = icd("I1A.0")
    assert result.chronic
    assert result.source == "CCIR"
    assert result.condition_key == "hypertension"
    assert result.reason.startswith("not in CCIR v2023.1; ")
    assert "CCW hypertension" in result.reason


def test_fy2026_code_missing_from_ccir_inherits_from_its_category() -> None:
    result = icd("E11.A")  # type 2 diabetes in remission (FY2026)
    assert (result.chronic, result.source, result.condition_key) == (True, "CCIR", "diabetes")
    assert result.reason == "not in CCIR v2023.1; all 94 CCIR codes under E11 are chronic"
    copd = icd("J44.81")
    assert copd.chronic and copd.condition_key == "copd"
    assert copd.reason.startswith("not in CCIR v2023.1; ")


def test_fy2026_code_missing_from_ccir_inherits_from_listed_parent() -> None:
    obesity = icd("E66.811")  # obesity class 1 (FY2025); CCIR listed E66.8
    assert obesity.chronic and obesity.condition_key == "obesity"
    assert obesity.reason == "not in CCIR v2023.1; parent E66.8 is chronic"
    not_chronic = icd("B88.01")  # parent B88.0 is not chronic in CCIR
    assert not not_chronic.chronic
    assert not_chronic.source == "CCIR"
    assert not_chronic.reason == "not in CCIR v2023.1; parent B88.0 is not chronic"


@pytest.mark.parametrize("code", ["E11.99", "Q99.99", "hello", "", "11.9"])
def test_unknown_icd_code_is_not_chronic(code: str) -> None:
    result = icd(code)
    assert not result.chronic
    assert result.source is None
    assert result.condition_key is None
    assert result.reason in {"unknown ICD-10-CM code", "not a valid ICD-10-CM code"}


def test_icd_codes_outside_ccw_group_by_category() -> None:
    result = icd("K50.90")  # Crohn's disease: CCIR chronic, in no CCW list or group prefix
    assert result.chronic
    assert result.condition_key == "icd10cm:K50"
    assert icd("K50.00").condition_key == "icd10cm:K50"


def test_icd_and_snomed_of_one_condition_share_a_key() -> None:
    """cms-rules.md §6 step 3: one condition coded twice is one distinct condition."""
    assert icd("J32.9").condition_key == sct("40055000").condition_key == "chronic_sinusitis"
    assert icd("J30.89").condition_key == sct("446096008").condition_key == "allergic_rhinitis"
    assert icd("L20.9").condition_key == sct("24079001").condition_key == "atopic_dermatitis"
    assert icd("E88.81").condition_key == sct("237602007").condition_key == "metabolic_syndrome"


def test_who_icd10_is_read_as_icd10cm_and_says_so() -> None:
    result = classify(Coding(ICD10_WHO, "E11.9"))
    assert result.chronic and result.condition_key == "diabetes"
    assert result.reason.startswith("WHO ICD-10 code read as ICD-10-CM")


def test_every_icd_code_in_the_tables_is_consistent() -> None:
    tables = chronic._tables()
    groups = {g.key for g in chronic.condition_groups()}
    counts = {True: 0, False: 0}
    for code in [*tables.ccir, *tables.derived]:
        result = icd(code)
        counts[result.chronic] += 1
        assert result.source == "CCIR", code
        if result.chronic:
            assert result.condition_key and result.condition_label, code
            assert result.condition_key in groups or result.condition_key == f"icd10cm:{code[:3]}", code
        else:
            assert result.condition_key is None and result.condition_label == "", code
    assert counts[True] > 12_000 and counts[False] > 60_000


# ---------------------------------------------------------------------------- SNOMED CT


def test_snomed_diabetes_from_ecqm_matches_icd_key() -> None:
    result = sct("44054006")
    assert (result.chronic, result.source, result.condition_key) == (True, "eCQM", "diabetes")
    assert result.reason == "eCQM value set Diabetes (2.16.840.1.113883.3.464.1003.103.12.1001)"
    assert result.condition_key == icd("E11.9").condition_key


def test_snomed_hypertension_from_ecqm() -> None:
    result = sct("38341003")
    assert (result.chronic, result.source, result.condition_key) == (True, "eCQM", "hypertension")
    assert "Hypertension" in result.reason


def test_snomed_curated_copd_and_hyperlipidemia() -> None:
    copd = sct("185086009")
    assert (copd.chronic, copd.source, copd.condition_key) == (True, "curated", "copd")
    assert copd.reason.startswith("curated: COPD")
    assert "MLN909188" in copd.reason
    lipids = sct("55822004")
    assert (lipids.chronic, lipids.source, lipids.condition_key) == (True, "curated", "hyperlipidemia")
    assert lipids.condition_key == icd("E78.5").condition_key


@pytest.mark.parametrize(
    ("code", "why"),
    [
        ("10509002", "acute bronchitis"),
        ("444814009", "viral sinusitis"),
        ("15777000", "prediabetes (CCIR R73.03 not chronic)"),
        ("398254007", "pre-eclampsia: excluded from the hypertension set"),
        ("5464005", "brief reactive psychosis: excluded from the psychosis set"),
        ("129588001", "adult failure to thrive: only in the frailty set, not used"),
        ("197270009", "acute hepatic failure: only in the liver-disease set, not used"),
        ("312442005", "history of atrial fibrillation: excluded"),
    ],
)
def test_snomed_not_chronic(code: str, why: str) -> None:
    result = sct(code)
    assert not result.chronic, why
    assert result.source is None
    assert result.condition_key is None


def test_snomed_code_in_two_sets_takes_the_higher_priority_condition() -> None:
    # 443502000 coronary atherosclerosis is in both the CAD and atherosclerosis/PAD sets.
    assert sct("443502000").condition_key == "ischemic_heart_disease"
    # 422166005 diabetic peripheral circulatory disorder is in both diabetes and PAD sets.
    assert sct("422166005").condition_key == "diabetes"


def test_epilepsy_and_seizure_disorder_are_one_condition() -> None:
    assert sct("84757009").condition_key == sct("128613002").condition_key == icd("G40.909").condition_key


def test_curated_and_ecqm_keys_all_exist() -> None:
    tables = chronic._tables()
    groups = {g.key for g in chronic.condition_groups()}
    for code in [*tables.curated, *tables.ecqm]:
        result = sct(code)
        assert result.chronic and result.condition_key in groups, code


# ---------------------------------------------------------------------------- other behaviour


@pytest.mark.parametrize("system", ["http://loinc.org", "", "urn:oid:2.16.840.1.113883.6.90"])
def test_unknown_system_is_not_chronic(system: str) -> None:
    result = classify(Coding(system, "E11.9", "Type 2 diabetes"))
    assert not result.chronic
    assert result.source is None
    assert result.condition_key is None
    assert "not used to identify chronic conditions" in result.reason


def test_display_prefers_the_coding_then_our_data() -> None:
    assert icd("E11.9", "T2DM").display == "T2DM"
    assert icd("E11.9").display == "E11.9 (E11: Type 2 diabetes mellitus)"
    assert sct("44054006").display == "Diabetes mellitus type 2 (disorder)"
    assert sct("185086009", "COPD bronchitis").display == "COPD bronchitis"


def test_system_variants_are_tolerated() -> None:
    assert classify(Coding("https://hl7.org/fhir/sid/icd-10-cm/", "I10")).chronic


def test_classification_is_frozen() -> None:
    with pytest.raises(dataclasses.FrozenInstanceError):
        icd("I10").chronic = False  # type: ignore[misc]


def test_classify_codings_prefers_a_chronic_coding() -> None:
    result = classify_codings(
        [Coding("http://loinc.org", "x"), Coding(SNOMED, "10509002"), Coding(ICD10CM, "I10")]
    )
    assert result.chronic and result.condition_key == "hypertension"
    assert not classify_codings([]).chronic


# ---------------------------------------------------------------------------- shared synthetic patients

ACTIVE = {"active", "recurrence", "relapse"}
DROPPED_VERIFICATION = {"refuted", "entered-in-error"}

# Independent oracle for the carebundle ICD-10-CM codes (what the key of each code must be).
CAREBUNDLE_KEYS = {
    "E11.9": "diabetes",
    "E78.00": "hyperlipidemia",
    "E78.5": "hyperlipidemia",
    "E66.9": "obesity",
    "I10": "hypertension",
    "E03.9": "hypothyroidism",
    "D50.9": "anemia",
    "D64.9": "anemia",
    "D63.1": "anemia",
    "N18.31": "chronic_kidney_disease",
    "N18.32": "chronic_kidney_disease",
}

# Hand decision for every SNOMED code in the Synthea selection (None = not chronic).
SYNTHEA_KEYS: dict[str, str | None] = {
    "444814009": None,
    "195662009": None,
    "162864005": "obesity",
    "10509002": None,
    "38341003": "hypertension",
    "40055000": "chronic_sinusitis",
    "19169002": None,
    "271737000": "anemia",
    "15777000": None,
    "128613002": "epilepsy",
    "703151001": None,
    "84757009": "epilepsy",
    "53741008": "ischemic_heart_disease",
    "43878008": None,
    "239872002": "arthritis",
    "239873007": "arthritis",
    "44054006": "diabetes",
    "302870006": "hyperlipidemia",
    "237602007": "metabolic_syndrome",
    "39848009": None,
    "410429000": None,
    "429007001": None,
    "283385000": None,
    "64859006": "osteoporosis",
    "49436004": "atrial_fibrillation",
    "185086009": "copd",
    "47693006": None,
    "74400008": None,
    "428251008": None,
    "36971009": None,
    "80394007": None,
    "62106007": None,
    "90560007": "gout",
    "232353008": "allergic_rhinitis",
    "275272006": None,
    "68496003": None,
    "62564004": None,
    "368581000119106": "diabetes",
    "26929004": "dementia",
    "72892002": None,
    "35999006": None,
    "230690007": "stroke",
    "124171000119105": "migraine",
    "370247008": None,
    "87433001": "copd",
    "446096008": "allergic_rhinitis",
    "65966004": None,
    "65363002": None,
    "24079001": "atopic_dermatitis",
    "75498004": None,
    "201834006": "arthritis",
    "38822007": None,
    "283371005": None,
    "233678006": "asthma",
}


def _conditions(path: Path) -> Iterator[dict]:
    bundle = json.loads(path.read_text(encoding="utf-8"))
    for entry in bundle.get("entry") or []:
        resource = entry.get("resource") or {}
        if resource.get("resourceType") == "Condition":
            yield resource


def _status(resource: dict, field: str) -> str | None:
    codings = (resource.get(field) or {}).get("coding") or [{}]
    return codings[0].get("code")


def _codings(resource: dict) -> list[Coding]:
    return [
        Coding(c.get("system", ""), c.get("code", ""), c.get("display", ""))
        for c in (resource.get("code") or {}).get("coding") or []
    ]


def _active_chronic(path: Path) -> tuple[dict[str, list[str]], list[Coding]]:
    """Distinct chronic condition keys (-> displays) of a patient's active Conditions, and all codings."""
    keys: dict[str, list[str]] = {}
    seen: list[Coding] = []
    for resource in _conditions(path):
        codings = _codings(resource)
        seen.extend(codings)
        if _status(resource, "clinicalStatus") not in ACTIVE:
            continue
        if _status(resource, "verificationStatus") in DROPPED_VERIFICATION:
            continue
        result = classify_codings(codings)
        if result.chronic:
            assert result.condition_key
            keys.setdefault(result.condition_key, []).append(result.display)
    return keys, seen


def _index(path: Path) -> dict[str, dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as fh:
        return {row["file"]: row for row in csv.DictReader(fh)}


def test_carebundle_patients(shared_data: Path) -> None:
    folder = shared_data / "carebundle-r4"
    index = _index(folder / "patient_index.csv")
    files = sorted((folder / "bundles").glob("*.json"))
    assert len(files) == len(index) == 25
    print("\ncarebundle-r4: distinct active chronic conditions per patient")
    print(f"{'file':32} {'ours':>4} {'oracle':>6}  conditions (index)  -> keys")
    for path in files:
        keys, codings = _active_chronic(path)
        row = index[path.name]
        listed = [c for c in row["conditions_icd10cm"].split(";") if c]
        assert sorted(c.code for c in codings if c.system == ICD10CM) == sorted(listed), path.name
        expected = {CAREBUNDLE_KEYS[c] for c in listed}
        print(
            f"{path.name:32} {len(keys):>4} {len(expected):>6}  {row['conditions_icd10cm'] or '-':26} "
            f"-> {', '.join(sorted(keys)) or '-'}"
        )
        assert set(keys) == expected, path.name
    # the profile names promise: diabetes patients have diabetes, healthy ones fewer than two
    for path in files:
        keys, _ = _active_chronic(path)
        if path.name.startswith("type2_diabetes"):
            assert "diabetes" in keys
        if path.name.startswith("healthy"):
            assert len(keys) < 2


def test_synthea_patients(shared_data: Path) -> None:
    folder = shared_data / "synthea-smart-r4"
    with (folder / "condition_codes_in_selection.csv").open(newline="", encoding="utf-8") as fh:
        listed = {row["code"] for row in csv.DictReader(fh)}
    assert listed == set(SYNTHEA_KEYS), "condition code list changed; review SYNTHEA_KEYS"
    for code, key in SYNTHEA_KEYS.items():
        assert sct(code).condition_key == key, code

    index = _index(folder / "patient_index.csv")
    files = sorted((folder / "bundles").glob("*.json"))
    assert len(files) == len(index) == 44
    print(
        "\nsynthea-smart-r4: distinct active chronic conditions per patient "
        "(heuristic = patient_index n_active_chronic, not ground truth)"
    )
    print(f"{'patient file':28} {'ours':>4} {'heur':>4}  keys")
    disagreements = 0
    for path in files:
        keys, _ = _active_chronic(path)
        row = index[path.name]
        heuristic = int(row["n_active_chronic"])
        flag = "" if len(keys) == heuristic else "  <- differs"
        disagreements += bool(flag)
        print(f"{path.name[:28]:28} {len(keys):>4} {heuristic:>4}  {', '.join(sorted(keys)) or '-'}{flag}")
        # negative controls must stay below the CCM threshold of two chronic conditions
        if row["selection_reason"].startswith("0 chronic") or "should NOT qualify" in row["selection_reason"]:
            assert len(keys) < 2, path.name
    print(f"{disagreements} of {len(files)} patients differ from the heuristic count")


def test_every_snomed_condition_code_in_the_synthea_bundles_is_reviewed(shared_data: Path) -> None:
    """Issue 11 item 5: each common chronic condition in synthea-smart-r4 is classified, with its source."""
    import json

    found: set[str] = set()
    for path in (shared_data / "synthea-smart-r4" / "bundles").glob("*.json"):
        for e in json.loads(path.read_text(encoding="utf-8")).get("entry", []):
            res = e.get("resource", {})
            if res.get("resourceType") == "Condition":
                found |= {c["code"] for c in res["code"]["coding"] if c.get("system") == SNOMED}
    assert found <= set(SYNTHEA_KEYS), f"unreviewed SNOMED codes: {sorted(found - set(SYNTHEA_KEYS))}"
    for code in found:
        result = sct(code)
        assert result.chronic == (SYNTHEA_KEYS[code] is not None), code
        if result.chronic:
            assert result.source in ("eCQM", "curated") and result.reason, code
    common = {
        "44054006": "diabetes",
        "40055000": "chronic_sinusitis",
        "446096008": "allergic_rhinitis",
        "237602007": "metabolic_syndrome",
        "24079001": "atopic_dermatitis",
        "38341003": "hypertension",
    }
    for code, key in common.items():
        assert sct(code).condition_key == key and sct(code).source, code
