"""One writer at a time per node: watch, a cron sync and fix-routes must never interleave changes."""
from __future__ import annotations

import fcntl
import os
import time
from contextlib import contextmanager

from kipvs.errors import KipvsError

DEFAULT_LOCK_FILE = "/run/kipvs.lock"


class Busy(KipvsError):
    pass


@contextmanager
def node_lock(path: str, wait: float):
    """Hold an exclusive flock on `path`, waiting up to `wait` seconds for another kipvs to finish."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                    raise Busy(f"another kipvs (pid {holder}) is changing this node; gave up after {wait:g}s "
                               f"(lock {path}, --lock-timeout)") from None
                time.sleep(0.05)
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing releases the flock
