"""The console scripts' entry points: light launchers that own Ctrl-C from the first line of ibit-deploy code.

A console script (``pyproject.toml`` ``[project.scripts]``) imports its target before calling it. Were the target a
command module, its imports (torch, timm, onnx: seconds) would run before :func:`ibit_deploy.cli.entry.cli_main`'s
handler, and a Ctrl-C then would end in a KeyboardInterrupt traceback. So the targets are the functions below: this
module imports only the standard library, first thing in ``import ibit_deploy`` (which is light too), and
imports the command inside the ``try``; a Ctrl-C between this module's import and that ``try`` (pip's wrapper runs a
few lines there) is held for it. Ctrl-C at any moment (importing, parsing arguments, working) ends the command
with exit 130 and one line on stderr; once the command has returned, a Ctrl-C changes nothing (the exit code is the
command's). ``import ibit_deploy`` installs the hold in its first statements (in a program whose name starts
``ibit-``) and imports this module next, which keeps it for our commands and gives it back otherwise, so only
the interpreter's own start is left to Python: before Python's handler exists SIGINT's default action ends the
process (a shell reports 130 too), and during ``site`` Python prints "Fatal Python error: init_import_site".
"""

from __future__ import annotations

# the C module under ``signal``, loaded since the interpreter started; ``import signal`` builds enums, milliseconds
# before the hold below would be in place
import _signal
import _thread
import os
import sys

# console script -> the module whose ``main`` it runs (each also runs as ``python -m MODULE``)
COMMANDS = {
    "ibit-deploy": "ibit_deploy.cli.main",
    "ibit-train": "ibit_deploy.cli.train",
    "ibit-eval": "ibit_deploy.cli.evaluate",
    "ibit-export": "ibit_deploy.cli.export",
    "ibit-bench": "ibit_deploy.cli.bench",
    "ibit-masks": "ibit_deploy.cli.masks",
    "ibit-calibrate": "ibit_deploy.cli.calibrate",
    "ibit-distill-logits": "ibit_deploy.cli.distill",
    "ibit-compare": "ibit_deploy.cli.compare",
}

# the SIGINTs this console script received: the same list as the package's early hold (``ibit_deploy/__init__``)
_root = sys.modules.get(__name__.split(".")[0])
_pending: list[int] = getattr(_root, "_held_sigints", [])


def _defer(signum: int, frame: object) -> None:
    _pending.append(signum)


def _interrupt(signum: int, frame: object) -> None:
    """Python's own SIGINT handler, remembering that it ran (see :func:`interrupted`)."""
    _pending.append(signum)
    raise KeyboardInterrupt


def _unraisable(unraisable: object) -> None:
    """``sys.unraisablehook`` of our console scripts: a Ctrl-C whose KeyboardInterrupt Python had to ignore (raised
    inside a weakref callback, e.g. importlib's module-lock ``cb`` during an import, or a ``__del__``: "Exception
    ignored in ...") is delivered again, to be raised where it can propagate; the command would otherwise go on
    working as if no Ctrl-C had come. Anything else goes to Python's own hook."""
    if isinstance(getattr(unraisable, "exc_value", None), KeyboardInterrupt) and interrupted():
        # scheduled from another thread, not run here: signal.raise_signal or interrupt_main in this (the main)
        # thread would run the handler inside this hook, ignored again; tripped from elsewhere, the handler raises at
        # the main thread's next check, back in code an exception can leave
        _thread.start_new_thread(_thread.interrupt_main, (_signal.SIGINT,))
        return
    sys.__unraisablehook__(unraisable)


def interrupted() -> bool:
    """Whether this console script got a Ctrl-C. A library whose import or callback a KeyboardInterrupt cut short can
    end in another exception (numpy's ``__getattr__`` recursing over a half-imported module, a RecursionError):
    :func:`ibit_deploy.cli.entry.cli_main` still answers it as an interrupt."""
    return bool(_pending)


def _hold_sigint_until_launch() -> None:
    """pip's console-script wrapper runs lines of its own between importing this module and calling the entry point
    (a regular expression for ``sys.argv[0]``): a Ctrl-C there would be the wrapper's traceback. In a console script
    of ours, and only there, it is kept for :func:`launch` to answer; a SIGINT the process ignores stays ignored."""
    name = os.path.basename(sys.argv[0] if sys.argv else "").removesuffix(".exe")
    current = _signal.getsignal(_signal.SIGINT)
    early = getattr(_root, "_hold_early", None)  # the package's first statement may already hold it
    try:
        if name in COMMANDS and (current is _signal.default_int_handler or current is early):
            _signal.signal(_signal.SIGINT, _defer)
            sys.unraisablehook = _unraisable
        elif early is not None and current is early:  # not one of ours after all: Python's handler, and a held one
            _signal.signal(_signal.SIGINT, _signal.default_int_handler)
            if _pending:
                _pending.clear()
                raise KeyboardInterrupt
    except ValueError:  # not the main thread
        pass


_hold_sigint_until_launch()


def launch(prog: str) -> int:
    """Import ``prog``'s command module and run its ``main`` on ``sys.argv``; the exit code it ends with."""
    from .. import errors  # here, not at the top: nothing is imported before the hold is in place

    try:
        if _signal.getsignal(_signal.SIGINT) is _defer:
            _signal.signal(_signal.SIGINT, _interrupt)
        if _pending:
            raise KeyboardInterrupt
        # the import statement's own machinery (not importlib.import_module), as ``python -m`` and ``-X importtime`` see it
        return __import__(COMMANDS[prog], fromlist=("main",)).main()
    except KeyboardInterrupt:  # during the imports (``main`` handles its own), or a second Ctrl-C in its handler
        return _answer(prog, errors.INTERRUPTED)
    except Exception:
        if not interrupted():
            raise
        return _answer(prog, errors.INTERRUPTED)  # an import the Ctrl-C cut short failed in another way
    finally:
        _ignore_sigint()  # done: no traceback from a Ctrl-C while the interpreter shuts down


def _answer(prog: str, code: int) -> int:
    _ignore_sigint()
    print(f"{prog}: interrupted", file=sys.stderr)
    return code


def _ignore_sigint() -> None:
    try:
        _signal.signal(_signal.SIGINT, _signal.SIG_IGN)
    except ValueError:  # not the main thread (an embedding application): its signals are its own
        pass


# One function per console script (pyproject.toml names them).


def ibit_deploy() -> int:
    """``ibit-deploy``."""
    return launch("ibit-deploy")


def ibit_train() -> int:
    """``ibit-train``."""
    return launch("ibit-train")


def ibit_eval() -> int:
    """``ibit-eval``."""
    return launch("ibit-eval")


def ibit_export() -> int:
    """``ibit-export``."""
    return launch("ibit-export")


def ibit_bench() -> int:
    """``ibit-bench``."""
    return launch("ibit-bench")


def ibit_masks() -> int:
    """``ibit-masks``."""
    return launch("ibit-masks")


def ibit_calibrate() -> int:
    """``ibit-calibrate``."""
    return launch("ibit-calibrate")


def ibit_distill_logits() -> int:
    """``ibit-distill-logits``."""
    return launch("ibit-distill-logits")


def ibit_compare() -> int:
    """``ibit-compare``."""
    return launch("ibit-compare")
