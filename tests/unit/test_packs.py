"""Policy packs: loading, validation, cited data, payments equal to the CMS rows."""

from __future__ import annotations

import copy
import csv
import json
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from rules.month import BadMonth, Month
from rules.packs import (
    DEFAULT_PACK,
    PACK_DIR,
    PackError,
    PolicyPack,
    UnknownPolicy,
    available,
    load_pack,
    pack_for_month,
    parse_pack,
)

CCM = ("99490", "99439", "99491", "99437", "99487", "99489")
REQUIRED_2025 = (
    *CCM,
    "99424",
    "99425",
    "99426",
    "99427",
    "G0556",
    "G0557",
    "G0558",
    "99495",
    "99496",
    "99453",
    "99454",
    "99457",
    "99458",
    "98975",
    "98976",
    "98977",
    "98978",
    "98980",
    "98981",
    "99484",
    "99492",
    "99493",
    "99494",
    "G0181",
    "G0182",
    "G0506",
    *(str(n) for n in range(90951, 90971)),
)
REQUIRED_2026 = (
    *REQUIRED_2025,
    "G0568",
    "G0569",
    "G0570",
    "99445",
    "99470",
    "98984",
    "98985",
    "98986",
    "98979",
)


def raw(pack_id: str) -> dict:
    return json.loads((PACK_DIR / f"{pack_id}.json").read_text())


def test_available_and_default() -> None:
    assert available() == ["cms-pfs-2025", "cms-pfs-2026"]
    assert DEFAULT_PACK == "cms-pfs-2026"
    assert load_pack(DEFAULT_PACK).id == DEFAULT_PACK


def test_load_is_cached() -> None:
    assert load_pack("cms-pfs-2026") is load_pack("cms-pfs-2026")


@pytest.mark.parametrize("bad", ["cms-pfs-2024", "../etc/passwd", "", "CMS-PFS-2026", None, 2026])
def test_unknown_pack_is_refused(bad: object) -> None:
    with pytest.raises(UnknownPolicy, match="available: cms-pfs-2025, cms-pfs-2026"):
        load_pack(bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("month", "expected"),
    [
        ("2025-01", "cms-pfs-2025"),
        ("2025-12", "cms-pfs-2025"),
        ("2026-01", "cms-pfs-2026"),
        ("2031-07", "cms-pfs-2026"),
        (Month(2026, 3), "cms-pfs-2026"),
    ],
)
def test_pack_for_month(month: str | Month, expected: str) -> None:
    assert pack_for_month(month).id == expected


def test_no_pack_before_2025() -> None:
    with pytest.raises(UnknownPolicy, match="2024-12"):
        pack_for_month("2024-12")
    with pytest.raises(BadMonth):
        pack_for_month("2026-13")


def test_effective_periods() -> None:
    p25, p26 = load_pack("cms-pfs-2025"), load_pack("cms-pfs-2026")
    assert (p25.effective_start, p25.effective_end) == (date(2025, 1, 1), date(2025, 12, 31))
    assert (p26.effective_start, p26.effective_end) == (date(2026, 1, 1), None)
    assert p25.conversion_factor == Decimal("32.3465")
    assert p26.conversion_factor == Decimal("33.4009")
    assert "S30" in p26.conversion_factor_citation.tags


@pytest.mark.parametrize(
    ("pack_id", "required"), [("cms-pfs-2025", REQUIRED_2025), ("cms-pfs-2026", REQUIRED_2026)]
)
def test_every_required_code_is_present_and_cited(pack_id: str, required: tuple[str, ...]) -> None:
    pack = load_pack(pack_id)
    for code in required:
        spec = pack.code(code)
        assert spec.label and spec.family and spec.role in {"clinical-staff", "practitioner", "practice"}
        assert spec.citation.tags and spec.citation.confidence[0] in "HML" and spec.citation.section
        if spec.payment is None:
            assert spec.payment_note, code
        else:
            assert spec.payment_citation is not None, code


def test_2025_pack_has_no_2026_only_codes() -> None:
    pack = load_pack("cms-pfs-2025")
    for code in ("G0568", "99445", "99470", "98979"):
        assert pack.find(code) is None


def test_2026_payments_equal_the_cms_rows(shared_data: Path) -> None:
    pack = load_pack("cms-pfs-2026")
    with (shared_data / "cms-pfs" / "pprrvu2026_jul_nonqp_ccm_rows.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 20
    for row in rows:
        assert pack.code(row["HCPCS"]).payment == Decimal(row["national_nonfacility_payment_usd (derived)"])
        total = Decimal(row["NON-FACILITY TOTAL"]) * pack.conversion_factor
        assert abs(total - pack.code(row["HCPCS"]).payment) < Decimal("0.01")


def test_2025_payments_from_cms_rules_section_4_1() -> None:
    pack = load_pack("cms-pfs-2025")
    expected = {
        "99490": "60.49",
        "99439": "45.93",
        "99491": "82.16",
        "99437": "57.58",
        "99487": "131.65",
        "99489": "70.52",
        "G0556": "15.20",
        "G0557": "48.84",
        "G0558": "107.07",
        "G0506": "60.81",
    }
    for code, amount in expected.items():
        assert pack.code(code).payment == Decimal(amount)
    assert pack.code("98978").payment is None and "ontractor" in pack.code("98978").payment_note


@pytest.mark.parametrize("pack_id", ["cms-pfs-2025", "cms-pfs-2026"])
def test_tracks(pack_id: str) -> None:
    pack = load_pack(pack_id)
    staff, doc, cx = pack.track("clinical-staff"), pack.track("practitioner"), pack.track("complex")
    assert (staff.base, staff.base_minutes, staff.add_on, staff.add_on_minutes, staff.add_on_cap) == (
        "99490",
        20,
        "99439",
        20,
        2,
    )
    assert staff.max_minutes == 60 and staff.minutes == "clinical_staff"
    assert (doc.base, doc.base_minutes, doc.add_on, doc.add_on_minutes, doc.add_on_cap) == (
        "99491",
        30,
        "99437",
        30,
        2,
    )
    assert doc.minutes == "billing_practitioner" and pack.code("99437").citation.confidence == "L"
    assert (cx.base, cx.base_minutes, cx.add_on, cx.add_on_minutes, cx.add_on_cap) == (
        "99487",
        60,
        "99489",
        30,
        2,
    )
    assert cx.requires_mdm and not staff.requires_mdm
    assert staff.units(19) == (0, 0) and staff.units(20) == (1, 0) and staff.units(39) == (1, 0)
    assert staff.units(40) == (1, 1) and staff.units(75) == (1, 2) and staff.units(500) == (1, 2)
    assert cx.units(150) == (1, 2)  # 99489 capped at 2 (pack cap_citation)


def test_concurrency_table_matches_cms_rules_section_2() -> None:
    pack = load_pack("cms-pfs-2026")
    table = {
        c.family: (c.same_practitioner.allowed, c.different_practitioner.allowed) for c in pack.concurrency
    }
    assert table == {
        "ccm": ("once", "no"),
        "pcm": ("no", "yes"),
        "apcm": ("no", "unverified"),
        "tcm": ("yes", "yes"),
        "rpm": ("yes", "yes"),
        "rtm": ("yes", "yes"),
        "bhi": ("yes", "yes"),
        "cpo-home-health": ("no", "no"),
        "cpo-hospice": ("no", "no"),
        "esrd": ("no", "no"),
        "cpt-not-with-ccm": ("no", "yes"),  # §2: CPT "do not report" codes, same practitioner
    }
    assert pack.concurrency_for("apcm").different_practitioner.severity == "blocker"
    assert pack.concurrency_for("apcm").citation.confidence == "L"
    assert pack.code("90970").family == "esrd" and pack.code("G0181").family == "cpo-home-health"


def test_exclusive_groups_cover_section_5_3() -> None:
    pack = load_pack("cms-pfs-2026")
    ids = {g.id for g in pack.exclusive_groups}
    assert {
        "ccm-tracks",
        "pcm-tracks",
        "ccm-vs-pcm",
        "apcm-vs-ccm-pcm-tcm",
        "rpm-vs-rtm",
        "ccm-vs-cpo-esrd",
        "rpm-device-days",
        "rpm-management-10-vs-20",
        "rtm-management-10-vs-20",
    } <= ids
    tracks = next(g for g in pack.exclusive_groups if g.id == "ccm-tracks")
    assert frozenset({"99490", "99439"}) in tracks.sets and len(tracks.sets) == 3


def test_add_ons_have_bases_in_the_pack() -> None:
    for pack_id in available():
        pack = load_pack(pack_id)
        for spec in pack.codes.values():
            if spec.is_add_on:
                assert spec.bases and all(pack.code(b).kind == "base" for b in spec.bases)
        assert pack.code("99439").base == "99490" and pack.code("99494").bases == ("99492", "99493")


def test_labels_are_our_own_short_labels() -> None:
    for spec in load_pack("cms-pfs-2026").codes.values():
        assert len(spec.label) <= 80


# ------------------------------------------------------------------ validation on load


def _broken(mutate) -> dict:  # type: ignore[no-untyped-def]
    data = copy.deepcopy(raw("cms-pfs-2026"))
    mutate(data)
    return data


def _code(data: dict, code: str) -> dict:
    return next(c for c in data["codes"] if c["code"] == code)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: _code(d, "99490").pop("citation"), "code 99490 has no citation"),
        (lambda d: _code(d, "99490")["citation"].update(tags=[]), "tags"),
        (lambda d: _code(d, "99490")["citation"].update(confidence="X"), "confidence"),
        (lambda d: _code(d, "99439").update(bases=[]), "add-on needs its base"),
        (lambda d: _code(d, "99439").update(bases=["99999"]), "base 99999 is not in the pack"),
        (
            lambda d: _code(d, "99490").update(payment=None, payment_note=None),
            "null payment needs a payment_note",
        ),
        (lambda d: _code(d, "99490").update(payment="-1"), "non-negative"),
        (lambda d: _code(d, "99490").update(cap=0), "cap must be a positive integer"),
        (lambda d: _code(d, "99490").update(role="robot"), "role"),
        (lambda d: d["codes"].append(copy.deepcopy(d["codes"][0])), "listed twice"),
        (lambda d: d["tracks"][0].update(add_on="99437"), "timed add-on of 99490"),
        (lambda d: d["concurrency"][0]["same_practitioner"].update(severity="fatal"), "severity"),
        (lambda d: d["concurrency"][0]["same_practitioner"].update(rule="oops"), "start with 'conflict.'"),
        (lambda d: d["exclusive_groups"][0]["sets"].append(["00000"]), "00000 is not in the pack"),
        (lambda d: d["effective"].update(end="2025-01-01"), "before effective.start"),
        (lambda d: d.pop("initiating_visit"), "initiating_visit must be an object"),
    ],
)
def test_validation_rejects_broken_packs(mutate, message: str) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PackError, match=message):
        parse_pack(_broken(mutate), where="test.json")


def test_parse_pack_accepts_the_shipped_data() -> None:
    pack = parse_pack(raw("cms-pfs-2025"))
    assert isinstance(pack, PolicyPack) and pack.id == "cms-pfs-2025"
    with pytest.raises(KeyError, match="not in policy pack"):
        pack.code("12345")


@pytest.mark.parametrize("pack_id", ["cms-pfs-2025", "cms-pfs-2026"])
def test_an_unverified_pairing_always_blocks(pack_id: str) -> None:
    """Where cms-rules.md leaves a pairing open (section 8), the reading that cannot give a false ready."""
    for c in load_pack(pack_id).concurrency:
        for outcome in (c.same_practitioner, c.different_practitioner):
            if outcome.allowed in ("unverified", "no", "once"):
                assert outcome.severity == "blocker", (c.family, outcome)
