"""Domain errors and the exit statuses they map to (used only by the CLI)."""
from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    OK = 0
    DRIFT = 1  # the kernel does not match what was wanted (or `show --check` found drift)
    ERROR = 2  # could not do the job: bad input, missing tool, no permission, API down


class KipvsError(Exception):
    """An error with a one-line message meant for the operator."""

    status = ExitStatus.ERROR


class ConfigError(KipvsError):
    """Bad options or unusable input."""


class ToolMissing(KipvsError):
    pass


class PermissionDenied(KipvsError):
    pass


class NoIPVS(KipvsError):
    pass


class NoDummy(KipvsError):
    pass


class CommandFailed(KipvsError):
    def __init__(self, argv: list[str], returncode: int | None, stderr: str):
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr.strip()
        detail = self.stderr.splitlines()[-1] if self.stderr else f"exit status {returncode}"
        super().__init__(f"`{' '.join(argv)}` failed: {detail}")


class ClusterUnavailable(KipvsError):
    """The cluster state could not be read (API down, file unreadable)."""
