"""Benchmark: the practice worklist from the moment the bulk export completes, against its floor.

    .venv/bin/python benchmarks/worklist.py [--sizes 2000,10000] [--all-types]

For each size N, a bulk export is prepared as a server leaves it: one NDJSON file per resource type
(benchmarks/realistic.py patients: 12 months of history, visits, notes, time entries, ~150 kB each). By
default it holds the types the app asks for (`_type` = bulk_export.CCM_TYPES, as a server honouring
`_type` answers); `--all-types` adds everything a realistic chart carries (a server ignoring `_type`).
A loopback bulk-data server (a thread of this process) serves it: the kick-off answers 202 and the
export is complete at that moment, so everything measured is the client's own time. Each measurement
runs in a fresh process:

  floor       from export completion: GET every file (streamed, 1 MB reads) and parse every line with
              orjson, dropping it (one process): the least any client must do with the export;
  parse-only  the same files parsed from disk (no HTTP), printed for reference;
  worklist    `build_worklist` as `ccm-ready worklist` runs it: kick-off, status poll, download of every
              file, then program.population.map_population (partition, read_facts, evaluate, one row per
              patient) with buckets spread over the CPUs in forked workers.

Memory is the peak, sampled every 20 ms, of the PSS summed over the measured process AND its worker
processes (PSS splits the pages forked workers share with their parent, so nothing is counted twice).
Targets: worklist <= 1.3 x floor at every size; peak memory at the largest size <= 1.5 x the smallest.
CPU seconds are printed too (the worklist's summed over its workers): the wall ratio uses WORKERS
processes against a one-process floor, so it can be at best cpu_ratio / WORKERS.
The LAST line is `ratio_to_floor=X ratio_to_parse_only=Y cpu_ratio=C memory_ratio=Z` (worst size's ratios).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from datetime import date
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.processes import process_tree  # noqa: E402
from benchmarks.realistic import patient_history  # noqa: E402
from rules.month import Month  # noqa: E402
from smart_app.fhir.bulk_export import CCM_TYPES  # noqa: E402

MONTH = "2026-10"
ARCHETYPES = 64
PLACEHOLDER = "zzpidzz"
WORKERS = max(1, min(4, os.cpu_count() or 1))  # as `ccm-ready worklist` does


def write_export(
    folder: Path, patients: int, seed: int, types: frozenset[str] | None = frozenset(CCM_TYPES)
) -> list[Path]:
    """Per-type NDJSON files of `patients` realistic patients (like a $export download); only `types`."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    month = Month.parse(MONTH)
    templates: list[dict[str, bytes]] = []
    for a in range(min(ARCHETYPES, patients)):
        by_type: dict[str, list[bytes]] = {}
        for r in patient_history(f"{PLACEHOLDER}{a}x", rng, month):
            if types is not None and r["resourceType"] not in types:
                continue
            by_type.setdefault(r["resourceType"], []).append(orjson.dumps(r))
        templates.append({t: b"\n".join(lines) + b"\n" for t, lines in by_type.items()})
    types = sorted({t for tpl in templates for t in tpl})
    handles = {t: (folder / f"{i:03d}-{t}.ndjson").open("wb") for i, t in enumerate(types)}
    try:
        for i in range(patients):
            a = i % len(templates)
            old, new = f"{PLACEHOLDER}{a}x".encode(), f"w{i}".encode()
            for t, block in templates[a].items():
                handles[t].write(block.replace(old, new))
    finally:
        for h in handles.values():
            h.close()
    return [folder / f"{i:03d}-{t}.ndjson" for i, t in enumerate(types)]


# ---------------------------------------------------------------------- measured in child processes


def _parse_only(files: list[Path]) -> dict[str, object]:
    loads = orjson.loads
    cpu, started = _cpu_seconds(), time.perf_counter()
    n = 0
    for path in files:
        with path.open("rb") as fh:
            for line in fh:
                if line.strip():
                    loads(line)
                    n += 1
    return {"seconds": time.perf_counter() - started, "resources": n, "cpu": _cpu_seconds() - cpu}


def _floor(base: str) -> dict[str, object]:
    """From export completion: the manifest, then every file streamed over HTTP and parsed line by line."""
    import requests  # lazy: only the floor child needs an HTTP client

    loads = orjson.loads
    cpu, started = _cpu_seconds(), time.perf_counter()
    n = 0
    with requests.Session() as http:
        manifest = http.get(f"{base}/status/1", timeout=60).json()
        for item in manifest["output"]:
            with http.get(item["url"], stream=True, timeout=60) as resp:
                tail = b""
                for chunk in resp.iter_content(1 << 20):
                    lines = (tail + chunk).split(b"\n")
                    tail = lines.pop()
                    for line in lines:
                        if line:
                            loads(line)
                            n += 1
                if tail.strip():
                    loads(tail)
                    n += 1
    return {"seconds": time.perf_counter() - started, "resources": n, "cpu": _cpu_seconds() - cpu}


def _worklist(base: str) -> dict[str, object]:
    from smart_app.program.jobs import build_worklist  # lazy: the measured child imports the app itself

    cpu, started = _cpu_seconds(), time.perf_counter()
    result = build_worklist(base, MONTH, workers=WORKERS, keep_verdict=False, today=date(2026, 11, 3))
    return {
        "seconds": time.perf_counter() - started,
        "patients": result.patients,
        "rows": len(result.rows),
        "download": result.export_seconds,
        "cpu": _cpu_seconds() - cpu,
    }


def _cpu_seconds() -> float:
    """CPU (user + system) of this process and of its waited-for children (the forked workers)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


def _child(kind: str, folder: str, base: str) -> int:
    if kind == "parse":
        result = _parse_only(sorted(Path(folder).glob("*.ndjson")))
    elif kind == "floor":
        result = _floor(base)
    else:
        result = _worklist(base)
    print(json.dumps(result))
    return 0


class BulkServer:
    """A loopback FHIR bulk-data server for one prepared export (complete as soon as it is kicked off)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        handler = self._handler()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._server.daemon_threads = True
        self.base = f"http://127.0.0.1:{self._server.server_address[1]}/fhir"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> BulkServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def manifest(self) -> bytes:
        output = []
        for path in sorted(self.folder.glob("*.ndjson")):
            rtype = path.stem.split("-", 1)[1]
            count = 0
            with path.open("rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    count += chunk.count(b"\n")
            output.append({"type": rtype, "url": f"{self.base}/files/{path.name}", "count": count})
        return orjson.dumps(
            {"transactionTime": "2026-11-03T00:00:00Z", "request": f"{self.base}/Patient/$export",
             "requiresAccessToken": False, "output": output, "error": []}
        )

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        bulk = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def _send(
                self, status: int, body: bytes, ctype: str, extra: dict[str, str] | None = None
            ) -> None:
                head = [f"HTTP/1.1 {status} {self.responses.get(status, ('',))[0]}",
                        f"Content-Type: {ctype}", f"Content-Length: {len(body)}"]
                head += [f"{k}: {v}" for k, v in (extra or {}).items()]
                self.wfile.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path.endswith("/$export"):
                    self._send(202, b"", "application/fhir+json",
                               {"Content-Location": f"{bulk.base}/status/1"})
                elif path.endswith("/status/1"):
                    self._send(200, bulk.manifest(), "application/json")
                elif "/files/" in path:
                    target = bulk.folder / path.rsplit("/", 1)[1]
                    if not target.is_file():
                        self._send(404, b"", "text/plain")
                        return
                    size = target.stat().st_size
                    head = ("HTTP/1.1 200 OK\r\nContent-Type: application/fhir+ndjson\r\n"
                            f"Content-Length: {size}\r\n\r\n")
                    self.wfile.write(head.encode())
                    self.wfile.flush()
                    with target.open("rb") as fh:
                        self.connection.sendfile(fh)
                else:
                    self._send(404, b"", "text/plain")

            def do_DELETE(self) -> None:
                self._send(202, b"", "text/plain")

            def log_message(self, format: str, *args: object) -> None:
                return

        return Handler


def _pss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                if line.startswith("Pss:"):
                    return int(line.split()[1])
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
    except OSError:
        return 0


def tree_pss_mb(root: int) -> float:
    """PSS of `root` and all its descendants, in MB."""
    return sum(_pss_kb(pid) for pid in process_tree(root)) / 1024


def measure(kind: str, folder: Path, base: str) -> dict[str, object]:
    """Run one measurement in a fresh interpreter, sampling the memory of its whole process tree."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", kind, str(folder), base],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    peak = 0.0
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, tree_pss_mb(proc.pid))
            done.wait(0.02)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, _ = proc.communicate()
    done.set()
    sampler.join()
    if proc.returncode != 0:
        raise RuntimeError(f"the {kind} measurement failed")
    result = json.loads(out.strip().splitlines()[-1])
    result["peak_mb"] = peak
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2000,10000", help="comma-separated patient counts")
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--runs", type=int, default=2, help="timings are the best of RUNS")
    parser.add_argument("--all-types", action="store_true", help="export every type (server ignores _type)")
    parser.add_argument("--child", nargs=3, metavar=("KIND", "FOLDER", "BASE"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return _child(*args.child)
    sizes = sorted({int(s) for s in args.sizes.split(",") if s.strip()})
    if not sizes or sizes[0] < 1:
        parser.error("--sizes needs positive patient counts")
    print(f"machine: {os.cpu_count()} CPUs, load average {'/'.join(f'{x:.2f}' for x in os.getloadavg())}")
    ratios, parse_ratios, cpu_ratios, peaks = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="ccm-bench-worklist-") as tmp:
        for size in sizes:
            folder = Path(tmp) / f"export-{size}"
            files = write_export(folder, size, args.seed, None if args.all_types else frozenset(CCM_TYPES))
            mb = sum(f.stat().st_size for f in files) / 1e6
            kinds = "every type" if args.all_types else "the types the app asks for"
            print(
                f"export: {size} patients, {len(files)} NDJSON files ({kinds}), {mb:.0f} MB; "
                f"{WORKERS} workers"
            )
            runs: dict[str, list[dict[str, object]]] = {"floor": [], "parse": [], "worklist": []}
            with BulkServer(folder) as server:
                for _ in range(max(1, args.runs)):  # alternating, best of each
                    for kind in runs:
                        runs[kind].append(measure(kind, folder, server.base))
            best = {k: min(v, key=lambda r: float(r["seconds"])) for k, v in runs.items()}  # type: ignore[arg-type]
            floor, parse, work = best["floor"], best["parse"], best["worklist"]
            ratio = float(work["seconds"]) / float(floor["seconds"])  # type: ignore[arg-type]
            parse_ratio = float(work["seconds"]) / float(parse["seconds"])  # type: ignore[arg-type]
            peak = max(float(r["peak_mb"]) for r in runs["worklist"])  # type: ignore[arg-type]
            cpu_ratio = float(work["cpu"]) / max(float(floor["cpu"]), 1e-9)  # type: ignore[arg-type]
            ratios.append(ratio)
            parse_ratios.append(parse_ratio)
            cpu_ratios.append(cpu_ratio)
            peaks.append(peak)
            print(
                f"  floor (download + orjson parse, from export completion): {floor['seconds']:.2f} s, "
                f"peak {floor['peak_mb']:.0f} MB\n"
                f"  parse-only from disk: {parse['seconds']:.2f} s\n"
                f"  worklist (build_worklist: poll, download, partition, evaluate, rows): "
                f"{work['seconds']:.2f} s (download {float(work['download']):.2f} s) "  # type: ignore[arg-type]
                f"for {work['patients']} patients ({work['rows']} rows), peak {peak:.0f} MB over all its "
                f"processes; ratio {ratio:.2f} (to parse-only {parse_ratio:.2f})\n"
                f"  CPU: worklist {float(work['cpu']):.2f} s over all its processes, "  # type: ignore[arg-type]
                f"floor {float(floor['cpu']):.2f} s; cpu_ratio {cpu_ratio:.2f} (the wall ratio with "
                f"{WORKERS} workers against a one-process floor is at best cpu_ratio / {WORKERS})"
            )
            shutil.rmtree(folder, ignore_errors=True)
    print(
        "targets: ratio_to_floor <= 1.3 at every size; memory_ratio <= 1.5 "
        f"({sizes[0]} -> {sizes[-1]} patients); load average now "
        f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"ratio_to_floor={max(ratios):.2f} ratio_to_parse_only={max(parse_ratios):.2f} "
        f"cpu_ratio={max(cpu_ratios):.2f} memory_ratio={peaks[-1] / peaks[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
