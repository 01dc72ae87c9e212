"""Time to the `/panel` page over a simulated distant EHR, against its floor and two other clients.

Starts sekmet-fhir on loopback and seeds N realistic CCM patients (benchmarks/realistic.py: 12 months of
history, ~160 resources each, vitals, labs, medications, notes), puts benchmarks/latency_proxy.py in front
(TCP_NODELAY, one write per response, a fixed delay per request), opens an open-mode session per patient
in the Flask app and then, per patient, alternating, times:

  panel      GET /panel as a browser would (a new request: session, FhirClient, batch, verdict, HTML);
  floor      one round trip of the panel's single batch (FhirClient.batch of the planned searches, with
             nothing else: no paging, no reading, no evaluation, no page);
  fallback   GET /panel against a server that refuses batches (the app's own concurrent-GET fallback);
  fhirclient a fhirclient-style client: one sequential search per resource type with the server's
             default page size (no _count) and the same date filters as the panel, every page followed,
             then the same reader and evaluator.

Requests are counted at the proxy. Targets: the panel makes 1 FHIR request; panel <= 1.5 x floor;
fhirclient-style >= 3 x the panel. The LAST line is
`requests_per_panel=N ratio_to_floor=X.XX speedup_vs_fhirclient=Y.YY speedup_vs_fallback=Z.ZZ`.

Run: .venv/bin/python benchmarks/panel.py [--patients 8] [--latency-ms 50]
"""

from __future__ import annotations

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.latency_proxy import LatencyProxy  # noqa: E402
from benchmarks.realistic import patient_history  # noqa: E402
from rules.month import Month  # noqa: E402
from smart_app.fhir.client import FhirClient, FhirError  # noqa: E402
from smart_app.readiness.fetch import ATTESTATION_CODES, VISIT_CODES, plan_queries  # noqa: E402
from smart_app.readiness.options import EvaluationOptions  # noqa: E402
from smart_app.readiness.use_case import ResourceSource, verdict_for  # noqa: E402


class NoBatchClient(FhirClient):
    """A FhirClient for a server that refuses batch Bundles (as some EHR gateways do)."""

    def batch(self, requests_: Any, *, follow_pages: bool = True) -> Any:
        raise FhirError(405, "HTTP 405 from FHIR server: method not allowed")


def seed(base: str, patients: int, month: Month) -> list[str]:
    client = FhirClient(base, timeout=120)
    people = [
        {"resourceType": "Practitioner", "id": f"{k}-{n}", "name": [{"family": f"{k}{n}"}]}
        for k, count in (("dr", 50), ("rn", 120))
        for n in range(count)
    ]
    rng = random.Random(20261123)
    ids = []
    for i in range(patients):
        pid = f"panel-{i}"
        resources = patient_history(pid, rng, month)
        if i == 0:
            resources += people
        client.transaction(
            {
                "resourceType": "Bundle",
                "type": "transaction",
                "entry": [
                    {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
                    for r in resources
                ],
            }
        )
        ids.append(pid)
    return ids


def fhirclient_style(client: FhirClient, pid: str, month: Month, tz: str) -> tuple[str, Any]:
    """Sequential searches, server default paging, date filters as the panel's; the same reader and rules."""
    lo = (month.first_day - timedelta(days=1)).isoformat()
    hi = (month.next().first_day + timedelta(days=1)).isoformat()
    resources = [client.read("Patient", pid)]
    for rtype, params in (
        ("Condition", {}),
        ("CarePlan", {}),
        ("Consent", {}),
        ("Encounter", {"date": [f"ge{lo}", f"lt{hi}"]}),
        ("Encounter", {"type": ",".join(VISIT_CODES), "date": f"lt{hi}"}),
        ("Task", {"period": [f"ge{lo}", f"lt{hi}"]}),
        ("Task", {"code": ",".join(ATTESTATION_CODES)}),
        ("Communication", {"status": "completed"}),
        ("ChargeItem", {"occurrence": [f"ge{month.previous().first_day}", f"lt{month.shift(2).first_day}"]}),
        ("Claim", {}),
        ("ExplanationOfBenefit", {}),
    ):
        resources += client.search(rtype, {"patient": pid, **params})
    options = EvaluationOptions(month, tz)
    return "", verdict_for(ResourceSource(resources), pid, options).verdict


def _timed(fn: Any) -> tuple[float, Any]:
    t0 = time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, result


def _too_long(signum: int, frame: object) -> None:
    raise TimeoutError("the benchmark ran longer than --max-seconds; stopping")


def main(argv: list[str] | None = None) -> int:
    from smart_app.app import create_app
    from tests.support.sekmet import start_sekmet

    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--patients", type=int, default=8)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--tz", default="America/Chicago")
    parser.add_argument("--max-seconds", type=int, default=900, help="abort if the run takes longer")
    args = parser.parse_args(argv)
    if not 1 <= args.patients <= 200:
        parser.error("--patients must be between 1 and 200")
    month = Month.parse(args.month)
    signal.signal(signal.SIGALRM, _too_long)
    signal.alarm(args.max_seconds)

    server = start_sekmet()
    rows: list[dict[str, Any]] = []
    try:
        t0 = time.perf_counter()
        ids = seed(server.base, args.patients, month)
        print(f"seeded {len(ids)} realistic patients in {time.perf_counter() - t0:.1f} s")
        origin = server.base.rsplit("/fhir", 1)[0]
        with LatencyProxy(origin, args.latency_ms / 1000) as proxy, tempfile.TemporaryDirectory() as tmp:
            base = f"{proxy.origin}/fhir"
            config = {
                "TESTING": True,
                "DATA_DIR": tmp,
                "OUTBOX_WORKER": False,
                "TIMEZONE": args.tz,
                "OPEN_SERVERS": [base],
                "FHIR_TIMEOUT": 30.0,
            }
            app = create_app(config)
            fallback_app = create_app(
                {
                    **config,
                    "DATA_DIR": tmp + "/fb",
                    "FHIR_CLIENT_FACTORY": lambda ctx: NoBatchClient(ctx.fhir_base, timeout=30),
                }
            )
            style = FhirClient(base, timeout=30)
            floor_client = FhirClient(base, timeout=30)

            def page(web: Any, pid: str) -> float:
                assert web.get("/open", query_string={"iss": base, "patient": pid}).status_code == 302
                seconds, resp = _timed(lambda: web.get(f"/panel?month={month}"))
                assert resp.status_code == 200, resp.status_code
                return seconds

            for pid in [ids[0], *ids]:  # the first patient twice: warm-up (imports, caches, connections)
                web, fb_web = app.test_client(), fallback_app.test_client()
                urls = [q.url for q in plan_queries(pid, month, args.tz)]
                before = proxy.requests
                t_panel = page(web, pid)
                panel_requests = proxy.requests - before - 1  # minus the /open Patient read
                t_floor, _ = _timed(lambda urls=urls: floor_client.batch(urls, follow_pages=False))
                t_fallback = page(fb_web, pid)
                before = proxy.requests
                t_style, (_, v_style) = _timed(lambda pid=pid: fhirclient_style(style, pid, month, args.tz))
                style_requests = proxy.requests - before
                v_panel = web.get(f"/panel.json?month={month}").get_json()
                same = (v_panel["status"], v_panel["minutes"]["clinical_staff"]) == (
                    v_style.status,
                    v_style.minutes.clinical_staff,
                )
                rows.append(
                    {
                        "panel": t_panel,
                        "requests": panel_requests,
                        "floor": t_floor,
                        "fallback": t_fallback,
                        "style": t_style,
                        "style_requests": style_requests,
                        "same": same,
                        "status": v_style.status,
                    }
                )
            rows = rows[1:]
    finally:
        server.cleanup()
        signal.alarm(0)

    print(f"\nlatency {args.latency_ms:.0f} ms per request; realistic patients (12 months of history)")
    print(
        f"{'patient':>7} {'panel ms':>9} {'reqs':>5} {'floor ms':>9} {'fallback':>9} {'fhirclient':>11} "
        f"{'reqs':>5}  same  status"
    )
    for i, r in enumerate(rows, 1):
        print(
            f"{i:>7} {r['panel'] * 1000:>9.0f} {r['requests']:>5} {r['floor'] * 1000:>9.0f} "
            f"{r['fallback'] * 1000:>9.0f} {r['style'] * 1000:>11.0f} {r['style_requests']:>5}  "
            f"{'yes' if r['same'] else 'NO':>4}  {r['status']}"
        )
    med = {k: statistics.median(r[k] for r in rows) for k in ("panel", "floor", "fallback", "style")}
    print("median ms: " + ", ".join(f"{k} {v * 1000:.0f}" for k, v in med.items()))
    print(
        "baselines: floor = one round trip of the single batch; fallback = /panel when batches are refused; "
        "fhirclient = sequential typed searches, default paging, date filters"
    )
    print("targets: requests_per_panel = 1, ratio_to_floor <= 1.5, speedup_vs_fhirclient >= 3")
    if not all(r["same"] for r in rows):
        print("WARNING: the panel and the fhirclient-style client disagree on some verdicts")
    print(
        f"requests_per_panel={max(r['requests'] for r in rows)} "
        f"ratio_to_floor={med['panel'] / med['floor']:.2f} "
        f"speedup_vs_fhirclient={med['style'] / med['panel']:.2f} "
        f"speedup_vs_fallback={med['fallback'] / med['panel']:.2f}"
    )
    return 0 if all(r["same"] for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
