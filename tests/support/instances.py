"""App instances as a practice runs them: `ccm-ready serve` (gunicorn) in its own process group."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import requests

from benchmarks.latency_proxy import LatencyProxy

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class AppInstance:
    process: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """SIGKILL the whole instance (master and workers), as when its machine dies."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def terminate(self, timeout: float = 30) -> int:
        """SIGTERM (a clean stop) and wait."""
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            return self.process.wait(timeout=timeout)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            self.kill()
            return -9

    def owns(self, pid: int) -> bool:
        """Whether `pid` is one of this instance's processes."""
        try:
            return os.getpgid(pid) == self.process.pid
        except ProcessLookupError:
            return False


def start_instance(
    port: int,
    data_dir: Path,
    env: dict[str, str],
    *,
    server: str = "gunicorn",
    workers: int = 2,
    threads: int = 4,
    timeout: float = 60,
) -> AppInstance:
    """Start `ccm-ready serve` on 127.0.0.1:`port` and wait until /readyz answers 200."""
    data_dir.mkdir(parents=True, exist_ok=True)
    log = data_dir / f"serve-{port}.log"
    args = [sys.executable, "-m", "smart_app.cli.commands", "serve", "--port", str(port)]
    args += ["--dev"] if server == "dev" else ["--workers", str(workers), "--threads", str(threads)]
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "CCM_READY_DATA_DIR": str(data_dir), **env}
    with log.open("wb") as out:
        process = subprocess.Popen(
            args, cwd=ROOT, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    instance = AppInstance(process, port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the app exited: {log.read_text(errors='replace')[-3000:]}")
        try:
            if requests.get(f"{instance.origin}/readyz", timeout=2).status_code == 200:
                return instance
        except requests.RequestException:
            pass
        time.sleep(0.2)
    instance.kill()
    raise RuntimeError(f"the app did not become ready: {log.read_text(errors='replace')[-3000:]}")


class SwitchableProxy(LatencyProxy):
    """The latency proxy with an off switch: while `down`, every request answers 502."""

    down = False

    def _forward(
        self, method: str, path: str, headers: dict[str, str], body: bytes | None
    ) -> tuple[int, list[tuple[str, str]], bytes]:
        if self.down:
            raise OSError("switched off")
        return super()._forward(method, path, headers, body)


def proxied_base(proxy: LatencyProxy, base: str) -> str:
    """`base` as seen through `proxy` (same path, the proxy's origin)."""
    return proxy.origin + urlsplit(base).path.rstrip("/")
