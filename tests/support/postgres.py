"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl on a loopback port, removed afterwards.

Debian's `postgresql` package (installed by scripts/bootstrap.sh) puts the server binaries in
/usr/lib/postgresql/<major>/bin. PostgreSQL refuses to run as root: when the tests run as root, the
cluster's folder is owned by the `postgres` system user (nobody as a fallback) and initdb/pg_ctl run
through `runuser -u <user>`. Each test database is created fresh (`PostgresCluster.new_database`).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path

from tests.support.sekmet import free_port


class PostgresMissing(RuntimeError):
    """No PostgreSQL server binaries (run scripts/bootstrap.sh test)."""


def pg_bindir() -> Path:
    """The newest /usr/lib/postgresql/<major>/bin with initdb (or CCM_READY_PG_BINDIR)."""
    explicit = os.environ.get("CCM_READY_PG_BINDIR")
    if explicit:
        return Path(explicit)
    candidates = sorted(
        (p for p in Path("/usr/lib/postgresql").glob("*/bin") if (p / "initdb").exists()),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
    )
    if candidates:
        return candidates[-1]
    found = shutil.which("initdb")
    if found:
        return Path(found).resolve().parent
    raise PostgresMissing("PostgreSQL server binaries not found: run scripts/bootstrap.sh test")


def _run_as() -> str | None:
    """The unprivileged user to run the server as when we are root (None: run as ourselves)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    raise PostgresMissing("running as root and no 'postgres' or 'nobody' user to run PostgreSQL as")


@dataclass
class PostgresCluster:
    root: Path
    port: int
    user: str
    run_as: str | None
    bindir: Path

    @property
    def admin_url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def url(self, database: str) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{database}"

    def new_database(self, prefix: str = "t") -> str:
        """A new empty database; returns its URL."""
        import psycopg

        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def _cmd(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.run_as, "--", *args] if self.run_as else list(args)

    def pg_ctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            self._cmd(str(self.bindir / "pg_ctl"), "-D", str(self.root / "data"), *args),
            capture_output=True,
            check=check,
            timeout=60,
        )

    def stop(self) -> None:
        self.pg_ctl("-m", "immediate", "stop", check=False)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)


def start_postgres(max_connections: int = 200) -> PostgresCluster:
    """initdb a cluster in a temporary folder and start it on a free loopback port (no TCP outside)."""
    bindir = pg_bindir()
    run_as = _run_as()
    root = Path(tempfile.mkdtemp(prefix="ccm-pg-"))
    if run_as:
        info = pwd.getpwnam(run_as)
        os.chown(root, info.pw_uid, info.pw_gid)
    os.chmod(root, 0o700)
    cluster = PostgresCluster(root, free_port(), "ccm", run_as, bindir)
    try:
        subprocess.run(
            cluster._cmd(
                str(bindir / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "ccm",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--no-sync",
                "--locale=C",
            ),
            capture_output=True,
            check=True,
            timeout=120,
        )
        options = (
            f"-p {cluster.port} -h 127.0.0.1 -k {root} -F -c max_connections={max_connections}"
            " -c shared_buffers=32MB -c synchronous_commit=off -c full_page_writes=off"
        )
        cluster.pg_ctl("-o", options, "-l", str(root / "server.log"), "-w", "-t", "60", "start")
    except subprocess.CalledProcessError as exc:
        log = (
            (root / "server.log").read_text(errors="replace")[-2000:]
            if (root / "server.log").exists()
            else ""
        )
        shutil.rmtree(root, ignore_errors=True)
        raise PostgresMissing(
            f"could not start PostgreSQL: {exc.stderr.decode(errors='replace')[-2000:]}{log}"
        ) from exc
    return cluster
