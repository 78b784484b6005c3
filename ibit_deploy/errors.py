"""The exit codes of every command and the exceptions every layer raises; the ground floor, so any module may
import them.

One meaning per code, everywhere. Each exception class carries its code (``exit_code``) and the word its one-line
message starts with (``label``); ``ibit_deploy.cli.entry`` turns whatever escapes a command into that line and code
through :func:`exit_code_of` and :func:`describe`, so no command returns a bare number:

    0  done
    1  a gate or check failed (accuracy gate, parity, engine check, package check, training diverged), or the output
       directory is being written by another process (``ibit_deploy.devicekit.locking.LockBusy``; ``--wait`` waits instead)
    2  bad input (arguments, files, data, configs; nothing was written), including an output the disk cannot take:
       full, over quota or read-only, or not writable by this user (the message says "nothing was written")
    3  a requirement is unmet on this machine (e.g. ``--require-engine`` and no engine could be built, a backend
       that cannot run here)
    70 unexpected error (a bug): one line on stderr, the traceback in a log file it names
    130 interrupted (Ctrl-C)
"""

from __future__ import annotations

import errno
import os

from .devicekit.exit_codes import BAD_INPUT, CHECK_FAILED, DONE, INTERRUPTED, REQUIREMENT_UNMET, UNEXPECTED

__all__ = ["BAD_INPUT", "CHECK_FAILED", "DONE", "INTERRUPTED", "REQUIREMENT_UNMET", "UNEXPECTED"]  # re-exported


class IbitError(Exception):
    """Base of the toolkit's own exceptions: the class says how a command ends when one escapes it."""

    exit_code: int = UNEXPECTED
    label: str = "unexpected error"


class CheckFailed(IbitError, RuntimeError):
    """A gate or check ran and failed (exit 1); the output that explains why has been written."""

    exit_code = CHECK_FAILED
    label = "FAILED"


class BadInput(IbitError, ValueError):
    """The user's input (arguments, files, data) is unusable (exit 2); nothing was written."""

    exit_code = BAD_INPUT
    label = "error"


class RequirementUnmet(IbitError, RuntimeError):
    """Something the user required is not available on this machine (exit 3)."""

    exit_code = REQUIREMENT_UNMET
    label = "requirement unmet"


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


# Exceptions of Python's own that mean the user's input (arguments, files, data) is unusable: exit 2. A bare
# RuntimeError or OSError is not among them: raised by our code or a library, it is a bug (exit 70) unless it is one
# of the disk errors below.
BAD_INPUT_ERRORS: tuple[type[BaseException], ...] = (
    ValueError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError, PermissionError,
)

# OSError numbers that say the output cannot be written where the user pointed it: a full disk or quota, a read-only
# file system, no permission. Every write is atomic (ibit_deploy.devicekit.fileio), so the file being written is absent.
UNWRITABLE_ERRNOS: frozenset[int] = frozenset(
    {errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EACCES, errno.EPERM})

NOTHING_WRITTEN = "nothing was written"


def is_unwritable(exc: BaseException) -> bool:
    """Whether ``exc`` is the disk refusing a write (full, over quota, read-only, no permission)."""
    return isinstance(exc, OSError) and exc.errno in UNWRITABLE_ERRNOS


def exit_code_of(exc: BaseException) -> int:
    """The exit code a command ends with when ``exc`` escapes it: the class's ``exit_code`` when it carries one
    (every class here does), 2 for the disk refusing a write and for Python's bad-input exceptions, else 70."""
    code = getattr(type(exc), "exit_code", None)
    if isinstance(code, int):
        return code
    if isinstance(exc, KeyboardInterrupt):
        return INTERRUPTED
    if is_unwritable(exc) or isinstance(exc, BAD_INPUT_ERRORS):
        return BAD_INPUT
    return UNEXPECTED


def describe(exc: BaseException, code: int | None = None) -> str:
    """The one line (without the program name) that says why a command ended with ``code`` (default:
    ``exit_code_of(exc)``): the class's ``label`` or the code's, then the message."""
    if is_unwritable(exc):
        assert isinstance(exc, OSError)
        where = f": {exc.filename}" if exc.filename else ""
        what = os.strerror(exc.errno) if exc.errno is not None else str(exc)
        return (f"error: cannot write the output ({what}{where}); {NOTHING_WRITTEN} in its place and the files "
                f"already there are as they were. Free space, or make that place writable (or write elsewhere)")
    label = getattr(type(exc), "label", None)
    if not isinstance(label, str):
        label = {CHECK_FAILED: "FAILED", BAD_INPUT: "error", REQUIREMENT_UNMET: "requirement unmet",
                 INTERRUPTED: "interrupted"}.get(exit_code_of(exc) if code is None else code, "unexpected error")
    return f"{label}: {exc}" if str(exc) else label
