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
from .launch import interrupted

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


def exit_code_of(exc: BaseException) -> int:
    """The code ``exc`` ends a command with: its class's (``ibit_deploy.errors.exit_code_of``; the device kit's
    classes carry theirs as a plain ``exit_code`` attribute, since the kit imports nothing of the package)."""
    return errors.exit_code_of(exc)


def report(prog: str, argv: Sequence[str] | None, exc: BaseException) -> int:
    """Print the one line that says why ``exc`` ended the command, and return its exit code.

    A known failure names the problem; an unexpected one (a bug) names a log file holding the traceback."""
    code = exit_code_of(exc)
    if code == errors.UNEXPECTED:
        log = write_crash_log(prog, argv, exc)
        where = f"traceback in {log}" if log else "no log could be written"
        print(f"{prog}: unexpected error ({type(exc).__name__}: {exc}); {where}. Please report it.", file=sys.stderr)
    else:
        print(f"{prog}: {errors.describe(exc, code)}", file=sys.stderr)
    return code


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
            except Exception as exc:
                if interrupted():  # a Ctrl-C that a library turned into another exception (an interrupted import)
                    print(f"{prog}: interrupted", file=sys.stderr)
                    return errors.INTERRUPTED
                return report(prog, argv, exc)
            return errors.DONE if code is None else int(code)

        return wrapped

    return decorate
