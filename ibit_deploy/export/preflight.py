"""Every check of an export's inputs that can fail, run before the bundle directory is touched.

The checkpoint's config against its model (and itself), ``--attention onnx-attention`` against the model (bias mode)
and ``--opset``, ``--data`` against the model
(:func:`~ibit_deploy.data.fit.check_data_fits`), the quantization options and their dataset, and ``--require-engine``: an
export that would stop on one of these stops before it writes (or deletes) anything.
"""

from __future__ import annotations

import importlib.util
import os
from typing import Any

from torch import nn

from ..checkpoint_contract import check_checkpoint_contract
from ..data.fit import ModelInput, check_data_fits
from ..errors import RequirementUnmet
from .attention_op import FORM as ATTENTION_OP_FORM
from .attention_op import check_applicable as check_attention_op_applicable
from .flashbias import AttentionOption

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


def preflight(model: nn.Module, config: dict[str, Any], checkpoint: str | os.PathLike, options: Any) -> None:
    """Raise ValueError/FileNotFoundError (bad input) or RequirementUnmet before ``export_checkpoint`` writes anything.

    ``options`` is the (validated) :class:`~ibit_deploy.export.pipeline.ExportOptions`.
    """
    from ..quantization.artifact import check_quantize_options  # lazy: quantization imports export

    check_checkpoint_contract(model, config, checkpoint)
    if AttentionOption.parse(options.attention).form == ATTENTION_OP_FORM:  # mask mode has no softmax: no such form
        check_attention_op_applicable(model, options.opset)
    data = options.quantize.get("data")
    if data:  # --data: the images the fp16/int8/FlashBias gates and calibration run on
        check_data_fits(data, ModelInput.from_config(config, f"checkpoint {os.fspath(checkpoint)}"))
    check_quantize_options(options.quantize, options.precisions, config.get("data", {}))
    if options.require_engine:
        require_engine_here(options.to)
