"""The architecture, checked: import contracts (import-linter, declared in pyproject.toml).

`smart_app -> fhir_mapping -> rules` one way; `rules/` imports no Flask, HTTP, FHIR-library or database
module; faces do not import each other; the shared kernel imports no face. The second test plants
violations in a copy of the tree and shows that the same contracts fail on them. Last, imports sit at
the top of modules: a function-level import says why (`# lazy: <reason>`).
"""

from __future__ import annotations

import ast
import os
import re
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


# Imports sit at the top of a module. A function-level import is allowed only with its reason written
# on its line or on the line just above its group of imports: CLI start-up (measured with
# `python -X importtime`), an import cycle (name the module), or an optional heavy dependency.
LAZY_REASONS = ("CLI start-up", "cycle with ", "optional heavy dependency")
PACKAGES = ("smart_app", "fhir_mapping", "rules")


def _module_level(node: ast.AST) -> bool:
    """`if TYPE_CHECKING:` and `try: import x except ImportError:` blocks at module level are the top."""
    if isinstance(node, ast.If):
        return "TYPE_CHECKING" in ast.unparse(node.test)
    return isinstance(node, ast.Try)


def _function_level_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                if not top:
                    found.append(child)
            else:
                walk(child, top and _module_level(child))

    walk(tree, True)
    return found


def _has_reason(line: str) -> bool:
    _, marker, reason = line.partition("# lazy: ")
    return bool(marker) and reason.startswith(LAZY_REASONS)


def unexplained_lazy_imports(root: Path) -> list[str]:
    """`path:line: import` for each function-level import without a `# lazy: <reason>` comment."""
    problems = []
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            lines = path.read_text(encoding="utf-8").splitlines()
            imports = _function_level_imports(ast.parse("\n".join(lines), str(path)))
            ends = {node.end_lineno for node in imports}
            for node in imports:
                first = node.lineno
                while first - 1 in ends:  # one comment above a group of consecutive imports covers it
                    first = min(n.lineno for n in imports if n.end_lineno == first - 1)
                if _has_reason(lines[node.lineno - 1]) or (first > 1 and _has_reason(lines[first - 2])):
                    continue
                rel = path.relative_to(root)
                problems.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return problems


def _lazy_message(problems: list[str]) -> str:
    return (
        "function-level imports without a reason; move them to the top of the module, or write"
        " `# lazy: CLI start-up` / `# lazy: cycle with <module>` / `# lazy: optional heavy dependency`"
        " on the line above:\n  " + "\n  ".join(problems)
    )


def test_function_level_imports_say_why() -> None:
    problems = unexplained_lazy_imports(ROOT)
    assert not problems, _lazy_message(problems)


def test_an_unexplained_function_level_import_is_reported(tmp_path: Path) -> None:
    package = tmp_path / "rules"
    package.mkdir()
    (package / "planted.py").write_text(
        "def f() -> None:\n"
        "    import json\n"
        "    # lazy: cycle with rules.evaluate\n"
        "    from rules import evaluate\n"
        "    from rules import month\n"
        "    # a comment that gives no reason\n"
        "    import csv\n"
        "    import zlib  # lazy: optional heavy dependency\n"
    )
    problems = unexplained_lazy_imports(tmp_path)
    assert problems == ["rules/planted.py:2: import json", "rules/planted.py:7: import csv"]
    assert "rules/planted.py:2: import json" in _lazy_message(problems)


# ------------------------------------------------------------------ module size (issue 10: about 400 lines)

SIZE_LIMIT = 420  # "about 400": past it, the module's docstring says why


def oversized_without_reason(root: Path) -> list[str]:
    """Modules of smart_app/, fhir_mapping/ and rules/ over the limit whose docstring gives no reason."""
    out = []
    for package in ("smart_app", "fhir_mapping", "rules"):
        for path in sorted((root / package).rglob("*.py")):
            text = path.read_text("utf-8")
            if text.count("\n") <= SIZE_LIMIT:
                continue
            doc = ast.get_docstring(ast.parse(text)) or ""
            if not re.search(r"Why (over|about) 400 lines", doc):
                out.append(f"{path.relative_to(root)}: {text.count(chr(10))} lines")
    return out


def test_long_modules_say_why() -> None:
    problems = oversized_without_reason(ROOT)
    assert not problems, "modules over about 400 lines without 'Why over 400 lines: ...' at the top:\n  " + (
        "\n  ".join(problems))


def test_a_long_module_without_a_reason_is_reported(tmp_path: Path) -> None:
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "long.py").write_text('"""A module."""\n' + "x = 1\n" * 500)
    said = '"""A module.\n\nWhy over 400 lines: data."""\n'
    (tmp_path / "rules" / "said.py").write_text(said + "x = 1\n" * 500)
    assert oversized_without_reason(tmp_path) == ["rules/long.py: 501 lines"]
