"""The export-shape corpus generator (tests/data/make_corpus.py), loaded as a module for the tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

GENERATOR = Path(__file__).resolve().parents[1] / "data" / "make_corpus.py"


def load_corpus() -> ModuleType:
    """A fresh copy of the generator module (its stories, shapes and renderers)."""
    spec = importlib.util.spec_from_file_location("make_corpus", GENERATOR)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
