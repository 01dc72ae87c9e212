"""Storage tests run against both back ends: a SQLite file and a fresh PostgreSQL database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from smart_app.storage import open_database
from tests.support.postgres import PostgresCluster

Target = Callable[[], str]


@pytest.fixture(params=["sqlite", "postgresql"])
def target(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Target]:
    """A function returning the same database target each call (a SQLite path or a postgresql:// URL), as
    separate processes or instances would open it."""
    if request.param == "sqlite":
        path = str(tmp_path / "state.sqlite3")
        yield lambda: path
        return
    cluster: PostgresCluster = request.getfixturevalue("postgres")
    url = cluster.new_database()
    yield lambda: url
    open_database(url).close()  # this process's pool for the test's database
