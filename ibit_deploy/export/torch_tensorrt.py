"""``export_torch_tensorrt``: compile a model with Torch-TensorRT (dynamo, ahead of time) and save it.

The result is a ``torch.export`` ExportedProgram with TensorRT engines inside (load it with ``torch_tensorrt.load``
or ``torch.export.load`` on a machine with the same GPU and TensorRT). The ONNX -> ``build_engine`` route is the
main deployment path; this one serves users who stay in PyTorch.

Precision, strongly typed where the installed Torch-TensorRT allows it (TensorRT 11 has nothing else):
- fp32: ``use_explicit_typing=True`` (older versions: ``enabled_precisions={float32}``).
- fp16: Torch-TensorRT's rule-based autocast (``use_explicit_typing=True, enable_autocast=True,
  low_precision_type=float16``) where it exists; older versions fall back to weak typing
  (``enabled_precisions={float16, float32}``), which only TensorRT 10 supports.
- int8 needs a ModelOpt-quantized model: not offered here; use ``model.int8.onnx`` with ``build_engine``.
"""

from __future__ import annotations

import dataclasses
import inspect
import os
from pathlib import Path
from typing import Any

from ..devicekit.build import DEFAULT_WORKSPACE_MIB
from ..devicekit.fileio import atomic_named_path, sha256_file
from ..devicekit.profile import EngineProfile
from ..runtime.base import BackendUnavailable


def _compilation_settings(torch_tensorrt: Any) -> set[str]:
    """Names of the installed Torch-TensorRT's compile settings (their set changes between releases)."""
    try:
        from torch_tensorrt.dynamo._settings import CompilationSettings
    except ImportError:
        return set()
    return {f.name for f in dataclasses.fields(CompilationSettings)}


def precision_kwargs(precision: str, settings: set[str], trt_major: int | None) -> dict[str, Any]:
    """``torch_tensorrt.compile`` keyword arguments for ``precision`` given the available ``settings`` names."""
    import torch

    if precision == "fp32":
        return {"use_explicit_typing": True} if "use_explicit_typing" in settings \
            else {"enabled_precisions": {torch.float32}}
    if precision == "fp16":
        if {"use_explicit_typing", "enable_autocast", "low_precision_type"} <= settings:
            return {"use_explicit_typing": True, "enable_autocast": True, "low_precision_type": torch.float16}
        if trt_major is not None and trt_major >= 11:
            raise BackendUnavailable(f"this Torch-TensorRT has no autocast (strongly typed fp16), and TensorRT "
                                     f"{trt_major} has no weak typing: upgrade torch-tensorrt or use the fp16 ONNX "
                                     f"with build_engine")
        return {"enabled_precisions": {torch.float16, torch.float32}}
    raise ValueError(f"torch-tensorrt export supports precision 'fp32' or 'fp16', got {precision!r}; for int8 build "
                     f"model.int8.onnx (explicit Q/DQ) with build_engine")


def export_torch_tensorrt(model: Any, profile: EngineProfile, out_path: str | os.PathLike, precision: str = "fp16",
                          *, workspace_mib: int = DEFAULT_WORKSPACE_MIB) -> dict[str, Any]:
    """Compile ``model`` for ``profile`` (its (C, H, W) and batch range, tuned for its opt batch); save to ``out_path``.

    The file is written atomically (saved beside the target, then renamed). Returns a description: path, sha256,
    precision, batch range, versions, compile settings used. Raises BackendUnavailable without CUDA or
    torch_tensorrt, ValueError for bad arguments.
    """
    if precision not in ("fp32", "fp16"):
        precision_kwargs(precision, set(), None)  # raises the explanatory ValueError
    import torch

    if not torch.cuda.is_available():
        raise BackendUnavailable("torch-tensorrt export needs a CUDA GPU and a CUDA build of torch; "
                                 "torch.cuda.is_available() is False here")
    try:
        import torch_tensorrt
    except Exception as exc:
        raise BackendUnavailable(f"torch-tensorrt export: `import torch_tensorrt` failed ({exc}); install "
                                 f"'ibit-deploy[torch-tensorrt]' matching your torch and TensorRT") from exc
    try:
        import tensorrt

        trt_major: int | None = int(str(tensorrt.__version__).split(".")[0])
    except Exception:
        trt_major = None

    chw, min_batch, opt_batch, max_batch = profile.chw, profile.min_batch, profile.opt_batch, profile.max_batch
    kwargs = precision_kwargs(precision, _compilation_settings(torch_tensorrt), trt_major)
    model = model.eval().cuda()
    # torch.export specializes sizes 0 and 1, so the traced example uses a batch of at least 2 when the range allows
    example_batch = max(opt_batch, min(2, max_batch))
    example = torch.randn(profile.shape(example_batch), generator=torch.Generator().manual_seed(0)).cuda()
    inputs = [torch_tensorrt.Input(min_shape=(min_batch, *chw), opt_shape=(opt_batch, *chw),
                                   max_shape=(max_batch, *chw), dtype=torch.float32)]
    with torch.no_grad():
        compiled = torch_tensorrt.compile(model, ir="dynamo", inputs=inputs, workspace_size=workspace_mib << 20,
                                          **kwargs)
    _save(torch_tensorrt, compiled, example, Path(out_path), min_batch, max_batch)
    return {"path": str(out_path), "sha256": sha256_file(out_path), "format": "torch.export ExportedProgram",
            "precision": precision, "batch_range": [min_batch, max_batch], "opt_batch": opt_batch,
            "torch": torch.__version__, "torch_tensorrt": getattr(torch_tensorrt, "__version__", None),
            "tensorrt_major": trt_major, "settings": {k: str(v) for k, v in kwargs.items()}}


def _save(torch_tensorrt: Any, compiled: Any, example: Any, out: Path, min_batch: int, max_batch: int) -> None:
    """``torch_tensorrt.save`` to ``out`` atomically (its temporary file keeps the name: the format follows it)."""
    import torch

    params = inspect.signature(torch_tensorrt.save).parameters
    kwargs: dict[str, Any] = {"output_format": "exported_program"}
    kwargs["arg_inputs" if "arg_inputs" in params else "inputs"] = [example]
    if "dynamic_shapes" in params:  # newer releases re-export, so the batch axis must be declared again
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch", min=min_batch, max=max_batch)},)
        if "retrace" in params:
            kwargs["retrace"] = True
    with atomic_named_path(out) as tmp:
        torch_tensorrt.save(compiled, str(tmp), **kwargs)
