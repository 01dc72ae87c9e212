"""`ccm-ready what-if`: what bringing the denial rate down is worth, per month and per year."""

from __future__ import annotations

import argparse
import sys

DESCRIPTION = """\
Revenue what-if: enrolled patients × average monthly payment, at the current and at a target denial
rate. monthly_gain = patients × payment × (denial rate − target rate) / 100; yearly_gain = 12 × that.
The Health Prime scenario: 90 patients at $45, denials 18 % → 5 %."""

EPILOG = """\
exit status: 0 printed; 2 bad arguments.

example:
  ccm-ready what-if --patients 90 --payment 45 --denial-rate 18 --target-rate 5
  (ends with: monthly_gain=526.50 yearly_gain=6318.00)"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patients", required=True, help="enrolled patients billed each month")
    p.add_argument("--payment", required=True, help="average payment per patient-month, dollars")
    p.add_argument("--denial-rate", required=True, help="current denial rate, percent")
    p.add_argument("--target-rate", required=True, help="target denial rate, percent")


def run(args: argparse.Namespace) -> int:
    # lazy: CLI start-up
    from rules.revenue import BadFigure, what_if

    try:
        w = what_if(args.patients, args.payment, args.denial_rate, args.target_rate)
    except BadFigure as exc:
        sys.stderr.write(f"ccm-ready what-if: {exc}\n")
        return 2
    out = sys.stdout
    out.write(
        f"patients={w.patients} payment={w.payment:.2f} denial_rate={w.denial_rate}% "
        f"target_rate={w.target_rate}%\n"
    )
    out.write(
        f"monthly_billed={w.monthly_billed:.2f} monthly_lost_now={w.monthly_lost_now:.2f} "
        f"monthly_lost_target={w.monthly_lost_target:.2f}\n"
    )
    out.write(f"monthly_gain={w.monthly_gain:.2f} yearly_gain={w.yearly_gain:.2f}\n")
    return 0
