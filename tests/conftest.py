"""Shared fixtures. Integration fixtures start real servers; unit tests need none."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.postgres import PostgresCluster, PostgresMissing, start_postgres
from tests.support.sekmet import SekmetServer, start_sekmet

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The project's shared/ data folder (beside the checkout)."""
    path = SHARED / "data"
    if not path.is_dir():
        pytest.skip("shared/data is not beside the checkout")
    return path


@pytest.fixture(scope="session")
def sekmet() -> Iterator[SekmetServer]:
    """One real sekmet-fhir server for the whole test session (empty at start)."""
    server = start_sekmet()
    try:
        yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def postgres() -> Iterator[PostgresCluster]:
    """One throwaway PostgreSQL cluster for the whole test session (tests/support/postgres.py)."""
    try:
        cluster = start_postgres()
    except PostgresMissing as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(exc))
    try:
        yield cluster
    finally:
        cluster.cleanup()
