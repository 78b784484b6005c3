"""ibit-deploy: train data-efficient Vision Transformers (IBiT) and ship them to NVIDIA edge and desktop GPUs.

``import ibit_deploy`` registers the IBiT variants with timm, as a timm plugin should: afterwards
``timm.create_model("ibit_tiny_patch16_224")`` and ``timm.list_models("ibit_*")`` work. It stays light: it imports
neither timm nor torch (the registration happens when timm is first imported, :mod:`.timm_plugin`), so the device
side runs without them and a command's Ctrl-C handling is in place before any heavy import (in a console script
of ours, :mod:`.cli.launch` holds a Ctrl-C from the first line below for the launcher to answer). Optional dependencies
(torch, timm, tensorrt, cuda, onnxruntime) are imported where they are used; the names below load on first use.
"""

from __future__ import annotations

import _signal  # the C module under ``signal``, loaded since the interpreter started: no file is read
import sys as _sys

# A Ctrl-C in a console script of ours is held from this first statement on, for .cli.launch to answer (exit 130, one
# line): importing .cli.launch takes milliseconds, a window for a KeyboardInterrupt traceback otherwise. The name
# test here is only a cheap first filter; .cli.launch decides by its list of commands and gives the signal back to
# Python's default handler in any other program.
_held_sigints: list[int] = []


def _hold_early(signum: int, frame: object) -> None:
    _held_sigints.append(signum)


if (_sys.argv and _sys.argv[0].replace("\\", "/").rsplit("/", 1)[-1].startswith("ibit-")
        and _signal.getsignal(_signal.SIGINT) is _signal.default_int_handler):
    try:
        _signal.signal(_signal.SIGINT, _hold_early)
    except ValueError:  # not the main thread
        pass

import importlib  # noqa: E402

from .cli import launch as _launch  # noqa: E402, F401  (in our console scripts, it takes over the hold above)
from .timm_plugin import register_with_timm  # noqa: E402
from .version import __version__  # noqa: E402

register_with_timm()

_LAZY = {
    "create_model": "ibit_deploy.models",
    "available_models": "ibit_deploy.models",
    "fold_masks": "ibit_deploy.fold",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ibit_deploy' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
