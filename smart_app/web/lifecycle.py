"""Background work in a multi-process server: run a job in one process per instance, stop it cleanly.

gunicorn forks several worker processes, each building the app. A background loop such as the outbox
worker must run once per instance, not once per process: `once_per_instance` takes an exclusive `flock`
on a lock file that the gunicorn master names for its instance (`OUTBOX_WORKER_LOCK`); the process holding
it runs the loop, the others keep trying every few seconds, so if that process dies (the kernel releases
its lock) another takes over. `on_stop` registers what to call when the process stops (gunicorn's
`worker_exit`, after in-flight requests finished).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import threading
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

log = logging.getLogger(__name__)
STOP_KEY = "ccm_ready_on_stop"
RETRY_SECONDS = 3.0


def on_stop(app: Any, fn: Callable[[], None]) -> None:
    """Call `fn` when this process stops serving (see `stop`)."""
    app.extensions.setdefault(STOP_KEY, []).append(fn)


def stop(app: Any) -> None:
    """Run the stop callbacks once, last registered first; errors are logged, never raised."""
    callbacks = app.extensions.pop(STOP_KEY, [])
    for fn in reversed(callbacks):
        try:
            fn()
        except Exception:
            log.exception("stop callback failed")


class InstanceLock:
    """An exclusive, non-blocking `flock` held for the life of this process (released by the kernel)."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._fh: IO[str] | None = None

    def try_acquire(self) -> bool:
        if self._fh is not None:
            return True
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(self.path, "a+")  # noqa: SIM115  (kept open while the lock is held)
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            return False
        self._fh = fh
        return True

    def release(self) -> None:
        if self._fh is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(self._fh.fileno(), fcntl.LOCK_UN)
            self._fh.close()
            self._fh = None


def once_per_instance(
    name: str, lock_path: Path | str, start: Callable[[], None], *, retry: float = RETRY_SECONDS
) -> Callable[[], None]:
    """Call `start()` in this process once it holds `lock_path`; returns a function that stops trying
    (and releases the lock: call it after stopping what `start` started)."""
    lock = InstanceLock(lock_path)
    done = threading.Event()

    def elect() -> None:
        while not done.is_set():
            if lock.try_acquire():
                log.info("%s runs in process %d for this instance", name, os.getpid())
                start()
                return
            done.wait(retry)

    threading.Thread(target=elect, name=f"elect-{name}", daemon=True).start()

    def give_up() -> None:
        done.set()
        lock.release()

    return give_up
