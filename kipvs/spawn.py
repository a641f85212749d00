"""How the runner starts a process: through `sh`, from a small helper forked while kipvs is small.

`sh` starts every command with fork(), which copies the caller's page tables and makes its whole heap
copy-on-write: after each command, the first write to every page the process touches again is a page
fault (Python writes a reference count on every object it reads). A process holding a large cluster
state pays that on every sync; in the UML lab a fault costs ~150 us, and planning 1,000 Services right
after one command took 0.41 s instead of 0.05 s (2,400 faults). The helper is forked once, before the
cluster state is loaded; it runs each command through `sh` and sends back what it printed, so the main
process never forks again. When the helper is busy (a metrics scrape during a sync) or gone, the
command runs from the main process, as it always could.

`sh` (which imports asyncio and ssl: ~10 MB in a fresh interpreter) is imported only where a command
is started: in the helper, or in kipvs when it starts one itself.
"""
from __future__ import annotations

import gc
import logging
import os
import pickle
import signal
import socket
import struct
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass

BUFFER = 1 << 20
ANY_EXIT = list(range(-64, 256))  # exit statuses and signals are judged by the runner, not by sh
LENGTH = struct.Struct("!Q")


@dataclass(frozen=True)
class Outcome:
    """What a started command did: its exit status (None when it timed out or did not start), what it printed."""

    returncode: int | None
    stdout: bytes
    stderr: bytes
    timed_out: bool = False
    error: str = ""  # why it could not be started at all


class HelperLost(Exception):
    """The helper died or stopped answering after it was sent a command: the command's fate is unknown."""


def which(program: str) -> str | None:
    """Where `program` is, as sh.Command finds it (a path is checked as it is, a name looked up in PATH),
    without importing sh."""
    def executable(path: str) -> bool:
        return os.path.exists(path) and os.access(path, os.X_OK) and os.path.isfile(os.path.realpath(path))

    if os.path.split(program)[0]:
        path = os.path.abspath(os.path.expanduser(program))
        return path if executable(path) else None
    for directory in os.environ.get("PATH", "").split(os.pathsep):
        path = os.path.join(os.path.abspath(os.path.expanduser(directory)), program)
        if executable(path):
            return path
    return None


def start(path: str, args: list[str], stdin: bytes | None, env: dict[str, str], timeout: float) -> Outcome:
    """Run one command to its end through `sh` (killed after `timeout` seconds), from this process."""
    import sh

    try:
        return _run_through_sh(path, args, stdin, env, timeout)
    except (sh.ForkException, OSError) as exc:  # e.g. exec refused: reported like a failed command
        return Outcome(None, b"", b"", error=f"could not be started: {exc}".strip())


def _run_through_sh(path: str, args: list[str], stdin: bytes | None, env: dict[str, str],
                   timeout: float) -> Outcome:
    import sh

    with tempfile.TemporaryFile() as stdin_file:
        # sh feeds a string to stdin and reads output in small chunks through Python threads;
        # a real file and large output buffers make a 13,000-line batch ~10x cheaper.
        if stdin is not None:
            stdin_file.write(stdin)
            stdin_file.seek(0)
        proc = sh.Command(path)(*args, _in=stdin_file if stdin is not None else None, _bg=True, _tty_out=False,
                                _out_bufsize=BUFFER, _err_bufsize=BUFFER, _return_cmd=True, _ok_code=ANY_EXIT,
                                _env=env)
        # sh's own _timeout polls every 0.1 s, which adds 0.1 s to every command: a timer is free.
        expired = threading.Event()
        timer = threading.Timer(timeout, _kill_on_timeout, (proc, expired))
        timer.start()
        try:
            proc.wait()
        finally:
            timer.cancel()
    if expired.is_set():
        return Outcome(None, b"", b"", timed_out=True)
    return Outcome(proc.exit_code, _raw(proc.stdout), _raw(proc.stderr))


class CommandHelper:
    """A child process, forked now, that runs commands through `sh` for this one.

    One command at a time: `run` returns None at once when another thread's command is in flight
    or the helper is gone, and the caller starts its command itself."""

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:  # the helper: never returns into the caller's code
            status = 1
            try:
                ours.close()
                _serve(theirs)
                status = 0
            finally:
                os._exit(status)
        theirs.close()
        self.pid, self._socket, self._busy = pid, ours, threading.Lock()
        # An exiting kipvs closes its end; the helper sees end-of-file and exits, and is reaped here.
        self._finalizer = weakref.finalize(self, _stop, ours, pid)

    def run(self, path: str, args: list[str], stdin: bytes | None, env: dict[str, str],
            timeout: float) -> Outcome | None:
        """The command's outcome; None when busy, or gone before it took the command (start it yourself)."""
        if not self.alive or not self._busy.acquire(blocking=False):
            return None
        try:
            # The helper kills the command at `timeout`; waiting much longer than that means it is stuck.
            self._socket.settimeout(timeout + 30)
            try:
                _send(self._socket, (path, args, stdin, env, timeout))
            except OSError:
                self.close()
                return None
            try:
                return _receive(self._socket)
            except (OSError, EOFError, pickle.UnpicklingError) as exc:
                self.close()
                raise HelperLost(f"the command helper (pid {self.pid}) was lost while running it: "
                                 f"{exc or type(exc).__name__}") from None
        finally:
            self._busy.release()

    @property
    def alive(self) -> bool:
        return self._finalizer.alive  # the finalizer runs once: on close, on loss, or at exit

    def close(self) -> None:
        self._finalizer()


def _serve(sock: socket.socket) -> None:
    """The helper's loop: one request, one reply, until kipvs closes its end."""
    gc.collect()  # garbage inherited from the parent closes its files now, before those numbers are reused
    _keep_only(sock.fileno())
    logging.disable(logging.CRITICAL)  # kipvs logs what the helper did; its handlers' files are closed here
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        # A stop signal is for kipvs, which finishes its sync and then closes the helper. A handler
        # (not SIG_IGN, which commands would inherit) is reset by exec for the commands started.
        signal.signal(signum, _ignore)
    sock.settimeout(None)
    import sh  # noqa: F401  (once, before the first command: here, not in kipvs)

    while True:
        try:
            path, args, stdin, env, timeout = _receive(sock)
        except EOFError:
            return
        _send(sock, start(path, args, stdin, env, timeout))


def _keep_only(fd: int) -> None:
    """Close every file kipvs had open (its lock, listening sockets, pipes), keep stderr for a crash's
    last words, and give stdin and stdout /dev/null so a reader of kipvs's output is not kept waiting."""
    for name in os.listdir("/proc/self/fd"):
        if int(name) > 2 and int(name) != fd:
            try:
                os.close(int(name))
            except OSError:  # the listing's own directory, closed by now
                pass
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    if null > 2:
        os.close(null)


def _send(sock: socket.socket, message) -> None:
    data = pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL)
    if len(data) < 65536:
        sock.sendall(LENGTH.pack(len(data)) + data)
    else:  # a batch or a table dump: not copied once more to put the length in front
        sock.sendall(LENGTH.pack(len(data)))
        sock.sendall(data)


def _receive(sock: socket.socket):
    (length,) = LENGTH.unpack(_exactly(sock, LENGTH.size))
    return pickle.loads(_exactly(sock, length))


def _exactly(sock: socket.socket, size: int) -> bytearray:
    data, got = bytearray(size), 0
    view = memoryview(data)
    while got < size:
        n = sock.recv_into(view[got:])
        if n == 0:
            raise EOFError("the other end closed")
        got += n
    return data


def _stop(sock: socket.socket, pid: int, grace: float = 2.0) -> None:
    """Close kipvs's end (the helper exits once its command, if any, is done) and reap the helper;
    one that is still there after `grace` seconds is stuck and killed."""
    sock.close()
    try:
        deadline = time.monotonic() + grace
        while os.waitpid(pid, os.WNOHANG) == (0, 0):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return
            time.sleep(0.005)
    except (ProcessLookupError, ChildProcessError):
        pass


def _ignore(_signum, _frame) -> None:
    pass


def _kill_on_timeout(proc, expired: threading.Event) -> None:
    expired.set()
    try:
        proc.kill()
    except ProcessLookupError:  # it exited just as the timer fired: not a timeout after all
        expired.clear()


def _raw(data: bytes | str | None) -> bytes:
    if data is None:
        return b""
    return data if isinstance(data, bytes) else data.encode()
