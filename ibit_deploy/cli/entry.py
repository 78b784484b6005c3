"""The one wrapper every command's ``main`` goes through: exceptions become the exit codes of ``ibit_deploy.errors``.

A known failure prints one line naming the problem; an unexpected one (a bug) prints one line with a pointer to a
log file holding the traceback, never a bare traceback, and exits with its own code.
"""

from __future__ import annotations

import functools
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path

from .. import errors
from ..devicekit.locking import LockBusy

LOG_DIR_ENV = "IBIT_DEPLOY_LOG_DIR"

Main = Callable[[Sequence[str] | None], int | None]


def log_dir() -> Path:
    """Where tracebacks of unexpected errors go: ``$IBIT_DEPLOY_LOG_DIR`` or ``<tmp>/ibit-deploy-logs``."""
    return Path(os.environ.get(LOG_DIR_ENV) or Path(tempfile.gettempdir()) / "ibit-deploy-logs")


def write_crash_log(prog: str, argv: Sequence[str] | None, exc: BaseException) -> Path | None:
    """Write the command line and the traceback of ``exc`` to a new log file; None if no log can be written."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
    path = log_dir() / f"{prog}-{stamp}-{os.getpid()}.log"
    args = list(sys.argv[1:] if argv is None else argv)
    text = f"command: {prog} {' '.join(args)}\n\n" + "".join(traceback.format_exception(exc))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    except OSError:
        return None
    return path


def cli_main(prog: str) -> Callable[[Main], Callable[[Sequence[str] | None], int]]:
    """Decorate a command's ``main(argv)`` so that whatever escapes it ends in the documented exit code."""

    def decorate(main: Main) -> Callable[[Sequence[str] | None], int]:
        @functools.wraps(main)
        def wrapped(argv: Sequence[str] | None = None) -> int:
            try:
                code = main(argv)
            except SystemExit:  # argparse's usage errors (2) and --help (0) keep their codes
                raise
            except KeyboardInterrupt:
                print(f"{prog}: interrupted", file=sys.stderr)
                return errors.INTERRUPTED
            except (errors.CheckFailed, LockBusy) as exc:  # a busy output directory: the check that it is free failed
                print(f"{prog}: FAILED: {exc}", file=sys.stderr)
                return errors.CHECK_FAILED
            except errors.RequirementUnmet as exc:
                print(f"{prog}: requirement unmet: {exc}", file=sys.stderr)
                return errors.REQUIREMENT_UNMET
            except errors.BAD_INPUT_ERRORS as exc:
                print(f"{prog}: error: {exc}", file=sys.stderr)
                return errors.BAD_INPUT
            except Exception as exc:  # a bug: one line here, the traceback in the log
                log = write_crash_log(prog, argv, exc)
                where = f"traceback in {log}" if log else "no log could be written"
                print(f"{prog}: unexpected error ({type(exc).__name__}: {exc}); {where}. Please report it.",
                      file=sys.stderr)
                return errors.UNEXPECTED
            return errors.DONE if code is None else int(code)

        return wrapped

    return decorate
