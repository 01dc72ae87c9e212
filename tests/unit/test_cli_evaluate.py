"""`ccm-ready evaluate`: JSON and text output, and one-line errors (exit 2) for bad input."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.realistic import patient_history
from rules.month import Month
from smart_app.cli.commands import ENDS_AT_ONCE, build_parser, main, terminal_width

ROOT = Path(__file__).resolve().parents[2]
SCENARIO = ROOT / "tests" / "data" / "scenarios" / "ready-99490.json"


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    try:
        code = main(["evaluate", *argv])
    except SystemExit as exc:  # argparse errors
        code = int(exc.code or 0)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_json_output_is_the_verdict_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, str(SCENARIO), "--month", "2026-10")
    assert code == 0 and err == ""
    verdict = json.loads(out)
    assert verdict["patient"] == "Patient/p1"
    assert verdict["status"] == "ready"
    assert verdict["codes"] == [{"code": "99490", "units": 1}]
    assert verdict["billing_practitioner"] == "Practitioner/dr-a"
    assert verdict["policy"] == "cms-pfs-2026"
    assert {"findings", "skipped", "chronic_conditions", "payment", "next_threshold"} <= set(verdict)
    assert out.startswith("{\n  ")  # indent 2


def test_text_output_summarises_the_verdict(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "tests" / "data" / "scenarios" / "malformed-resources.json"
    code, out, _ = run_cli(capsys, str(path), "--month", "2026-10", "--format", "text")
    assert code == 0
    assert "Status: READY" in out
    assert "99490 x1" in out and "$66.13" in out
    assert "clinical staff (incl. the practitioner's own time): 25" in out
    assert "Next threshold: 99439 needs 15 more minutes" in out
    assert "E11.9" in out and "[CCIR]" in out
    assert "Skipped resources (5):" in out and "Condition/bad-no-code: Condition has no code" in out


def test_text_output_groups_findings_with_citations(capsys: pytest.CaptureFixture[str]) -> None:
    path = ROOT / "tests" / "data" / "scenarios" / "consent-missing.json"
    code, out, _ = run_cli(capsys, str(path), "--month", "2026-10", "--format", "text")
    assert code == 0
    assert "Status: BLOCKED" in out
    assert "  consent:\n    BLOCKER consent.missing:" in out
    assert "source: CMS MLN909188" in out


def test_policy_and_practitioner_options(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys,
        str(SCENARIO),
        "--month",
        "2025-10",
        "--policy",
        "cms-pfs-2025",
        "--billing-practitioner",
        "Practitioner/dr-b",
        "--timezone",
        "America/Chicago",
    )
    verdict = json.loads(out)
    assert code == 0
    assert verdict["policy"] == "cms-pfs-2025" and verdict["billing_practitioner"] == "Practitioner/dr-b"


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["missing.json", "--month", "2026-10"], "no such file"),
        ([str(SCENARIO)], "--month YYYY-MM is required"),
        ([str(SCENARIO), "--month", "2026-13"], "month must be YYYY-MM"),
        ([str(SCENARIO), "--month", "October"], "month must be YYYY-MM"),
        ([str(SCENARIO), "--month", "2026-10", "--policy", "cms-pfs-1999"], "cms-pfs-1999"),
        ([str(SCENARIO), "--month", "2026-10", "--timezone", "Mars/Olympus"], "unknown time zone"),
        ([str(SCENARIO), "--month", "2026-10", "--billing-practitioner", "dr-a"], "Practitioner/ID"),
        ([str(SCENARIO), "--month", "2026-10", "--billing-practitioner", "Patient/p1"], "Practitioner/ID"),
        ([str(SCENARIO), "--month", "2026-10", "--patient", "Patient/nope"], "Patient/nope is not in"),
        ([str(SCENARIO), "--month", "2026-10", "--patient", "Patient/a b"], "--patient must look like"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    message: str,
) -> None:
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("ccm-ready: error: ")
    assert message in err


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{oops", "is not valid JSON"),
        ('{"resourceType": "Patient"}\n{broken\n', "line 2 is not valid JSON"),
        ('{"hello": 1}', "not FHIR"),
    ],
)
def test_bad_files_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "in.json"
    path.write_text(content)
    code, _, err = run_cli(capsys, str(path), "--month", "2026-10")
    assert code == 2 and err.count("\n") == 1 and message in err


def test_several_patients_need_a_choice(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    lines = [
        {"resourceType": "Patient", "id": "a"},
        {"resourceType": "Patient", "id": "b"},
        {
            "resourceType": "Condition",
            "id": "c",
            "subject": {"reference": "Patient/b"},
            "code": {"text": "x"},
        },
    ]
    path = tmp_path / "population.ndjson"
    path.write_text("\n".join(json.dumps(r) for r in lines) + "\n")
    code, _, err = run_cli(capsys, str(path), "--month", "2026-10")
    assert code == 2 and "holds 2 patients (Patient/a, Patient/b)" in err and "--patient" in err
    code, out, _ = run_cli(capsys, str(path), "--month", "2026-10", "--patient", "Patient/b")
    assert code == 0 and json.loads(out)["patient"] == "Patient/b"


def test_help_explains_the_json_contract(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    assert "JSON contract" in out and '"status": "ready"' in out and "exit status" in out


def test_subprocess_entry_point(tmp_path: Path) -> None:
    ok = subprocess.run(
        [
            sys.executable,
            "-m",
            "smart_app.cli",
            "evaluate",
            str(SCENARIO),
            "--month",
            "2026-10",
            "--format",
            "json",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["status"] == "ready"
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "smart_app.cli",
            "evaluate",
            str(tmp_path / "nope.json"),
            "--month",
            "2026-10",
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [f"ccm-ready: error: no such file: {tmp_path / 'nope.json'}"]


def test_the_cli_imports_only_what_the_subcommand_runs(tmp_path: Path) -> None:
    """Building the parser imports no subcommand; `evaluate` loads no web, HTTP, JOSE or process pool
    (nor shutil, which argparse's formatters import for the terminal width)."""
    code = (
        "import sys\n"
        "from smart_app.cli.commands import build_parser, main\n"
        "build_parser(only=[])\n"
        "assert not any(m.startswith(('smart_app.program', 'smart_app.demo', 'smart_app.packet',"
        " 'smart_app.capture', 'smart_app.web')) for m in sys.modules), sorted(sys.modules)\n"
        f"main(['evaluate', {str(SCENARIO)!r}, '--month', '2026-10'])\n"
        "heavy = {'requests', 'flask', 'joserfc', 'cryptography', 'multiprocessing', 'werkzeug', 'shutil'}\n"
        "heavy &= set(sys.modules)\n"
        "assert not heavy, heavy\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout)["status"] == "ready"


def test_help_lists_every_subcommand_without_importing_them(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name in ("evaluate", "demo", "serve", "worklist", "packet", "import-time"))


def test_help_is_wrapped_to_the_terminal_width(monkeypatch: pytest.MonkeyPatch) -> None:
    """The formatters read the width as shutil.get_terminal_size would ($COLUMNS first, 80 at worst)."""
    monkeypatch.setenv("COLUMNS", "50")
    assert terminal_width() == 50
    help_text = build_parser(only=["evaluate"]).format_help()
    assert max(len(line) for line in help_text.splitlines()) <= 50
    monkeypatch.setenv("COLUMNS", "not a number")
    assert terminal_width() >= 1


def test_all_patients_streams_one_verdict_per_patient(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`--all-patients` on a per-patient export: the same verdict each patient gets with `--patient`."""
    rng = random.Random(3)
    ids = ["a1", "b2", "c3"]
    resources = [r for pid in ids for r in patient_history(pid, rng, Month.parse("2026-10"))]
    path = tmp_path / "export.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in resources))
    code, out, err = run_cli(capsys, str(path), "--month", "2026-10", "--all-patients")
    assert code == 0 and err == ""
    verdicts = [json.loads(line) for line in out.splitlines()]
    assert [v["patient"] for v in verdicts] == [f"Patient/{pid}" for pid in ids]
    for v in verdicts:
        code, one, _ = run_cli(capsys, str(path), "--month", "2026-10", "--patient", v["patient"])
        assert code == 0 and json.loads(one) == v
    code, text, _ = run_cli(capsys, str(path), "--month", "2026-10", "--all-patients", "--format", "text")
    assert code == 0 and text.count("CCM Ready: Patient/") == 3


def test_all_patients_refuses_a_file_not_grouped_by_patient(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    lines = [
        {"resourceType": "Patient", "id": "a"},
        {"resourceType": "Patient", "id": "b"},
        {"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/a"}},
    ]
    path = tmp_path / "by-type.ndjson"
    path.write_text("".join(json.dumps(r) + "\n" for r in lines))
    code, _, err = run_cli(capsys, str(path), "--month", "2026-10", "--all-patients")
    assert code == 2 and "not grouped by patient" in err and err.count("\n") == 1
    code, _, err = run_cli(capsys, str(path), "--month", "2026-10", "--all-patients", "--patient", "a")
    assert code == 2 and "exclude each other" in err


def _all_patients(path: Path) -> list[str]:
    return [sys.executable, "-m", "smart_app.cli", "evaluate", str(path), "--month", "2026-10",
            "--all-patients"]


def _export(tmp_path: Path, patients: int) -> Path:
    rng = random.Random(5)
    month = Month.parse("2026-10")
    path = tmp_path / "export.ndjson"
    path.write_text(
        "".join(json.dumps(r) + "\n" for i in range(patients) for r in patient_history(f"p{i}", rng, month))
    )
    return path


def test_the_command_ends_with_all_its_output_written(tmp_path: Path) -> None:
    """`ccm-ready evaluate` exits without the interpreter's shutdown (commands.run): its output is flushed
    first, every line of it."""
    path = _export(tmp_path, 40)
    done = subprocess.run(_all_patients(path), capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0 and done.stderr == ""
    assert [json.loads(line)["patient"] for line in done.stdout.splitlines()] == [
        f"Patient/p{i}" for i in range(40)
    ]


def test_a_reader_that_goes_away_ends_the_command_quietly(tmp_path: Path) -> None:
    """`ccm-ready evaluate ... | head -c 100`: exit 141, as Unix tools do, and no traceback."""
    path = _export(tmp_path, 40)
    proc = subprocess.Popen(_all_patients(path), stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
    assert proc.stdout is not None and proc.stderr is not None
    assert proc.stdout.read(100)
    proc.stdout.close()
    assert proc.wait(timeout=120) == 141
    assert b"Traceback" not in proc.stderr.read()
    proc.stderr.close()


def test_evaluate_leaves_no_work_for_the_interpreter_shutdown(capsys: pytest.CaptureFixture[str]) -> None:
    """What lets `run` end `evaluate` at once: it registers no exit handler and leaves no thread running."""
    import atexit  # lazy: only this test counts exit handlers
    import threading  # lazy: only this test counts threads

    before, threads = atexit._ncallbacks(), threading.active_count()
    code, out, _ = run_cli(capsys, str(SCENARIO), "--month", "2026-10")
    assert code == 0 and json.loads(out)["status"] == "ready"
    assert atexit._ncallbacks() == before and threading.active_count() == threads
    assert "evaluate" in ENDS_AT_ONCE


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("patients", [1, 40])
def test_output_that_cannot_be_written_is_one_line_not_a_traceback(tmp_path: Path, patients: int) -> None:
    """A full disk, whether the last flush or a write on the way hits it: exit 1 and one line on stderr."""
    path = _export(tmp_path, patients)
    with open("/dev/full", "w") as full:
        done = subprocess.run(_all_patients(path), stdout=full, stderr=subprocess.PIPE, text=True, cwd=ROOT,
                              timeout=120)
    assert done.returncode == 1
    assert done.stderr.splitlines() == ["ccm-ready: error: No space left on device"]
