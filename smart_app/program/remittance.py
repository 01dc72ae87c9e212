"""X12 835 (005010X221A1) electronic remittance advice -> rules.remittance records, validated by pyx12.

Two passes over a file: pyx12 validates it against the 835 5010 implementation guide (segment order and
counts, element types, code lists, SE/GE/IEA counts); only a file with no error is then read segment by
segment (BPR, TRN, N1*PR, CLP, NM1, DTM, SVC, CAS, LQ, MOA). A few checks pyx12 leaves to the receiver
follow: remark codes against pyx12's own RARC list, CARC format, line and payment balancing. Any problem
raises RemittanceError naming the segment (and its line), and nothing of the file is returned.
"""

from __future__ import annotations

import io
import json
import logging
import re
from collections.abc import Iterator
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from rules.remittance import Adjustment, ClaimPayment, RemitLine, Remittance


def _quiet_pyx12() -> None:
    """pyx12 logs each validation problem (with element values: PHI) on its own loggers: drop them all.

    Set on every call: an application's logging configuration may reset levels after import."""
    log = logging.getLogger("pyx12")
    log.setLevel(logging.CRITICAL + 1)
    log.propagate = False


CARC_PATTERN = re.compile(r"^(?:[A-Z]{1,2}\d{0,2}|\d{1,3})$")
ENVELOPE = re.compile(r"\b(ISA|IEA|GS|GE|ST|SE)\b")
VERSION = "005010X221A1"


class RemittanceError(ValueError):
    """A remittance file that cannot be loaded: the message names the segment."""


def is_x12(data: bytes) -> bool:
    return data.lstrip()[:3] == b"ISA"


def read_835(data: bytes, name: str = "file") -> list[Remittance]:
    """Validate with pyx12, then read every 835 transaction of the file (one Remittance each)."""
    text = _text(data, name)
    _quiet_pyx12()
    _validate(text, name)
    return list(_transactions(text, name))


# ---------------------------------------------------------------------- validation


def _text(data: bytes, name: str) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        text = data.decode("latin-1")
    text = text.lstrip("\ufeff").lstrip()
    if not text.startswith("ISA"):
        raise RemittanceError(f"{name}: segment ISA: not an X12 file (it must start with an ISA segment)")
    if len(text) < 106:
        raise RemittanceError(f"{name}: segment ISA: truncated interchange header")
    return text


def _validate(text: str, name: str) -> None:
    # lazy: optional heavy dependency (pyx12, X12 835 files only)
    import pyx12.error_handler
    import pyx12.errors
    import pyx12.params
    import pyx12.x12n_document

    out = io.StringIO()
    try:
        ok = pyx12.x12n_document.x12n_document(
            pyx12.params.params(), io.StringIO(text), None, None, None, fd_json=out
        )
    except (pyx12.errors.X12Error, pyx12.errors.EngineError) as exc:
        raise RemittanceError(f"{name}: segment {_envelope_of(str(exc), 'ISA')}: {exc}") from None
    found = _first_error(json.loads(out.getvalue() or "{}"))
    if found is not None:
        seg, line, message = found
        where = f" (line {line})" if line else ""
        raise RemittanceError(f"{name}: segment {seg}{where}: {message}")
    if not ok:
        raise RemittanceError(f"{name}: segment ISA: pyx12 could not read the interchange")


def _envelope_of(message: str, default: str) -> str:
    m = ENVELOPE.search(message)
    return m.group(1) if m else default


def _first_error(doc: dict[str, Any]) -> tuple[str, int | None, str] | None:
    """(segment id, line, message) of the first problem in pyx12's JSON error tree."""
    for isa in doc.get("interchanges", []):
        for gs in isa.get("groups", []):
            for st in gs.get("transactions", []):
                for seg in st.get("segments", []):
                    for err in seg.get("errors", []):
                        return seg.get("seg_id") or "?", seg.get("cur_line"), err["err_str"]
                    for ele in seg.get("elements", []):
                        for err in ele.get("errors", []):
                            return seg.get("seg_id") or "?", seg.get("cur_line"), err["err_str"]
                for err in st.get("errors", []):
                    return _envelope_of(err["err_str"], "SE"), st.get("cur_line"), err["err_str"]
            for err in gs.get("errors", []):
                return _envelope_of(err["err_str"], "GE"), gs.get("cur_line"), err["err_str"]
        for err in isa.get("errors", []):
            return _envelope_of(err["err_str"], "IEA"), isa.get("cur_line"), err["err_str"]
    return None


# ---------------------------------------------------------------------- reading


def _segments(text: str) -> Iterator[tuple[int, Any]]:
    # lazy: optional heavy dependency (pyx12, X12 835 files only)
    import pyx12.x12file

    reader = pyx12.x12file.X12Reader(io.StringIO(text))
    for seg in reader:
        yield reader.get_cur_line(), seg


def _money(value: str | None, seg: str, line: int, name: str) -> Decimal:
    try:
        return Decimal(value or "0")
    except InvalidOperation:
        raise RemittanceError(f"{name}: segment {seg} (line {line}): {value!r} is not an amount") from None


def _date(value: str | None) -> date | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y%m%d").date()


class _Tx:
    """The transaction being read."""

    def __init__(self) -> None:
        self.payer = ""
        self.payer_id = ""
        self.trace = ""
        self.paid_date: date | None = None
        self.total = Decimal(0)
        self.plb = Decimal(0)
        self.claims: list[ClaimPayment] = []
        self.claim: dict[str, Any] | None = None
        self.line: dict[str, Any] | None = None
        self.st_line = 0

    def close_line(self, name: str) -> None:
        if self.claim is not None and self.line is not None:
            at = self.line.pop("_line")
            ln = RemitLine(
                **{
                    **self.line,
                    "adjustments": tuple(self.line["adjustments"]),
                    "remarks": tuple(self.line["remarks"]),
                }
            )
            adjusted = sum((a.amount for a in ln.adjustments), Decimal(0))
            if ln.charge - adjusted != ln.paid:
                raise RemittanceError(
                    f"{name}: segment SVC (line {at}): charge {ln.charge} minus adjustments {adjusted} "
                    f"is not the paid amount {ln.paid}"
                )
            self.claim["lines"].append(ln)
        self.line = None

    def close_claim(self, name: str) -> None:
        self.close_line(name)
        if self.claim is not None:
            self.claim["lines"] = tuple(self.claim["lines"])
            self.claim["adjustments"] = tuple(self.claim["adjustments"])
            self.claim["remarks"] = tuple(self.claim["remarks"])
            self.claims.append(ClaimPayment(**self.claim))
        self.claim = None


def _transactions(text: str, name: str) -> Iterator[Remittance]:
    # lazy: optional heavy dependency (pyx12, X12 835 files only)
    from pyx12.codes import ExternalCodes

    rarcs = ExternalCodes()
    tx: _Tx | None = None
    for line, seg in _segments(text):
        sid = seg.get_seg_id()
        v = seg.get_value
        if sid == "ST":
            if v("ST01") != "835":
                raise RemittanceError(
                    f"{name}: segment ST (line {line}): transaction {v('ST01')}, not an 835"
                )
            tx = _Tx()
            tx.st_line = line
        elif tx is None:
            if sid == "GS" and v("GS08") != VERSION:
                raise RemittanceError(f"{name}: segment GS (line {line}): version {v('GS08')}, not {VERSION}")
            continue
        elif sid == "BPR":
            tx.total = _money(v("BPR02"), sid, line, name)
            tx.paid_date = _date(v("BPR16"))
        elif sid == "TRN":
            tx.trace = v("TRN02") or ""
            tx.payer_id = v("TRN03") or ""
        elif sid == "DTM" and tx.claim is None and v("DTM01") == "405":
            tx.paid_date = tx.paid_date or _date(v("DTM02"))
        elif sid == "N1" and v("N101") == "PR":
            tx.payer = v("N102") or ""
            tx.payer_id = tx.payer_id or (v("N104") or "")
        elif sid == "REF" and tx.claim is None and v("REF01") == "2U":
            tx.payer_id = v("REF02") or tx.payer_id
        elif sid == "CLP":
            tx.close_claim(name)
            tx.claim = {
                "claim_id": v("CLP01") or "",
                "status": v("CLP02") or "",
                "charge": _money(v("CLP03"), sid, line, name),
                "paid": _money(v("CLP04"), sid, line, name),
                "payer_claim_number": v("CLP07") or "",
                "lines": [],
                "adjustments": [],
                "remarks": [],
            }
        elif sid == "NM1" and tx.claim is not None and tx.line is None:
            if v("NM101") in ("QC", "IL") and v("NM108") in ("MI", "HN", "II"):
                tx.claim["member_id"] = tx.claim.get("member_id") or (v("NM109") or "")
            elif v("NM101") == "82" and v("NM108") == "XX":
                tx.claim["rendering_npi"] = v("NM109") or ""
        elif sid == "DTM" and tx.claim is not None:
            if tx.line is not None and v("DTM01") in ("472", "150"):
                tx.line["service_date"] = _date(v("DTM02"))
            elif tx.line is None and v("DTM01") == "232":
                tx.claim["period_start"] = _date(v("DTM02"))
        elif sid == "MOA" and tx.claim is not None:
            codes = [v(f"MOA{i:02d}") for i in range(3, 8)]
            tx.claim["remarks"].extend(_remarks(codes, rarcs, sid, line, name))
        elif sid == "SVC" and tx.claim is not None:
            tx.close_line(name)
            qualifier, code = v("SVC01-1"), v("SVC01-2") or ""
            if qualifier not in ("HC", "AD", "ER", "HP", "IV", "N4", "WK", "NU"):
                raise RemittanceError(
                    f"{name}: segment SVC (line {line}): unknown code qualifier {qualifier}"
                )
            mods = tuple(m for m in (v(f"SVC01-{i}") for i in range(3, 7)) if m)
            units = v("SVC05") or "1"
            tx.line = {
                "code": code,
                "modifiers": mods,
                "charge": _money(v("SVC02"), sid, line, name),
                "paid": _money(v("SVC03"), sid, line, name),
                "units": max(1, int(Decimal(units))),
                "adjustments": [],
                "remarks": [],
                "_line": line,
            }
        elif sid == "CAS" and tx.claim is not None:
            adjs = _cas(seg, line, name)
            if tx.line is not None:
                tx.line["adjustments"].extend(adjs)
            else:
                tx.claim["adjustments"].extend(adjs)
        elif sid == "LQ" and tx.line is not None:
            if v("LQ01") == "HE":
                tx.line["remarks"].extend(_remarks([v("LQ02")], rarcs, sid, line, name))
        elif sid == "PLB":
            for i in range(4, 14, 2):
                tx.plb += _money(v(f"PLB{i:02d}"), sid, line, name)
        elif sid == "SE":
            tx.close_claim(name)
            yield _finish(tx, name)
            tx = None


def _cas(seg: Any, line: int, name: str) -> list[Adjustment]:
    group = seg.get_value("CAS01") or ""
    out = []
    for i in range(2, 20, 3):
        reason = seg.get_value(f"CAS{i:02d}")
        if not reason:
            continue
        if not CARC_PATTERN.match(reason):
            raise RemittanceError(
                f"{name}: segment CAS (line {line}): unknown adjustment reason code {reason!r}"
            )
        amount = _money(seg.get_value(f"CAS{i + 1:02d}"), "CAS", line, name)
        out.append(Adjustment(group, reason, amount))
    return out


def _remarks(codes: list[str | None], rarcs: Any, sid: str, line: int, name: str) -> list[str]:
    out = []
    for code in codes:
        if not code:
            continue
        if not rarcs.isValid("remark_code", code):
            raise RemittanceError(f"{name}: segment {sid} (line {line}): unknown remark code (RARC) {code!r}")
        out.append(code)
    return out


def _finish(tx: _Tx, name: str) -> Remittance:
    """Payment balance check, then the transaction as a Remittance."""
    paid = sum((c.paid for c in tx.claims), Decimal(0)) - tx.plb
    if paid != tx.total:
        raise RemittanceError(
            f"{name}: segment BPR: total payment {tx.total} is not the claims' paid amounts less provider "
            f"adjustments ({paid})"
        )
    return Remittance(
        source="x12-835",
        payer=tx.payer,
        payer_id=tx.payer_id,
        trace=tx.trace,
        paid_date=tx.paid_date,
        total_paid=tx.total,
        claims=tuple(tx.claims),
    )
