"""Revenue arithmetic: the denial what-if and the locality-adjusted payment. Pure, Decimal, cents.

What-if (the Health Prime scenario: 90 patients × $45, denials 18 % → 5 %):
  monthly billed       = patients × payment                         (90 × 45 = 4,050.00)
  monthly lost (now)   = monthly billed × denial rate               (729.00)
  monthly lost (target)= monthly billed × target rate               (202.50)
  monthly gain         = monthly billed × (denial rate − target)    (526.50)
  yearly gain          = 12 × monthly gain                          (6,318.00)

Locality payment (cms-rules.md §4: "The locality amount applies GPCIs to each RVU component"):
  (work RVU × work GPCI + non-facility PE RVU × PE GPCI + MP RVU × MP GPCI) × conversion factor.
"""

from __future__ import annotations

import csv
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import cache
from pathlib import Path

from rules.record_type import record

CENT = Decimal("0.01")
HUNDRED = Decimal(100)
RVU_FILE = Path(__file__).resolve().parent / "fees" / "pprrvu2026_jul_ccm_rvu.csv"
RVU_CITATION = "CMS PPRRVU2026 July release (RVU26C), cms-rules.md §4.2 [S30]; rules/fees/SOURCE.md"


class BadFigure(ValueError):
    """A what-if input out of range (negative patients, a rate over 100 %, ...)."""


def cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def to_decimal(value: object, name: str) -> Decimal:
    try:
        d = Decimal(str(value).strip().rstrip("%"))
    except (InvalidOperation, ValueError):
        raise BadFigure(f"{name} must be a number, not {value!r}") from None
    if not d.is_finite():
        raise BadFigure(f"{name} must be a finite number")
    return d


@record
class WhatIf:
    """Enrolled patients, average monthly payment, current and target denial rates (percent)."""

    patients: int
    payment: Decimal
    denial_rate: Decimal  # percent, 0..100
    target_rate: Decimal  # percent, 0..100

    @property
    def monthly_billed(self) -> Decimal:
        return cents(self.payment * self.patients)

    @property
    def monthly_lost_now(self) -> Decimal:
        return cents(self.payment * self.patients * self.denial_rate / HUNDRED)

    @property
    def monthly_lost_target(self) -> Decimal:
        return cents(self.payment * self.patients * self.target_rate / HUNDRED)

    @property
    def monthly_gain(self) -> Decimal:
        return cents(self.payment * self.patients * (self.denial_rate - self.target_rate) / HUNDRED)

    @property
    def yearly_gain(self) -> Decimal:
        return cents(self.payment * self.patients * (self.denial_rate - self.target_rate) * 12 / HUNDRED)


def what_if(patients: object, payment: object, denial_rate: object, target_rate: object) -> WhatIf:
    """Validated what-if; BadFigure when an input is not a number or is out of range."""
    n = to_decimal(patients, "patients")
    if n < 0 or n != n.to_integral_value():
        raise BadFigure("patients must be a whole number, zero or more")
    pay = to_decimal(payment, "payment")
    if pay < 0:
        raise BadFigure("payment must be zero or more")
    rates = []
    for name, value in (("denial rate", denial_rate), ("target rate", target_rate)):
        r = to_decimal(value, name)
        if not 0 <= r <= 100:
            raise BadFigure(f"{name} must be a percentage between 0 and 100")
        rates.append(r)
    return WhatIf(int(n), pay, rates[0], rates[1])


# ---------------------------------------------------------------------- locality


@record
class Rvu:
    code: str
    work: Decimal
    pe_nonfacility: Decimal
    mp: Decimal
    conversion_factor: Decimal


@record
class Gpci:
    """A Medicare payment locality's three geographic practice cost indices (configured by the practice)."""

    locality: str
    work: Decimal
    pe: Decimal
    mp: Decimal


@cache
def rvus() -> dict[str, Rvu]:
    with RVU_FILE.open(encoding="utf-8", newline="") as fh:
        return {
            r["code"]: Rvu(
                r["code"],
                Decimal(r["work_rvu"]),
                Decimal(r["nonfacility_pe_rvu"]),
                Decimal(r["mp_rvu"]),
                Decimal(r["conversion_factor"]),
            )
            for r in csv.DictReader(fh)
        }


def gpci_from(raw: object) -> Gpci | None:
    """A Gpci from config ({"locality": ..., "work": ..., "pe": ..., "mp": ...}); None when not set."""
    if not raw:
        return None
    if not isinstance(raw, dict):
        raise BadFigure("GPCI_LOCALITY must be a mapping with locality, work, pe and mp")
    values = [to_decimal(raw.get(k), f"GPCI {k}") for k in ("work", "pe", "mp")]
    if any(v <= 0 or v > 3 for v in values):
        raise BadFigure("each GPCI must be between 0 and 3")
    return Gpci(str(raw.get("locality") or "configured locality"), *values)


def locality_payment(code: str, gpci: Gpci) -> Decimal | None:
    """Non-facility payment of `code` in the locality; None when the code's RVUs are not on file."""
    r = rvus().get(code)
    if r is None:
        return None
    return cents((r.work * gpci.work + r.pe_nonfacility * gpci.pe + r.mp * gpci.mp) * r.conversion_factor)


def national_payment(code: str) -> Decimal | None:
    """Total non-facility RVU × CF (no GPCI): matches the pack's national amounts for the same release."""
    r = rvus().get(code)
    if r is None:
        return None
    return cents((r.work + r.pe_nonfacility + r.mp) * r.conversion_factor)
