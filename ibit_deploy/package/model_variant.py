"""The ONNX a target runs: the bundle's, with the target's preprocessing folded in where its keys cannot express
the bundle's, optionally ending in a softmax and with a fixed batch; plus the parity check of the result.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..devicekit.agreement import compare_logits
from ..devicekit.fileio import sha256_file
from ..errors import CheckFailed
from .graph_edit import append_softmax, fix_batch, fold_input_affine, save_checked
from .preprocess import PixelTransform, apply_transform, bundle_transform, colour_map, fold_affine, is_identity
from .source import BundleView, PackageError

PROB_OUTPUT = "probabilities"
# packaged fp32 model vs the bundle's fp32 ONNX on the same pixels (the exactness bar)
FP32_PARITY_ATOL = 1e-4


class PackageCheckFailed(CheckFailed):
    """A package was written but its self-check failed (parity with the bundle, or a schema check): exit 1."""


def write_variant(view: BundleView, precision: str, target: PixelTransform, dest: Path, *,
                  softmax: bool, batch: int | None = None) -> dict[str, Any]:
    """Write the ONNX ``dest`` for a target whose preprocessing is ``target``; returns the manifest record."""
    spec = view.input
    a, beta = fold_affine(bundle_transform(spec.mean, spec.std, spec.order), target)
    fold = not is_identity(a, beta)
    if fold and precision == "int8":
        raise PackageError(f"{view.manifest_path}: this target's preprocessing cannot express the bundle's "
                           f"(mean {list(spec.mean)}, std {list(spec.std)}), so it must be folded into the first "
                           f"layer, and an INT8 (Q/DQ) model cannot take the fold without recalibration; package "
                           f"--precision fp16 (or fp32) instead")
    source = view.require_onnx("fp32" if fold else precision)
    model = onnx.load(str(source))
    if fold:
        try:
            model = fold_input_affine(model, view.input_name, a, beta)
        except ValueError as exc:
            raise PackageError(f"{source}: cannot fold the preprocessing into the model: {exc}") from exc
    if softmax:
        model = append_softmax(model, view.output_name, PROB_OUTPUT)
    if batch is not None:
        model = fix_batch(model, batch)
    record: dict[str, Any] = {"source": source.name, "source_sha256": sha256_file(source), "precision": precision,
                              "softmax": softmax, "fixed_batch": batch, "fold": None}
    if fold and precision == "fp16":
        record["fp16"] = _fold_then_fp16(view, model, dest)
    else:
        save_checked(model, dest)
    if fold:
        record["fold"] = {"layer": "first Conv (patch embedding, no padding: exact)", "a": a.tolist(),
                          "beta": beta.tolist(), "formula": "x[k] = sum_c a[k][c] * t[c] + beta[k], folded into "
                                                            "W'[o,c] = sum_k W[o,k] a[k][c], b' = b + sum W[o,k] beta[k]"}
    return record


def _fold_then_fp16(view: BundleView, model: onnx.ModelProto, dest: Path) -> dict[str, Any]:
    """Convert the folded fp32 model to fp16 with the bundle's recorded fp16 config (its fp32 islands)."""
    from ..quantization.config import Fp16Config
    from ..quantization.fp16 import convert_fp16

    art = view.artifact("onnx", "fp16")
    recorded = art.entry.get("quantization") if art is not None else None
    config = Fp16Config.from_dict(recorded) if recorded else Fp16Config()
    with tempfile.TemporaryDirectory() as tmp:
        folded = save_checked(model, Path(tmp) / "folded_fp32.onnx")
        report = convert_fp16(folded, dest, config)
    return {"config": config.to_dict(), "fp32_nodes": report.get("fp32_nodes")}


def check_parity(view: BundleView, packaged: Path, precision: str, target: PixelTransform, *, softmax: bool,
                 pixels: np.ndarray | None = None, count: int = 8, seed: int = 0) -> dict[str, Any]:
    """Packaged model on ``target``-preprocessed pixels vs the bundle's ONNX on bundle-preprocessed pixels.

    ``pixels``: uint8 (N, H, W, C) in the target's colour order; seeded random pixels when None. With ``softmax``
    the bundle's logits are softmaxed first. fp32 packages must agree within FP32_PARITY_ATOL.
    """
    import onnxruntime as ort

    if pixels is None:
        rng = np.random.default_rng(seed)
        pixels = rng.integers(0, 256, (count, *view.input.image_size, len(target.order)), dtype=np.uint8)
    model_transform = bundle_transform(view.input.mean, view.input.std, view.input.order)
    model_pixels = np.einsum("nhwc,kc->nhwk", pixels.astype(np.float64), colour_map(model_transform.order,
                                                                                    target.order))
    ref_in = apply_transform(model_pixels, model_transform)
    ref_path = view.require_onnx(precision)
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    ref_sess = ort.InferenceSession(str(ref_path), opts, providers=["CPUExecutionProvider"])
    pkg_sess = ort.InferenceSession(str(packaged), opts, providers=["CPUExecutionProvider"])
    fixed = pkg_sess.get_inputs()[0].shape[0]
    tgt_in = apply_transform(pixels, target)
    step = fixed if isinstance(fixed, int) and fixed > 0 else len(tgt_in)
    got = np.concatenate([pkg_sess.run(None, {pkg_sess.get_inputs()[0].name: tgt_in[i:i + step]})[0]
                          for i in range(0, len(tgt_in), step)])
    ref = ref_sess.run(None, {view.input_name: ref_in})[0].astype(np.float64)
    if softmax:
        ref = np.exp(ref - ref.max(1, keepdims=True))
        ref /= ref.sum(1, keepdims=True)
    result = {"reference": ref_path.name, "inputs": f"{len(pixels)} seeded random uint8 images", "compared":
              "probabilities" if softmax else "logits", **compare_logits(ref, got)}
    if precision == "fp32":
        diff = result["max_abs_diff"]  # None when the package produced a non-finite value
        result["tolerance"] = FP32_PARITY_ATOL
        result["passed"] = diff is not None and diff <= FP32_PARITY_ATOL
        if not result["passed"]:
            raise PackageCheckFailed(f"{packaged}: differs from {ref_path} by {diff if diff is None else f'{diff:.3g}'}"
                                     f" (> {FP32_PARITY_ATOL}) on the same pixels through the target's preprocessing")
    return result
