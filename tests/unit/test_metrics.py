"""Program metrics against hand-computed values, and the SVG charts' accessibility."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from smart_app.program import charts
from smart_app.program.metrics import FORMULAS, minutes_bin, month_metrics, percent, ratio, trend
from smart_app.program.worklist import Blocker, WorklistRow


def row(
    pid: str,
    status: str,
    *,
    minutes: int = 0,
    consented: bool = True,
    eligible: bool = True,
    payment: str = "0",
    billed: tuple[tuple[str, int], ...] = (),
    billed_payment: str = "0",
    entries: int = 0,
    warned: int = 0,
    ccm: bool = True,
    **kw: Any,
) -> WorklistRow:
    return WorklistRow(
        patient=f"Patient/{pid}",
        name=pid,
        month="2026-10",
        status=status,
        codes=(),
        clinical_staff_minutes=minutes,
        practitioner_minutes=0,
        next_code=None,
        minutes_to_next=None,
        days_left=5,
        blockers=(Blocker("consent", "consent.missing", "x"),) if status == "blocked" else (),
        payment=Decimal(payment),
        eligible=eligible,
        consented=consented and eligible,
        enrollment_opportunity=eligible and not consented,
        billed_codes=billed,
        billed_payment=Decimal(billed_payment),
        ccm_entries=entries,
        entries_with_warnings=warned,
        has_ccm_data=ccm,
        **kw,
    )


ROWS = [
    row("a", "ready", minutes=25, payment="66.13", entries=2, warned=1),
    row(
        "b",
        "ready",
        minutes=65,
        payment="167.01",
        entries=3,
        billed=(("99490", 1), ("99439", 2)),
        billed_payment="167.01",
    ),
    row("c", "not-yet", minutes=14, entries=1),
    row("d", "blocked", minutes=30, consented=False, entries=1),
    row("e", "not-eligible", minutes=0, eligible=False, entries=0),
    row("f", "not-eligible", eligible=False, ccm=False),  # not on the worklist at all
    row("g", "not-yet", minutes=0),
]


def test_month_metrics_by_hand() -> None:
    m = month_metrics("2026-10", ROWS)
    assert m.patients == 6  # f is neither eligible nor has CCM data
    assert (m.eligible, m.consented, m.billed, m.ready) == (5, 4, 1, 2)
    assert m.consent_rate == Decimal("0.8000")  # 4 / 5
    # consented: a 25, b 65, c 14, g 0
    assert dict(m.minutes_histogram) == {"0": 1, "1-19": 1, "20-39": 1, "40-59": 0, "60+": 1}
    assert (m.entries, m.entries_with_warnings) == (7, 1)
    assert m.warning_share == Decimal("0.1429")  # 1 / 7
    assert m.expected_revenue == Decimal("233.14")  # 66.13 + 167.01
    assert m.billed_revenue == Decimal("167.01")
    assert m.funnel == (("Eligible", 5), ("Consented", 4), ("Billed", 1))


def test_edge_formulas() -> None:
    assert ratio(1, 0) is None and percent(None) == "n/a" and percent(Decimal("0.8500")) == "85.0%"
    assert [minutes_bin(x) for x in (0, 1, 19, 20, 59, 60, 500)] == [
        "0",
        "1-19",
        "1-19",
        "20-39",
        "40-59",
        "60+",
        "60+",
    ]
    empty = month_metrics("2026-11", [])
    assert empty.consent_rate is None and empty.warning_share is None and empty.expected_revenue == 0
    months = trend([("2026-11", []), ("2026-10", ROWS)])
    assert [t.month for t in months] == ["2026-10", "2026-11"]
    assert set(FORMULAS) >= {
        "eligible",
        "consented",
        "billed",
        "consent_rate",
        "minutes",
        "warning_share",
        "expected_revenue",
        "billed_revenue",
        "trend",
    }


def test_charts_are_accessible_svg() -> None:
    svg = str(
        charts.bar_chart("c1", "Funnel <x>", "desc & more", [("Eligible", 5), ("Billed", Decimal("1.5"))])
    )
    assert svg.startswith("<svg") and 'role="img"' in svg and 'aria-labelledby="c1-t c1-d"' in svg
    assert '<title id="c1-t">Funnel &lt;x&gt;</title>' in svg and "desc &amp; more" in svg
    assert ">Eligible</text>" in svg and ">5</text>" in svg and ">1.50</text>" in svg
    line = str(charts.line_chart("c2", "Trend", "d", ["2026-09", "2026-10"], [("Eligible", [3, 5])]))
    assert line.count("<circle") == 2 and ">2026-10</text>" in line and ">Eligible</text>" in line
    assert "http" not in line.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched
