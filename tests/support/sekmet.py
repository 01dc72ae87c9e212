"""Start and stop a real sekmet-fhir server on loopback for integration tests and the demo."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parents[2]
SEKMET_BIN = Path(os.environ.get("CCM_READY_SEKMET", ROOT / ".venv-sekmet" / "bin" / "sekmet"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class SekmetServer:
    """A running sekmet-fhir process; `base` is its FHIR base URL."""

    process: subprocess.Popen[bytes]
    base: str
    workdir: Path
    config: Path
    port: int

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def restart(self, timeout: float = 30) -> None:
        """Start again on the same port and data (after stop())."""
        self.stop()
        self.process = _spawn(self.config, self.workdir)
        _wait_ready(self.base, self.process, timeout)

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)


def _spawn(config: Path, workdir: Path) -> subprocess.Popen[bytes]:
    log = (workdir / "sekmet.log").open("ab")
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKMET_")}
    return subprocess.Popen(
        [str(SEKMET_BIN), "serve", "-c", str(config)],
        cwd=workdir, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )


def _wait_ready(base: str, process: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"sekmet-fhir exited with {process.returncode}")
        try:
            if requests.get(f"{base}/metadata", timeout=1).status_code == 200:
                return
        except requests.RequestException:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"sekmet-fhir did not answer on {base} within {timeout}s")


def start_sekmet(port: int | None = None, workdir: Path | None = None, timeout: float = 60) -> SekmetServer:
    """Start sekmet-fhir on 127.0.0.1 with the simulator off and strict inbound validation."""
    if not SEKMET_BIN.exists():
        raise RuntimeError(f"{SEKMET_BIN} is missing: run scripts/bootstrap.sh")
    port = port or free_port()
    workdir = workdir or Path(tempfile.mkdtemp(prefix="ccm-sekmet-"))
    workdir.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{port}/fhir"
    config = workdir / "sekmet.yaml"
    config.write_text(
        f"base_url: {base}\nhost: 127.0.0.1\nport: {port}\ndata_dir: {workdir / 'data'}\n"
        "log_inbound: false\nsimulator:\n  enabled: false\nvalidation:\n  inbound: strict\n",
        encoding="utf-8",
    )
    # A missing settings file is silently ignored by sekmet (and then binds 0.0.0.0): check it.
    assert config.is_file()
    process = _spawn(config, workdir)
    _wait_ready(base, process, timeout)
    return SekmetServer(process, base, workdir, config, port)
