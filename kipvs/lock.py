"""One writer at a time per node: watch, a cron sync and fix-routes must never interleave changes."""
from __future__ import annotations

import errno
import fcntl
import os
import stat
import time
from contextlib import contextmanager, nullcontext

from kipvs.config_file import RUNTIME_DIR
from kipvs.errors import ConfigError, KipvsError, PermissionDenied

# Lock, drain record and watch's effective configuration share one directory on tmpfs, which a
# DaemonSet mounts from the host as a whole (so the pod, cron and the CLI share all three).
DEFAULT_LOCK_FILE = f"{RUNTIME_DIR}/kipvs.lock"
DEFAULT_DRAIN_RECORD = f"{RUNTIME_DIR}/draining.json"


class Busy(KipvsError):
    pass


def make_runtime_dir(path: str) -> None:
    """kipvs's own directory is made on first use; any other directory must exist (a typo is not created)."""
    if os.path.dirname(os.path.abspath(path)) == RUNTIME_DIR:
        os.makedirs(RUNTIME_DIR, mode=0o755, exist_ok=True)


def writer_lock(dry_run: bool, path: str, wait: float):
    """Changing commands hold the node lock; a dry run changes nothing and needs none."""
    return nullcontext() if dry_run else node_lock(path, wait)


@contextmanager
def node_lock(path: str, wait: float):
    """Hold an exclusive flock on `path`, waiting up to `wait` seconds for another kipvs to finish."""
    try:
        make_runtime_dir(path)
        # The lock is truncated and written: never through a symlink, never into a FIFO or a device.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o644)
    except PermissionError:
        raise PermissionDenied(f"cannot open the lock file {path}: kipvs must run as root "
                               "(or with CAP_NET_ADMIN and a writable --lock-file)") from None
    except OSError as exc:
        why = "it is a symbolic link" if exc.errno == errno.ELOOP else exc.strerror
        raise ConfigError(f"cannot open the lock file {path}: {why} (--lock-file)") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise ConfigError(f"the lock file {path} is not a regular file (--lock-file)")
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
