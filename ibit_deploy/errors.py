"""The exit codes of every command and the exceptions every layer raises; the ground floor, so any module may
import them.

One meaning per code, everywhere (``ibit_deploy.cli.entry`` maps exceptions to them):

    0  done
    1  a gate or check failed (accuracy gate, parity, engine check, training diverged), or the output directory is
       being written by another process (``ibit_deploy.devicekit.locking.LockBusy``; ``--wait`` waits instead)
    2  bad input (arguments, files, data, configs; nothing was written)
    3  a requirement is unmet on this machine (e.g. ``--require-engine`` and no engine could be built, a backend
       that cannot run here)
    70 unexpected error (a bug): one line on stderr, the traceback in a log file it names
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

DONE = 0
CHECK_FAILED = 1
BAD_INPUT = 2
REQUIREMENT_UNMET = 3
UNEXPECTED = 70  # sysexits.h EX_SOFTWARE: an internal error, never a verdict about the user's input
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C


class CheckFailed(RuntimeError):
    """A gate or check ran and failed (exit 1); the output that explains why has been written."""


class RequirementUnmet(RuntimeError):
    """Something the user required is not available on this machine (exit 3)."""


class BackendUnavailable(RequirementUnmet):
    """This backend cannot run on this machine (missing package, no GPU, ...); the message says why."""


class ExportFailed(CheckFailed):
    """The export finished but an artifact failed its check; the manifest records which and why."""


class GateFailed(ExportFailed):
    """The bundle and its manifest were written, but an artifact failed its accuracy gate or check (the manifest
    marks it); ``manifest`` is what was written."""

    def __init__(self, message: str, manifest: dict) -> None:
        super().__init__(message)
        self.manifest = manifest


# Exceptions that mean the user's input (arguments, files, data) is unusable: exit 2.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
)
