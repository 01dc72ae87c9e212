"""The server benchmarks run end to end on tiny inputs (they print timings; nothing here asserts one)."""

from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.integration


def last_line(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_panel_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import panel

    assert panel.main(["--patients", "1", "--latency-ms", "1"]) == 0
    assert re.fullmatch(
        r"requests_per_panel=1 ratio_to_floor=\S+ speedup_vs_fhirclient=\S+ speedup_vs_fallback=\S+",
        last_line(capsys),
    )


def test_import_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import import_time

    assert import_time.main(["--rows", "20", "--baseline-rows", "2", "--latency-ms", "1"]) == 0
    out = capsys.readouterr().out
    assert "[imported=20 duplicates=0 errors=0]" in out and "[imported=0 duplicates=20 errors=0]" in out
    # 20 rows: one batch of look-ups + one transaction; the rerun only looks up
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"requests_per_row=0\.1000 rerun_requests_per_row=0\.0500 ratio_to_baseline=.+", last)


def test_cds_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import cds

    assert cds.main(["--requests", "6", "--clients", "2", "--latency-ms", "1", "--patients", "1"]) == 0
    assert re.fullmatch(r"p95_ms=\d+ ratio_to_unbounded=\S+ fetch_p95_ms=\d+", last_line(capsys))


def test_worklist_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import worklist

    assert worklist.main(["--sizes", "3,6", "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "for 6 patients" in out
    last = out.strip().splitlines()[-1]
    assert re.fullmatch(r"ratio_to_floor=\S+ ratio_to_parse_only=\S+ cpu_ratio=\S+ memory_ratio=\S+", last)


def test_web_benchmark_runs(capsys: pytest.CaptureFixture[str]) -> None:
    from benchmarks import web

    assert web.main(["--patients", "1", "--seconds", "0.3", "--latency-ms", "1", "--threads", "2"]) == 0
    out = capsys.readouterr().out
    assert "CPU ms per page" in out
    assert re.fullmatch(r"p95_ms_at_20=\d+ speedup_vs_dev_server=\S+", out.strip().splitlines()[-1])
