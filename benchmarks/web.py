"""The readiness panel under load: the development server vs gunicorn, in the same run.

Starts sekmet-fhir on loopback, seeds N realistic CCM patients (12 months of history, as
benchmarks/panel.py does), puts the 50 ms latency proxy in front of it (a distant EHR), then for each
server (`ccm-ready serve --dev`, and `ccm-ready serve` = gunicorn with --workers/--threads) opens one
open-mode session per patient and has 1, 5 and 20 concurrent clients load `/panel` for --seconds each.
Prints throughput and p50/p95/p99 latency for every (server, clients) pair, the CPU each page cost the
app, the FHIR server and the load generator (they share this machine's cores), and the machine's load;
with the EHR answering live (sekmet) and replayed (its recorded answers, its CPU off this machine);
the last line (EHR replayed: a real EHR's CPU is not on the app's machine; the live figures are printed
on the line before, with the ceiling sekmet's own CPU puts on them) is machine-readable:

    p95_ms_at_20=N speedup_vs_dev_server=X

where N is gunicorn's p95 at 20 clients and X is gunicorn's throughput at 20 clients divided by the
development server's (both measured in this run, on this machine). Target: p95 at 20 clients < 500 ms.

Run: .venv/bin/python benchmarks/web.py [--patients 20] [--seconds 8] [--workers 2] [--threads 8]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.latency_proxy import LatencyProxy  # noqa: E402
from benchmarks.panel import seed  # noqa: E402
from benchmarks.processes import process_tree  # noqa: E402
from rules.month import Month  # noqa: E402
from tests.support.instances import AppInstance, proxied_base, start_instance  # noqa: E402
from tests.support.sekmet import free_port, start_sekmet  # noqa: E402

CLIENTS = (1, 5, 20)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    k = max(0, min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def open_sessions(origin: str, base: str, patients: list[str], count: int) -> list[requests.Session]:
    out = []
    for i in range(count):
        http = requests.Session()
        resp = http.get(
            f"{origin}/open",
            params={"iss": base, "patient": patients[i % len(patients)]},
            allow_redirects=False,
            timeout=60,
        )
        if resp.status_code != 302:
            raise SystemExit(f"could not open a session: {resp.status_code} {resp.text[:200]}")
        out.append(http)
    return out


def load(
    origin: str, sessions: list[requests.Session], clients: int, seconds: float, month: str
) -> tuple[float, list[float], int]:
    """`clients` threads loading /panel until `seconds` pass; returns (requests/s, latencies ms, errors)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    stop_at = time.perf_counter() + seconds

    def client(http: requests.Session) -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            try:
                ok = http.get(f"{origin}/panel", params={"month": month}, timeout=60).status_code == 200
            except requests.RequestException:
                ok = False
            ms = (time.perf_counter() - t0) * 1000
            with lock:
                if ok:
                    latencies.append(ms)
                else:
                    errors[0] += 1

    started = time.perf_counter()
    threads = [threading.Thread(target=client, args=(sessions[i],)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - started
    return len(latencies) / elapsed, latencies, errors[0]


def _cpu(pids: list[int]) -> float:
    """CPU seconds (user + system) used so far by `pids`."""
    total = 0.0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, ValueError, IndexError):
            continue
    return total


def measured_load(
    origin: str, sessions: list[requests.Session], clients: int, seconds: float, month: str,
    parts: dict[str, list[int]],
) -> tuple[float, list[float], int, dict[str, float], float]:
    """`load`, plus each part's CPU ms per page (app, FHIR server, this process) and the load average."""
    before = {name: _cpu(pids) for name, pids in parts.items()}
    rate, latencies, errors = load(origin, sessions, clients, seconds, month)
    pages = max(1, len(latencies) + errors)
    cpu = {name: (_cpu(pids) - before[name]) * 1000 / pages for name, pids in parts.items()}
    return rate, latencies, errors, cpu, os.getloadavg()[0]


def _too_long(signum: int, frame: object) -> None:
    raise SystemExit("benchmark took too long (see --max-seconds)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--patients", type=int, default=20)
    parser.add_argument("--latency-ms", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=8.0, help="load duration per (server, clients)")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=8, help="gunicorn threads per worker")
    parser.add_argument("--month", default="2026-10")
    parser.add_argument("--max-seconds", type=int, default=900, help="abort if the run takes longer")
    args = parser.parse_args(argv)
    if not 1 <= args.patients <= 200 or args.seconds <= 0:
        parser.error("--patients must be between 1 and 200; --seconds positive")
    signal.signal(signal.SIGALRM, _too_long)
    signal.alarm(args.max_seconds)
    month = Month.parse(args.month)
    server = start_sekmet()
    results: dict[tuple[str, str, int], tuple[float, list[float], int, dict[str, float], float]] = {}
    try:
        t0 = time.perf_counter()
        ids = seed(server.base, args.patients, month)
        print(f"seeded {len(ids)} patients in {time.perf_counter() - t0:.1f} s")
        origin = server.base.rsplit("/fhir", 1)[0]
        for ehr in ("sekmet", "replayed"):
            with LatencyProxy(
                origin, args.latency_ms / 1000, replay=ehr == "replayed"
            ) as proxy, tempfile.TemporaryDirectory() as tmp:
                base = proxied_base(proxy, server.base)
                env = {
                    "CCM_READY_OPEN_SERVERS": base,
                    "CCM_READY_SECRET_KEY": uuid.uuid4().hex,
                    "CCM_READY_TIMEZONE": "America/Chicago",
                    "CCM_READY_LOG_LEVEL": "WARNING",
                }
                for kind in ("dev", "gunicorn"):
                    instance: AppInstance = start_instance(
                        free_port(),
                        Path(tmp) / kind,
                        env,
                        server=kind,
                        workers=args.workers,
                        threads=args.threads,
                    )
                    try:
                        sessions = open_sessions(instance.origin, base, ids, max(CLIENTS))
                        load(instance.origin, sessions, max(CLIENTS), 1.0, str(month))  # warm up
                        parts = {
                            "app": process_tree(instance.process.pid),
                            "fhir": process_tree(server.process.pid),
                            "bench": [os.getpid()],  # the clients and the latency proxy
                        }
                        for clients in CLIENTS:
                            results[(ehr, kind, clients)] = measured_load(
                                instance.origin, sessions, clients, args.seconds, str(month), parts
                            )
                    finally:
                        instance.terminate()
    finally:
        server.cleanup()
        signal.alarm(0)

    print(
        f"\n/panel, FHIR server behind a {args.latency_ms:.0f} ms proxy; {args.patients} patients; "
        f"gunicorn {args.workers} workers x {args.threads} threads; {args.seconds:.0f} s per row\n"
        "EHR sekmet: sekmet-fhir answers every request (one process, on this machine's cores);\n"
        "EHR replayed: after warm-up the proxy replays sekmet's recorded answers (same bytes, same 50 ms),\n"
        "so the stand-in EHR's CPU is off this machine as a real EHR's would be: the app's own capacity"
    )
    print(
        f"{'EHR':>9} {'server':>9} {'clients':>8} {'req/s':>8} {'p50 ms':>8} {'p95 ms':>8} {'p99 ms':>8}"
        f" {'errors':>7}  CPU ms per page: {'app':>5} {'FHIR':>5} {'bench':>5}  load"
    )
    for (ehr, kind, clients), (rate, lat, errors, cpu, loadavg) in results.items():
        print(
            f"{ehr:>9} {kind:>9} {clients:>8} {rate:>8.1f}"
            f" {statistics.median(lat) if lat else float('nan'):>8.0f}"
            f" {percentile(lat, 95):>8.0f} {percentile(lat, 99):>8.0f} {errors:>7}"
            f"                   {cpu['app']:>5.1f} {cpu['fhir']:>5.1f} {cpu['bench']:>5.1f}  {loadavg:.2f}"
        )
    print(
        f"machine: {os.cpu_count()} CPUs shared by the app, the FHIR server (sekmet-fhir, the stand-in "
        "EHR) and the load generator; load = the 1-minute load average after each row (other work included)"
    )
    fhir_ms = results[("sekmet", "gunicorn", 20)][3]["fhir"]
    if fhir_ms > 0:
        print(
            f"EHR live: sekmet-fhir spends {fhir_ms:.0f} ms of CPU per page in one process, so this machine "
            f"serves at most ~{1000 / fhir_ms:.0f} pages/s whatever the app does, and 20 clients in a closed "
            f"loop wait at least ~{20 * fhir_ms:.0f} ms a page (Little's law). A real EHR is another "
            "machine: the replayed rows measure the app under the target's conditions."
        )
    # The last line: the EHR replayed (its CPU off this machine, as in production); the live line before it.
    for ehr in ("sekmet", "replayed"):
        dev_rate = results[(ehr, "dev", 20)][0]
        gun_rate, gun_lat = results[(ehr, "gunicorn", 20)][:2]
        speedup = gun_rate / dev_rate if dev_rate else float("inf")
        line = f"p95_ms_at_20={percentile(gun_lat, 95):.0f} speedup_vs_dev_server={speedup:.2f}"
        print(line if ehr == "replayed" else f"with the EHR live on this machine: {line}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
