"""The exit codes of every command, the device kit's included: one meaning per code, everywhere.

They live in the device kit because the kit (``build_engine.py`` on a device) imports nothing of the package;
``ibit_deploy.errors`` takes them from here and adds the exception classes that carry them.
"""

from __future__ import annotations

DONE = 0
CHECK_FAILED = 1  # a gate or check ran and failed, or the output is being written by another process
BAD_INPUT = 2  # arguments, files, data or configs are unusable; nothing was written
REQUIREMENT_UNMET = 3  # something required (TensorRT, a GPU, trtexec, ...) is not available on this machine
UNEXPECTED = 70  # sysexits.h EX_SOFTWARE: an internal error, never a verdict about the user's input
INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for Ctrl-C
