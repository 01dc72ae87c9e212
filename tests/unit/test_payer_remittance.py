"""835 remittances: pyx12-validated synthetic files load idempotently; bad files load nothing; matching,
the cause table, verdict vs outcome (false-ready) and the revenue what-if (the article's numbers)."""

from __future__ import annotations

import io
import json
from decimal import Decimal
from pathlib import Path

import pytest
import pyx12.params
import pyx12.x12n_document

from rules.denials import AREAS, CAUSES, TABLE, cause_of
from rules.revenue import BadFigure, Gpci, locality_payment, national_payment, what_if
from smart_app.cli.commands import main
from smart_app.program import denials
from smart_app.program.remit_load import load_files
from smart_app.program.remittance import RemittanceError, read_835
from smart_app.program.remittance_store import HandedOffClaim, RemittanceStore
from tests.support.x12_835 import Claim, Line, denied_line, era, paid_line, reversal

A, B, C, D = "CCMAAAAAAAAAAAAAA", "CCMBBBBBBBBBBBBBB", "CCMCCCCCCCCCCCCCC", "CCMDDDDDDDDDDDDDD"


def _claims() -> list[HandedOffClaim]:
    def hc(cid: str, patient: str, mbi: str, codes: tuple[tuple[str, int], ...]) -> HandedOffClaim:
        return HandedOffClaim(cid, patient, "2026-10", mbi, codes, Decimal("0"), f"v-{patient[-1]}", "ready")

    return [
        hc(A, "Patient/a", "1EG4TE5MK71", (("99490", 1), ("99439", 1))),
        hc(B, "Patient/b", "1EG4TE5MK72", (("99490", 1),)),
        hc(C, "Patient/c", "1EG4TE5MK73", (("99490", 1),)),
        hc(D, "Patient/d", "1EG4TE5MK74", (("99490", 1),)),
    ]


PAID = Claim(A, "1EG4TE5MK71", [paid_line(), paid_line("99439", "50.44", "10.09")])
DENIED = Claim(B, "1EG4TE5MK72", [denied_line(carc="16", rarcs=("N290",))], status="4")
PARTIAL = Claim(C, "1EG4TE5MK73", [Line("99490", "66.13", "40.00", [("CO", "151", "26.13")], ["N362"])])
# matched by Medicare id + month (claim id from another system), denied for a missing consent form
CONSENT = Claim(
    "EXT-991", "1EG4TE5MK74", [denied_line(carc="16", rarcs=("N3",))], status="4", payer_claim="PCN9"
)


def files() -> dict[str, str]:
    return {
        "medicare-1.835": era([PAID, DENIED, PARTIAL], trace="EFT1001"),
        "acme-1.835": era([CONSENT], payer="acme", trace="ACME77"),
        "medicare-2.835": era(  # paid claim reversed, corrected: 99439 taken back (B15)
            [
                reversal(PAID, "PCN0001"),
                Claim(
                    A,
                    "1EG4TE5MK71",
                    [paid_line(), Line("99439", "50.44", "0.00", [("CO", "B15", "50.44")])],
                    payer_claim="PCN0002",
                ),
            ],
            trace="EFT1002",
            date="20261215",
        ),
    }


def pyx12_valid(text: str) -> bool:
    return bool(pyx12.x12n_document.x12n_document(pyx12.params.params(), io.StringIO(text), None, None, None))


@pytest.fixture()
def store(tmp_path: Path) -> RemittanceStore:
    s = RemittanceStore.in_dir(tmp_path)
    s.record_claims(_claims())
    yield s
    s.close()


def test_synthetic_files_are_valid_835_for_pyx12() -> None:
    for name, text in files().items():
        assert pyx12_valid(text), name


def test_reading_clp_svc_cas_lq() -> None:
    [r] = read_835(files()["medicare-1.835"].encode(), "m.835")
    assert (r.payer, r.trace, r.total_paid) == ("MEDICARE PART B JF", "EFT1001", Decimal("133.25"))
    paid, denied, partial = r.claims
    assert [ln.code for ln in paid.lines] == ["99490", "99439"] and paid.member_id == "1EG4TE5MK71"
    assert denied.status == "4" and denied.lines[0].remarks == ("N290",)
    assert [(a.group, a.reason, a.amount) for a in partial.lines[0].adjustments] == [
        ("CO", "151", Decimal("26.13"))
    ]


def test_load_is_idempotent_and_counts(store: RemittanceStore) -> None:
    batch = [(n, t.encode()) for n, t in files().items()]
    first = load_files(store, batch)
    assert first.summary() == "files=3 claims=6 lines=9 paid=3 denied=3 adjusted=3 duplicates=0"
    before = store.lines()
    again = load_files(store, batch)
    assert again.summary() == "files=0 claims=0 lines=0 paid=0 denied=0 adjusted=0 duplicates=3"
    assert store.lines() == before


def test_each_line_is_matched_to_its_patient_month_and_code(store: RemittanceStore) -> None:
    load_files(store, [(n, t.encode()) for n, t in files().items()])
    got = {(ln.claim_id, ln.code, ln.outcome): (ln.patient, ln.month, ln.matched) for ln in store.lines()}
    assert got[(A, "99439", "paid")] == ("Patient/a", "2026-10", "matched")
    assert got[("EXT-991", "99490", "denied")] == ("Patient/d", "2026-10", "matched")  # by MBI + month
    assert got[(B, "99490", "denied")] == ("Patient/b", "2026-10", "matched")


@pytest.mark.parametrize(
    ("mutate", "segment"),
    [
        (lambda t: t[: t.index("CLP*CCMCCC")], "SE"),  # truncated
        (lambda t: t.replace("SE*", "SE*9", 1), "SE"),  # wrong segment count
        (lambda t: t.replace("CAS*CO*151", "CAS*XX*151"), "CAS"),  # unknown adjustment group
        (lambda t: t.replace("LQ*HE*N362", "LQ*HE*Q999"), "LQ"),  # unknown remark code
        (lambda t: t.replace("CLP*CCMBBBBBBBBBBBBBB*4", "CLP*CCMBBBBBBBBBBBBBB*77"), "CLP"),  # unknown status
        (lambda t: t.replace("*40.00**1", "*41.00**1"), "SVC"),  # line does not balance
        (lambda t: t.replace("BPR*I*133.25", "BPR*I*150.00"), "BPR"),  # payment does not balance
    ],
)
def test_bad_files_give_one_error_naming_the_segment_and_load_nothing(
    store: RemittanceStore,
    mutate,
    segment: str,  # type: ignore[no-untyped-def]
) -> None:
    good = files()["acme-1.835"]
    bad = mutate(files()["medicare-1.835"])
    with pytest.raises(RemittanceError, match=rf"bad\.835: segment {segment}\b"):
        load_files(store, [("good.835", good.encode()), ("bad.835", bad.encode())])
    assert store.counts() == (0, 0)  # the good file before it was not loaded either


def test_cli_remit_last_line_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    paths = []
    for name, text in files().items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    data = str(tmp_path / "data")
    assert main(["remit", "--data-dir", data, *paths]) == 0
    assert capsys.readouterr().out.splitlines()[-1].startswith("files=3 claims=6 lines=9 ")
    assert main(["remit", "--data-dir", data, *paths]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("duplicates=3")
    (tmp_path / "bad.835").write_text(files()["acme-1.835"].replace("SE*", "SE*7", 1))
    assert main(["remit", "--data-dir", data, str(tmp_path / "bad.835")]) == 2
    err = capsys.readouterr().err
    assert "segment SE" in err and "Nothing was loaded" in err and "Traceback" not in err


def test_cause_table_is_cited_and_covers_the_four_areas() -> None:
    assert AREAS[:4] == ("consent", "documentation-time", "overlap", "eligibility")
    assert {r.area for r in TABLE} >= set(AREAS[:4])
    assert all(r.citation and r.confidence in {"H", "M", "L"} and r.cause in CAUSES for r in TABLE)
    assert cause_of(["16"], ["N290"]).cause == "documentation"
    assert cause_of(["16"], ["N3"]).cause == "consent"
    assert cause_of(["45", "18"]).cause == "duplicate"  # routine CARC 45 skipped
    assert cause_of(["97"], ["M80"]).area == "overlap"
    assert cause_of(["109"]).rules_cover is None  # coverage: outside the app's rules
    assert cause_of(["999"]).cause == "other"


def test_denial_analytics_and_false_ready(store: RemittanceStore) -> None:
    load_files(store, [(n, t.encode()) for n, t in files().items()])
    lines = store.lines()
    [oct_] = denials.by_month(lines)
    # in effect: A 99490 paid, A 99439 denied (B15, corrected), B denied, C adjusted, D denied
    assert (oct_.lines, oct_.paid_lines, oct_.adjusted_lines, oct_.denied_lines) == (5, 1, 1, 3)
    assert oct_.denial_rate == Decimal("0.6000")
    assert oct_.denied_revenue == Decimal("50.44") + Decimal("66.13") * 2
    assert dict((c, n) for c, n, _a in oct_.causes) == {"time-threshold": 1, "documentation": 1, "consent": 1}
    vo = denials.verdict_vs_outcome(lines, store.claims())
    assert (vo.remitted, vo.said_ready) == (4, 4)
    # A: 99439 denied B15 (time rule), D: consent -> false ready; B: N290 (claim data) is no rule
    assert {c.patient for c in vo.false_ready_cases} == {"Patient/a", "Patient/d"}
    assert vo.false_ready_rate == Decimal("0.5000")
    assert denials.average_payment(lines) == Decimal("46.45")  # (52.90 + 40.00) / 2 paid patient-months


def test_fhir_eob_is_read_and_matched(store: RemittanceStore) -> None:
    eob = {
        "resourceType": "ExplanationOfBenefit",
        "id": "eob1",
        "status": "active",
        "outcome": "complete",
        "claim": {"identifier": {"system": "https://ccm-ready.org/fhir/identifier/claim", "value": B}},
        "insurer": {"display": "ACME"},
        "billablePeriod": {"start": "2026-10-01"},
        "item": [
            {
                "sequence": 1,
                "productOrService": {"coding": [{"code": "99490"}]},
                "adjudication": [
                    {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 66.13}},
                    {"category": {"coding": [{"code": "benefit"}]}, "amount": {"value": 0}},
                    {
                        "category": {"coding": [{"code": "denialreason"}]},
                        "amount": {"value": 66.13},
                        "reason": {
                            "coding": [
                                {
                                    "system": "https://x12.org/codes/claim-adjustment-reason-codes",
                                    "code": "97",
                                },
                                {
                                    "system": "https://x12.org/codes/remittance-advice-remark-codes",
                                    "code": "M80",
                                },
                            ]
                        },
                    },
                ],
            }
        ],
    }
    counts = load_files(store, [("eob.json", json.dumps(eob).encode())])
    assert counts.summary() == "files=1 claims=1 lines=1 paid=0 denied=1 adjusted=0 duplicates=0"
    [line] = store.lines()
    assert (line.patient, line.code, denials.line_cause(line)) == ("Patient/b", "99490", "overlap")


def test_what_if_reproduces_the_article(capsys: pytest.CaptureFixture[str]) -> None:
    w = what_if(90, 45, 18, 5)
    assert (w.monthly_billed, w.monthly_lost_now) == (Decimal("4050.00"), Decimal("729.00"))
    assert (w.monthly_gain, w.yearly_gain) == (Decimal("526.50"), Decimal("6318.00"))
    assert (
        main(["what-if", "--patients", "90", "--payment", "45", "--denial-rate", "18", "--target-rate", "5"])
        == 0
    )
    assert capsys.readouterr().out.splitlines()[-1] == "monthly_gain=526.50 yearly_gain=6318.00"
    with pytest.raises(BadFigure):
        what_if(90, 45, 118, 5)
    assert (
        main(["what-if", "--patients", "-1", "--payment", "45", "--denial-rate", "18", "--target-rate", "5"])
        == 2
    )


def test_locality_adjustment() -> None:
    assert national_payment("99490") == Decimal("66.13")  # the pack's national amount, same release
    unity = Gpci("national", Decimal(1), Decimal(1), Decimal(1))
    assert locality_payment("99490", unity) == Decimal("66.13")
    high = Gpci("high-cost", Decimal("1.05"), Decimal("1.20"), Decimal("1.0"))
    # (1.00 × 1.05 + 0.91 × 1.20 + 0.07 × 1.0) × 33.4009
    assert locality_payment("99490", high) == Decimal("73.88")


def test_fhir_claim_response_takes_codes_from_our_claim(store: RemittanceStore) -> None:
    response = {
        "resourceType": "ClaimResponse",
        "id": "cr1",
        "status": "active",
        "outcome": "complete",
        "request": {"identifier": {"value": A}},
        "insurer": {"display": "Medicare"},
        "created": "2026-11-20",
        "billablePeriod": {"start": "2026-10-01"},
        "item": [
            {
                "itemSequence": 1,
                "adjudication": [
                    {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 66.13}},
                    {"category": {"coding": [{"code": "coinsurance"}]}, "amount": {"value": 13.23}},
                    {"category": {"coding": [{"code": "benefit"}]}, "amount": {"value": 52.90}},
                ],
            },
            {
                "itemSequence": 2,
                "adjudication": [
                    {"category": {"coding": [{"code": "submitted"}]}, "amount": {"value": 50.44}},
                    {"category": {"coding": [{"code": "benefit"}]}, "amount": {"value": 0}},
                    {
                        "category": {"coding": [{"code": "denialreason"}]},
                        "amount": {"value": 50.44},
                        "reason": {
                            "coding": [
                                {
                                    "system": "https://x12.org/codes/claim-adjustment-reason-codes",
                                    "code": "151",
                                }
                            ]
                        },
                    },
                ],
            },
        ],
    }
    bundle = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": response}]}
    counts = load_files(store, [("cr.json", json.dumps(bundle).encode())])
    assert counts.summary() == "files=1 claims=1 lines=2 paid=1 denied=1 adjusted=0 duplicates=0"
    got = [(ln.code, ln.outcome, ln.matched) for ln in store.lines()]
    assert got == [("99490", "paid", "matched"), ("99439", "denied", "matched")]
    with pytest.raises(RemittanceError, match="no claim"):
        load_files(store, [("x.json", json.dumps({**response, "request": {}}).encode())])
