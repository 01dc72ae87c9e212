"""Remittance records (what the payer did with each claim line) and how a line's outcome is read. Pure.

Filled from X12 835 (smart_app/program/remittance.py) or FHIR ExplanationOfBenefit / ClaimResponse
(fhir_mapping/read_remittance.py). Amounts are Decimal dollars; a reversal carries negative amounts.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Literal

from rules.denials import is_routine
from rules.record_type import record

Outcome = Literal["paid", "adjusted", "denied", "reversal"]
OUTCOMES: tuple[Outcome, ...] = ("paid", "adjusted", "denied", "reversal")
# CLP02 claim status codes (X12 835): 4 = denied, 22 = reversal of a previous payment.
DENIED_STATUS = "4"
REVERSAL_STATUS = "22"


@record
class Adjustment:
    group: str  # CO | PR | OA | PI | CR
    reason: str  # CARC
    amount: Decimal


@record
class RemitLine:
    code: str  # CPT/HCPCS ("" when the payer answered at claim level only)
    charge: Decimal
    paid: Decimal
    units: int = 1
    service_date: date | None = None
    adjustments: tuple[Adjustment, ...] = ()
    remarks: tuple[str, ...] = ()  # RARC
    modifiers: tuple[str, ...] = ()


@record
class ClaimPayment:
    claim_id: str  # CLP01: the practice's claim id (ours when the claim came from the hand-off)
    status: str  # CLP02
    charge: Decimal
    paid: Decimal
    payer_claim_number: str = ""  # CLP07
    member_id: str = ""  # patient's member id (Medicare MBI) as the payer has it
    rendering_npi: str = ""
    period_start: date | None = None
    adjustments: tuple[Adjustment, ...] = ()  # claim level
    remarks: tuple[str, ...] = ()  # claim level (MOA)
    lines: tuple[RemitLine, ...] = ()


@record
class Remittance:
    source: str  # "x12-835" | "fhir-eob" | "fhir-claimresponse"
    payer: str  # payer name
    payer_id: str  # payer identifier (TRN03 / N1*PR id / insurer reference)
    trace: str  # TRN02 check/EFT trace number, or the FHIR resource id
    paid_date: date | None
    total_paid: Decimal
    claims: tuple[ClaimPayment, ...]

    @property
    def key(self) -> str:
        """Identity of the remittance: loading it again is a duplicate."""
        return f"{self.source}|{self.payer_id or self.payer}|{self.trace}"


def denial_adjustments(adjustments: tuple[Adjustment, ...]) -> tuple[Adjustment, ...]:
    """Adjustments that are not routine (patient cost sharing, fee-schedule contractual, sequestration)."""
    return tuple(a for a in adjustments if a.group != "PR" and not is_routine(a.reason))


def line_outcome(claim_status: str, line: RemitLine) -> Outcome:
    """paid: allowed in full (payment + routine cost sharing); adjusted: paid less for a non-routine
    reason; denied: nothing paid for a non-routine reason (or the claim was denied); reversal: CLP02 22."""
    if claim_status == REVERSAL_STATUS:
        return "reversal"
    odd = denial_adjustments(line.adjustments)
    if claim_status == DENIED_STATUS or (line.paid <= 0 and odd):
        return "denied"
    if odd:
        return "adjusted"
    return "paid"
