"""ONNX Runtime's transformer graph fusions (``onnxruntime.transformers.optimizer``) applied to one ONNX file.

:func:`fuse_for_ort` rewrites a graph into ONNX Runtime's fused contrib ops (BiasGelu, SkipLayerNormalization,
Attention, ...) and says which fusions applied. It runs the optimizer's Python fusions only (``opt_level`` 0): the
result holds standard ops and ``com.microsoft`` contrib ops that every ONNX Runtime execution provider here runs
(CPU, CUDA), none of the hardware-specific rewrites an ONNX Runtime session makes when it loads a file (those it
still makes at load, as for any file). TensorRT cannot parse the contrib ops and fuses the plain graph on its own, so
these graphs are for the ONNX Runtime backends only. After the optimizer, :func:`.ort_rewrites.apply_rewrites` makes
our own exact rewrites (the same arithmetic in ops ORT's CPU kernels run faster), recorded apart as ``rewrites``.

One gap of the optimizer is filled here: its symbolic shape inference has no rule for opset-18 reductions that take
``axes`` as an input other than ReduceSum/ReduceMean (IBiT's ``ReduceL2`` Frobenius norm), and without shapes it
skips every fusion that needs them (SkipLayerNormalization among them). :func:`_reduce_shape_rules` gives those
reductions ReduceSum's rule (the output shape of a reduction depends only on the axes and ``keepdims``) for the
duration of one call.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ..devicekit.fileio import atomic_path
from .ort_rewrites import apply_rewrites

OPTIMIZER = "onnxruntime.transformers.optimizer"
CONTRIB_DOMAIN = "com.microsoft"
MODEL_TYPE = "vit"  # the optimizer's fusion set for encoder-only vision transformers
OPT_LEVEL = 0  # Python fusions only: portable across execution providers (see the module docstring)
# fusions left out by default, with why; each maps to the FusionOptions switches that turn it off
DISABLED_FUSIONS = {"SkipLayerNormalization": ("enable_skip_layer_norm", "enable_bias_skip_layer_norm")}
DISABLED_WHY = {"SkipLayerNormalization": "with it ibit_tiny_patch16_224 took 0.99-1.15x the plain graph's time on "
                                          "ONNX Runtime 1.32 CPU, 1 thread, mostly slower (benchmarks/RESULTS.md)"}
# reductions whose axes are an input from opset 18 on, and which the optimizer's shape inference lacks a rule for
_AXES_INPUT_REDUCTIONS = ("ReduceL1", "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceMax", "ReduceMin",
                          "ReduceProd", "ReduceSumSquare")


@contextlib.contextmanager
def _reduce_shape_rules() -> Iterator[None]:
    """Within the block, the optimizer's shape inference infers every axes-input reduction as it does ReduceSum."""
    import onnxruntime.transformers.optimizer  # noqa: F401  (puts the optimizer's own module folder on sys.path)
    import shape_infer_helper  # the module the optimizer itself imports (a top-level name, not the package path)

    helper = shape_infer_helper.SymbolicShapeInferenceHelper
    original = helper.__init__

    def init(self, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        for op in _AXES_INPUT_REDUCTIONS:
            self.dispatcher_.setdefault(op, self._infer_ReduceSum)

    helper.__init__ = init
    try:
        yield
    finally:
        helper.__init__ = original


def op_counts(model: Any) -> dict[str, int]:
    """Node count per op type (``domain:Op`` for other domains than ONNX's) of an ``onnx.ModelProto``."""
    counts = collections.Counter(f"{n.domain}:{n.op_type}" if n.domain not in ("", "ai.onnx") else n.op_type
                                 for n in model.graph.node)
    return dict(sorted(counts.items()))


def fuse_for_ort(source: str | os.PathLike, target: str | os.PathLike, *, num_heads: int = 0,
                 hidden_size: int = 0, disabled: tuple[str, ...] = tuple(DISABLED_FUSIONS)) -> dict[str, Any]:
    """Write ``source`` with ONNX Runtime's transformer fusions applied to ``target`` (atomically, checked).

    ``num_heads``/``hidden_size``: the attention's, for the Attention fusion (0: the optimizer reads them from the
    graph). ``disabled``: fusions of :data:`DISABLED_FUSIONS` not to apply (default: all of them, for the reasons in
    :data:`DISABLED_WHY`). Returns the record the manifest keeps: the tool, its settings and version, the fusions
    ``disabled``, ``fusions`` (fused op ->
    count, only those that applied; empty when none did), ``rewrites`` (:mod:`.ort_rewrites` name -> count, the
    same), and the op counts before and after.
    """
    import onnx
    import onnxruntime as ort
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    source, target = Path(source), Path(target)
    unknown = sorted(set(disabled) - set(DISABLED_FUSIONS))
    if unknown:
        raise ValueError(f"disabled fusions must be among {sorted(DISABLED_FUSIONS)}, got {unknown}")
    options = FusionOptions(MODEL_TYPE)
    for fusion in disabled:
        for switch in DISABLED_FUSIONS[fusion]:
            setattr(options, switch, False)
    before = op_counts(onnx.load(str(source)))
    quiet = logging.getLogger("onnxruntime.transformers")  # the optimizer narrates on its loggers and stdout
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with _reduce_shape_rules(), contextlib.redirect_stdout(None):
            fused = optimize_model(str(source), model_type=MODEL_TYPE, num_heads=num_heads, hidden_size=hidden_size,
                                   optimization_options=options, opt_level=OPT_LEVEL)
            stats = fused.get_fused_operator_statistics()
    finally:
        quiet.setLevel(level)
    fused_ops = op_counts(fused.model)
    # the statistics count every node of a fused type, also those the source already had: only new ones count
    fusions = {op: _count(fused_ops, op) - _count(before, op) for op, n in stats.items()
               if n and _count(fused_ops, op) > _count(before, op)}
    rewrites = apply_rewrites(fused.model)
    after = op_counts(fused.model)
    _declare_contrib_domain(fused.model)
    with atomic_path(target) as tmp:
        onnx.save_model(fused.model, str(tmp))
        onnx.checker.check_model(str(tmp))
    return {"tool": OPTIMIZER, "onnxruntime": ort.__version__, "model_type": MODEL_TYPE, "opt_level": OPT_LEVEL,
            "num_heads": num_heads, "hidden_size": hidden_size,
            "disabled": {fusion: DISABLED_WHY[fusion] for fusion in disabled}, "fusions": fusions,
            "rewrites": rewrites, "ops_before": before, "ops_after": after}


def _declare_contrib_domain(model: Any) -> None:
    """Import the contrib-op domain where the fused graph uses it (the optimizer leaves that to ONNX Runtime's
    leniency; the ONNX checker, and tools reading the file, want it declared)."""
    from onnx import helper

    used = {n.domain for n in model.graph.node}
    declared = {o.domain for o in model.opset_import}
    if CONTRIB_DOMAIN in used and CONTRIB_DOMAIN not in declared:
        model.opset_import.append(helper.make_opsetid(CONTRIB_DOMAIN, 1))


def _count(counts: dict[str, int], op: str) -> int:
    return counts.get(op, 0) + counts.get(f"{CONTRIB_DOMAIN}:{op}", 0)
