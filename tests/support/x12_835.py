"""Synthetic X12 835 (005010X221A1) remittance files for tests: paid, partial, denied, reversals, two payers.

`era(...)` builds one interchange with one 835 transaction; amounts balance the way the guide requires
(SVC02 − Σ line CAS = SVC03; BPR02 = Σ CLP04). The files are validated by pyx12 in the tests before use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

PAYERS = {
    "medicare": ("MEDICARE PART B JF", "1512345678", "01182"),
    "acme": ("ACME ADVANTAGE PLAN", "1999999999", "ACME1"),
}


@dataclass
class Line:
    code: str
    charge: str
    paid: str
    adjustments: list[tuple[str, str, str]] = field(default_factory=list)  # (group, CARC, amount)
    remarks: list[str] = field(default_factory=list)  # RARC
    units: int = 1
    date: str = "20261030"


@dataclass
class Claim:
    claim_id: str
    member_id: str
    lines: list[Line]
    status: str = "1"  # 1 processed as primary, 4 denied, 22 reversal
    payer_claim: str = "PCN0001"
    npi: str = "1234567893"
    moa: list[str] = field(default_factory=list)

    @property
    def charge(self) -> Decimal:
        return sum((Decimal(ln.charge) for ln in self.lines), Decimal(0))

    @property
    def paid(self) -> Decimal:
        return sum((Decimal(ln.paid) for ln in self.lines), Decimal(0))

    @property
    def patient_resp(self) -> Decimal:
        return sum((Decimal(a) for ln in self.lines for g, _c, a in ln.adjustments if g == "PR"), Decimal(0))


def paid_line(code: str = "99490", charge: str = "66.13", coins: str = "13.23", **kw: object) -> Line:
    """Allowed in full: Medicare pays 80 %, the patient owes the 20 % coinsurance (PR-2)."""
    paid = str(Decimal(charge) - Decimal(coins))
    return Line(code, charge, paid, [("PR", "2", coins)], **kw)  # type: ignore[arg-type]


def denied_line(
    code: str = "99490",
    charge: str = "66.13",
    carc: str = "16",
    rarcs: tuple[str, ...] = ("N290",),
    group: str = "CO",
    **kw: object,
) -> Line:
    return Line(code, charge, "0.00", [(group, carc, charge)], list(rarcs), **kw)  # type: ignore[arg-type]


def era(
    claims: list[Claim],
    *,
    payer: str = "medicare",
    trace: str = "EFT0001",
    date: str = "20261201",
    control: str = "000000001",
    plb: str | None = None,
    version: str = "005010X221A1",
) -> str:
    """One 835 interchange, segments separated by "~" and a newline."""
    name, payer_id, _contract = PAYERS[payer]
    total = sum((c.paid for c in claims), Decimal(0)) - (Decimal(plb) if plb else Decimal(0))
    handling = "I" if total > 0 else "H"
    body = [
        f"BPR*{handling}*{total:.2f}*C*ACH*CCP*01*999999999*DA*123456*{payer_id}**01*999988880*DA*98765*{date}"
        if total > 0
        else f"BPR*{handling}*{total:.2f}*C*NON************{date}",
        f"TRN*1*{trace}*{payer_id}",
        f"DTM*405*{date}",
        f"N1*PR*{name}",
        "N3*PO BOX 100",
        "N4*NASHVILLE*TN*37203",
        "PER*BL*EDI SUPPORT*TE*8005551212",
        "N1*PE*CCM READY PRACTICE*XX*1234567893",
        "LX*1",
    ]
    for c in claims:
        body.append(
            f"CLP*{c.claim_id}*{c.status}*{c.charge:.2f}*{c.paid:.2f}*{c.patient_resp:.2f}*MB*{c.payer_claim}*11*1"
        )
        body.append(f"NM1*QC*1*DOE*JANE****MI*{c.member_id}")
        body.append(f"NM1*82*1*SMITH*ANN****XX*{c.npi}")
        if c.moa:
            body.append("MOA***" + "*".join(c.moa))
        body.append(f"DTM*232*{c.lines[0].date if c.lines else '20261001'}")
        for ln in c.lines:
            body.append(f"SVC*HC:{ln.code}*{ln.charge}*{ln.paid}**{ln.units}")
            body.append(f"DTM*472*{ln.date}")
            groups: dict[str, list[tuple[str, str]]] = {}
            for g, carc, amount in ln.adjustments:
                groups.setdefault(g, []).append((carc, amount))
            for g, items in groups.items():
                body.append("CAS*" + g + "*" + "**".join(f"{carc}*{amount}" for carc, amount in items))
            body.extend(f"LQ*HE*{r}" for r in ln.remarks)
    if plb:
        body.append(f"PLB*1234567893*20261231*WO:ADJ1*{plb}")
    st = ["ST*835*0001", *body]
    st.append(f"SE*{len(st) + 1}*0001")
    segs = [
        f"ISA*00*{'':10}*00*{'':10}*ZZ*{'PAYER':<15}*ZZ*{'CCMPRACTICE':<15}*261201*1200*^*00501*{control}*0*P*:",
        f"GS*HP*PAYER*CCMPRACTICE*20261201*1200*1*X*{version}",
        *st,
        "GE*1*1",
        f"IEA*1*{control}",
    ]
    return "~\n".join(segs) + "~\n"


def reversal(claim: Claim, payer_claim: str | None = None) -> Claim:
    """The reversal (CLP02 22) of a previously paid claim: every amount negated."""

    def neg(x: str) -> str:
        return f"{-Decimal(x):.2f}"

    lines = [
        Line(
            ln.code,
            neg(ln.charge),
            neg(ln.paid),
            [(g, c, neg(a)) for g, c, a in ln.adjustments],
            list(ln.remarks),
            ln.units,
            ln.date,
        )
        for ln in claim.lines
    ]
    return Claim(claim.claim_id, claim.member_id, lines, "22", payer_claim or claim.payer_claim, claim.npi)
