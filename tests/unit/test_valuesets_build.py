"""scripts/build_valuesets.py: deterministic rebuild of rules/valuesets and its derivation rules."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parents[2]
VALUESETS = ROOT / "rules" / "valuesets"


def _load_build() -> ModuleType:
    spec = importlib.util.spec_from_file_location("build_valuesets", ROOT / "scripts" / "build_valuesets.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


build = _load_build()


@pytest.fixture(scope="module")
def fresh(shared_data: Path) -> tuple[dict[str, bytes], list[str]]:
    """One full rebuild from ../shared/data (a few seconds)."""
    return build.build(shared_data, VALUESETS)


def test_build_reproduces_committed_files_byte_for_byte(fresh: tuple[dict[str, bytes], list[str]]) -> None:
    files, report = fresh
    assert set(files) == set(build.GENERATED)
    for name, data in files.items():
        committed = (VALUESETS / name).read_bytes()
        assert committed == data, f"{name} differs from a fresh build: run scripts/build_valuesets.py"
    assert build.differing(files, VALUESETS) == []
    print("\n" + "\n".join(report))


def test_write_then_compare(fresh: tuple[dict[str, bytes], list[str]], tmp_path: Path) -> None:
    files, _ = fresh
    assert sorted(build.differing(files, tmp_path)) == sorted(files)
    build.write(files, tmp_path)
    assert build.differing(files, tmp_path) == []
    (tmp_path / build.OUT_ECQM).write_bytes(b"changed\n")
    assert build.differing(files, tmp_path) == [build.OUT_ECQM]


def test_missing_input_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert build.main(["--shared", str(tmp_path), "--check", "--quiet"]) == 2
    assert "missing input" in capsys.readouterr().err


def test_gzip_output_is_deterministic() -> None:
    data = b"code\tindicator\nE119\t1\n"
    assert build.gz(data) == build.gz(data)
    assert build.gz(data)[4:8] == b"\0\0\0\0"  # mtime 0


# ---------------------------------------------------------------------------- derivation rules

CCIR = {"E119": "1", "E1165": "1", "B880": "0", "S021A": "0", "S021B": "1", "K900": "9"}
CCW = {"I1A0": {"hypertension"}, "S021C": {"hip_fracture"}, "S021D": {"stroke"}}


def _derive(code: str) -> tuple[str, str, str, int]:
    d = build.derive(code, CCIR, build.prefix_counts(CCIR), CCW)
    return d.indicator, d.basis, d.via, d.count


def test_derive_parent_listed_in_ccir() -> None:
    assert _derive("B8801") == ("0", "parent", "B880", 0)


def test_derive_unanimous_codes_under_the_category() -> None:
    assert _derive("E11A") == ("1", "children", "E11", 2)
    assert _derive("E11") == ("1", "children", "E11", 2)  # a header code: its own children


def test_derive_mixed_falls_back_to_ccw_then_no_determination() -> None:
    assert _derive("S021D") == ("1", "ccw", "stroke", 0)
    assert _derive("S021C") == ("9", "mixed", "S021", 2)  # hip fracture is no evidence
    assert _derive("S021E") == ("9", "mixed", "S021", 2)


def test_derive_nothing_nearby() -> None:
    assert _derive("I1A0") == ("1", "ccw", "hypertension", 0)
    assert _derive("Q999") == ("9", "none", "", 0)


def test_prefix_counts() -> None:
    counts = build.prefix_counts(CCIR)
    assert counts["E11"] == Counter({"1": 2})
    assert counts["S021"] == Counter({"0": 1, "1": 1})


def test_leaf_codes() -> None:
    assert build.leaf_codes({"E11", "E119", "E116", "E1165", "I10"}) == {"E119", "E1165", "I10"}
