"""``--require-engine``: refuse, before anything is written, an export whose engine cannot be built on this machine."""

from __future__ import annotations

import importlib.util

from ..errors import RequirementUnmet

# the Python package each engine-building target needs, besides a CUDA GPU
ENGINE_PACKAGES = {"tensorrt": "tensorrt", "torch-tensorrt": "torch_tensorrt"}


def engine_unavailable_reason(to: str) -> str | None:
    """Why target ``to`` cannot build an engine here (a missing package, no CUDA GPU), or None if it may."""
    import torch

    package = ENGINE_PACKAGES.get(to)
    if package is None:
        return f"--to {to} builds no engine"
    if importlib.util.find_spec(package) is None:
        return f"the {package} Python package is not installed here"
    if not torch.cuda.is_available():
        return "no CUDA GPU is visible to torch here"
    return None


def require_engine_here(to: str) -> None:
    """Raise :class:`RequirementUnmet` if ``--to`` ``to`` cannot build an engine on this machine."""
    reason = engine_unavailable_reason(to)
    if reason is not None:
        raise RequirementUnmet(f"--require-engine: no {to} engine can be built on this machine ({reason}); "
                               f"nothing was written")
