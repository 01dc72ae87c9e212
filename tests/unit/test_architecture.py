"""The architecture, checked: import contracts (import-linter, declared in pyproject.toml).

`smart_app -> fhir_mapping -> rules` one way; `rules/` imports no Flask, HTTP, FHIR-library or database
module; faces do not import each other; the shared kernel imports no face. The second test plants
violations in a copy of the tree and shows that the same contracts fail on them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LINT = Path(sys.executable).with_name("lint-imports")


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root, env=env, capture_output=True, text=True, timeout=300, check=False,
    )


def test_import_contracts_are_kept() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


def test_a_violation_breaks_the_contracts(tmp_path: Path) -> None:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in ("rules", "fhir_mapping", "smart_app"):
        shutil.copytree(ROOT / package, tmp_path / package, ignore=ignore)
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "rules" / "planted.py").write_text("import flask  # noqa\n")
    panel = tmp_path / "smart_app" / "panel"
    (panel / "planted.py").write_text("from smart_app.program import worklist  # noqa\n")
    (tmp_path / "fhir_mapping" / "planted.py").write_text("import smart_app.config  # noqa\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    out = done.stdout
    assert "rules is not allowed to import flask" in out
    assert "smart_app.panel is not allowed to import smart_app.program" in out
    assert "fhir_mapping.planted -> smart_app.config" in out
