"""Reading a file someone else may have put there: a regular file only, and never more than a bound.

A FIFO would block kipvs until killed, a device (`/dev/zero`) would be read until memory runs out,
a directory fails in confusing ways. The file is opened without blocking (O_NONBLOCK: opening a
FIFO with no writer returns at once), its type is checked on the open descriptor (no race with a
rename), and at most `limit` + 1 bytes are read, in chunks.
"""
from __future__ import annotations

import os
import stat

CHUNK = 1 << 20
_KINDS = ((stat.S_ISDIR, "Is a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotReadable(OSError):
    """The file is not a regular file, or larger than its bound; str() is the reason."""


def read_chunks(read, limit: int, size: int = 0) -> bytes:
    """Up to limit + 1 bytes from `read(n)` (read(limit) would allocate it all up front). `size`: what the
    source says it holds (a regular file's st_size), read at once: a file that keeps that size is one read
    and no copy (joining chunks would hold the data twice, the largest part of file mode's peak memory)."""
    chunks, total = [], 0
    want = min(size, limit) + 1 if size > 0 else CHUNK
    while total <= limit:
        chunk = read(min(want, limit + 1 - total))
        if not chunk:
            break
        chunks.append(chunk if isinstance(chunk, bytes) else chunk.encode())
        total += len(chunks[-1])
        want = CHUNK
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def read_regular(path: str, limit: int) -> bytes:
    """The bytes of the regular file `path` (symlinks followed); NotReadable when it is anything else or
    holds more than `limit` bytes; OSError as open() raises it (missing, no permission)."""
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        status = os.fstat(fd)
        mode = status.st_mode
        if not stat.S_ISREG(mode):
            kind = next((what for test, what in _KINDS if test(mode)), "not a regular file")
            raise NotReadable(kind if kind == "Is a directory" else f"{kind}, not a regular file")
        data = read_chunks(lambda n: os.read(fd, n), limit, status.st_size)
    finally:
        os.close(fd)
    if len(data) > limit:
        raise NotReadable(f"larger than {limit} bytes")
    return data
