"""Start and stop a local sekmet-fhir FHIR R4 server on 127.0.0.1 (the demo and the integration tests).

The server runs from its own virtualenv (`<project>/.venv-sekmet/bin/sekmet`, or the path in
`CCM_READY_SEKMET`) with the simulator off, strict inbound validation and no traffic log.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from smart_app.config import PROJECT_ROOT

DEFAULT_SEKMET_BIN = PROJECT_ROOT / ".venv-sekmet" / "bin" / "sekmet"


class SekmetMissing(RuntimeError):
    """The sekmet-fhir executable is not installed where we look for it."""


def sekmet_binary() -> Path:
    """Where the sekmet executable is expected (CCM_READY_SEKMET wins over the project's .venv-sekmet)."""
    return Path(os.environ.get("CCM_READY_SEKMET") or DEFAULT_SEKMET_BIN)


# Kept for callers that read the path as a constant (resolved at import time).
SEKMET_BIN = sekmet_binary()


def stop_process(process: subprocess.Popen[Any], grace: float = 10.0) -> None:
    """Stop a child process we started: SIGTERM, then SIGKILL after `grace` seconds."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def port_in_use(port: int) -> bool:
    """True when something already listens on 127.0.0.1:`port`."""
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@dataclass
class SekmetServer:
    """A running sekmet-fhir process; `base` is its FHIR base URL."""

    process: subprocess.Popen[bytes]
    base: str
    workdir: Path
    config: Path
    port: int
    remove_workdir: bool = True  # cleanup() deletes workdir only when we created it

    @property
    def pid(self) -> int:
        return self.process.pid

    def running(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL after 10 s)."""
        stop_process(self.process)

    def restart(self, timeout: float = 30) -> None:
        """Start again on the same port and data (after stop())."""
        self.stop()
        self.process = _spawn(self.config, self.workdir)
        wait_ready(self.base, self.process, timeout)

    def cleanup(self) -> None:
        """Stop the server and delete its working directory if we created it."""
        self.stop()
        if self.remove_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)


def write_config(workdir: Path, port: int, data_dir: Path) -> Path:
    """Write sekmet's settings file: loopback only, simulator off, strict validation, no traffic log."""
    base = f"http://127.0.0.1:{port}/fhir"
    config = workdir / "sekmet.yaml"
    # JSON strings are valid YAML scalars: paths with spaces or colons stay intact.
    config.write_text(
        f"base_url: {json.dumps(base)}\nhost: 127.0.0.1\nport: {port}\n"
        f"data_dir: {json.dumps(str(data_dir))}\n"
        "log_inbound: false\nsimulator:\n  enabled: false\nvalidation:\n  inbound: strict\n",
        encoding="utf-8",
    )
    # A missing settings file is silently ignored by sekmet (which then binds 0.0.0.0): check it.
    if not config.is_file():
        raise RuntimeError(f"could not write {config}")
    return config


def _spawn(config: Path, workdir: Path) -> subprocess.Popen[bytes]:
    binary = sekmet_binary()
    log = (workdir / "sekmet.log").open("ab")
    # SEKMET_* variables would override our settings file (port, database, base URL).
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
    try:
        return subprocess.Popen(
            [str(binary), "serve", "-c", str(config)],
            cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )
    finally:
        log.close()


def wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    """Wait until `base`/metadata answers 200; raise RuntimeError if the process dies or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sekmet-fhir exited with code {process.returncode} (see its sekmet.log)")
        try:
            if requests.get(f"{base}/metadata", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"sekmet-fhir did not answer on {base} within {timeout:g}s")


def start_sekmet(
    port: int | None = None,
    workdir: Path | None = None,
    timeout: float = 60,
    data_dir: Path | None = None,
) -> SekmetServer:
    """Start sekmet-fhir on 127.0.0.1 and wait until its /metadata answers.

    `workdir` holds the settings file and the log (a fresh temporary folder when omitted, deleted by
    `cleanup()`); `data_dir` holds the database (default `workdir/data`; keep it to keep the data).
    """
    binary = sekmet_binary()
    if not binary.exists():
        raise SekmetMissing(
            f"sekmet-fhir is not installed ({binary} is missing): run scripts/demo.sh or "
            "scripts/bootstrap.sh, or set CCM_READY_SEKMET to the sekmet executable"
        )
    if port is not None and port_in_use(port):
        raise RuntimeError(f"port {port} on 127.0.0.1 is already in use: choose another FHIR port")
    port = port or free_port()
    created = workdir is None
    workdir = Path(workdir) if workdir is not None else Path(tempfile.mkdtemp(prefix="ccm-sekmet-"))
    workdir.mkdir(parents=True, exist_ok=True)
    data_dir = Path(data_dir) if data_dir is not None else workdir / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    config = write_config(workdir, port, data_dir)
    process = _spawn(config, workdir)
    server = SekmetServer(process, f"http://127.0.0.1:{port}/fhir", workdir, config, port, created)
    try:
        wait_ready(server.base, process, timeout)
    except BaseException:
        server.cleanup() if created else server.stop()
        raise
    return server
