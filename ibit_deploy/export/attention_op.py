"""``ibit-export --attention onnx-attention``: the exact fused-attention form for TensorRT >= 10.14.

A bias-mode IBiT folds into ``softmax(q k^T / sqrt(d) + B) v`` with a static (heads, T, T) bias ``B``: exactly what the
ONNX ``Attention`` op (opset 23, default domain) computes with ``B`` as its additive ``attn_mask``. The export keeps
``model.onnx`` in the MatMul -> Softmax -> MatMul form (the user's ``--opset``, <= 22: every TensorRT parses it and
JetPack 6's 10.3 fuses it) and writes beside it ``model.attn.onnx`` (:data:`~ibit_deploy.devicekit.layout.
ATTENTION_OP_ONNX`): the same folded model exported at opset 23, where torch's exporter writes each
``scaled_dot_product_attention`` with the bias as one ``Attention`` node whose mask is the bias broadcast over the
batch (1, heads, T, T). No low-rank step: FlashBias (``--attention flashbias``) stays the fused path for 10.3.

The file is gated like every artifact (:func:`attention_op_stage`): every attention core must be an ``Attention`` op
with the bias as its mask; ONNX Runtime CPU runs it and ``model.onnx`` on the same images and the logits must agree
to :data:`EXACT_TOLERANCE` with the same top-1 on every image. (``ibit_deploy.conformance.onnx_support.check_bundle``
checks the file against the ONNX-parser table of TensorRT >= 10.14, a layer above the export.) The device kit builds from it where its
TensorRT parses the op and from ``model.onnx`` elsewhere (:mod:`ibit_deploy.devicekit.attention_form`).

Mask-mode IBiT has no softmax (its mask multiplies the scores, which are then Frobenius-normalised), so there is
no attention op to carry it: it keeps its own form and asking for this one is bad input (:data:`NOT_APPLICABLE_MASK`).
The fp16 model gets the form too when fp16 is exported (:func:`fp16_attention_op_stage`: ``model.fp16.attn.onnx``,
the same fp16 conversion and gate as ``model.fp16.onnx``). The int8 model does not: its Q/DQ pairs sit on the
attention MatMuls' inputs (q, k, softmax output, v), placed and calibrated per MatMul; an ``Attention`` op has no
such inner inputs to carry them, so an int8 twin would either drop the attention's int8 or need its own placement
and calibration, ungated here. int8 engines build from ``model.int8.onnx``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from torch import nn

from ..devicekit.agreement import compare_logits
from ..devicekit.layout import ATTENTION_OP_KIND, ATTENTION_OP_ONNX
from ..devicekit.layout import DEFAULT_ONNX as _ONNX_FILES
from ..devicekit.manifest import artifact_entry, attention_op_artifact, onnx_artifact
from ..devicekit.profile import InputSpec
from ..devicekit.versions import feature
from ..errors import ExportFailed
from ..models.attention import IBiTAttention
from .onnx_export import export_onnx
from .probe import ProbeImages

FORM = "onnx-attention"  # the --attention value
OPSET = 23  # the ONNX Attention op's opset
# largest |logit difference| against model.onnx: the same arithmetic, only fused in another order (fp32 rounding)
EXACT_TOLERANCE = 1e-4
ONNX_DEFAULT_FP32 = _ONNX_FILES["fp32"]  # the fp32 model every gate's logits and labels come from
NOT_APPLICABLE_MASK = (
    "--attention onnx-attention does not apply to mask-mode IBiT: the ONNX Attention op is softmax(q k^T s + mask) v "
    "with an additive mask under a softmax (attn_mode 'bias'); the paper's mask multiplies the scores and has no "
    "softmax, so mask-mode models keep their own form. Export it with --attention dense, or train with "
    "attn_mode='bias'")
NOT_APPLICABLE_TIMM = ("--attention onnx-attention does not apply: the model has no IBiT attention (no folded bias "
                       "to carry); export it with --attention dense")
NOTE = (f"model.onnx keeps the MatMul -> Softmax -> MatMul form every TensorRT parses; "
        f"{ATTENTION_OP_ONNX['fp32']} carries each attention as one ONNX Attention op (opset {OPSET}) with the folded "
        f"bias as attn_mask, parsed by TensorRT {feature('onnx_attention_op').span()}: build_engine.py builds from it "
        f"there and from model.onnx elsewhere")


def check_applicable(model: nn.Module, opset: int) -> None:
    """ValueError unless ``model`` is a bias-mode IBiT and ``opset`` leaves model.onnx in the MatMul form."""
    attentions = [m for m in model.modules() if isinstance(m, IBiTAttention)]
    if not attentions:
        raise ValueError(NOT_APPLICABLE_TIMM)
    modes = sorted({a.mode for a in attentions})
    if modes != ["bias"]:
        raise ValueError(f"{NOT_APPLICABLE_MASK} (this model's attention mode: {', '.join(modes)})")
    if opset >= OPSET:
        raise ValueError(f"--attention onnx-attention writes model.onnx in the MatMul form as the fallback for "
                         f"TensorRT < 10.14, which needs --opset <= {OPSET - 1} (got --opset {opset}); the "
                         f"Attention-op form is written at opset {OPSET} beside it")


def attention_op_stage(out: Path, manifest: dict[str, Any], folded: nn.Module, probe: ProbeImages, *,
                       metadata: Mapping[str, str] | None = None, threads: int = 0,
                       shown: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Write the Attention-op form of ``folded`` into ``out`` and gate it against ``model.onnx`` (already written);
    return its artifact entry and the manifest's ``attention`` block. ExportFailed when the exporter did not write
    the form (a core left as MatMul -> Softmax -> MatMul, or a core without the bias as its mask)."""
    import onnx

    from ..quantization.gate import AccuracyGate, run_logits  # lazy: loads onnxruntime
    from .attention_graph import attention_cores

    shown = shown or out
    source = onnx_artifact(manifest, "fp32")
    if source is None:
        raise ExportFailed("the ONNX Attention-op form is written after model.onnx, which the manifest lacks")
    name = ATTENTION_OP_ONNX["fp32"]
    spec = InputSpec.from_manifest(manifest)
    export_onnx(folded, out / name, spec.chw, opset=OPSET, metadata=metadata)
    model = onnx.load(str(out / name))
    cores = attention_cores(model)
    layers = sum(isinstance(m, IBiTAttention) for m in folded.modules())
    fused = [c for c in cores if c["form"] == "attention-op" and c["attn_mask"] and c["bias_constants"]]
    if len(fused) != layers or len(cores) != layers:
        raise ExportFailed(f"{shown / name}: expected {layers} ONNX Attention ops carrying the folded bias as "
                           f"attn_mask, found {len(fused)} (of {len(cores)} attention cores: "
                           f"{sorted({c['form'] for c in cores})}); torch's exporter did not write the form")

    images = probe.images.numpy()
    ref = run_logits(out / source["path"], images, spec, threads=threads)
    ours = run_logits(out / name, images, spec, threads=threads)
    labels = probe.labels if probe.real else ref.argmax(1)
    gate = AccuracyGate(max_drop=0.0, min_agreement=1.0).check(compare_logits(ref, ours, labels))
    gate.update(images=probe.description, real_images=probe.real, backend="ort-cpu", reference=source["path"],
                max_abs_diff_allowed=EXACT_TOLERANCE)
    if gate["max_abs_diff"] is None or gate["max_abs_diff"] > EXACT_TOLERANCE:
        reasons = [] if gate["passed"] else [gate["reason"]]  # the top-1 rule's own failure comes first
        gate["passed"] = False
        gate["reason"] = "; ".join([*reasons, f"max |logit difference| {gate['max_abs_diff']} against "
                                              f"{source['path']} > {EXACT_TOLERANCE}: not the same model"])
    elif gate["passed"]:
        gate["reason"] = (f"the same top-1 as {source['path']} on all {gate['count']} images, max |logit difference| "
                          f"{gate['max_abs_diff']:.3g} <= {EXACT_TOLERANCE}")
    entry = artifact_entry(out, name, ATTENTION_OP_KIND, "fp32", opset=OPSET, attention_form="attention-op",
                           twin_of={"path": source["path"], "sha256": source["sha256"]}, gate=gate,
                           requires=f"TensorRT {feature('onnx_attention_op').span()} (its ONNX parser's Attention "
                                    f"op); elsewhere the device kit builds from {source['path']}")
    block = {"form": FORM, "attention_op": {"path": name, "opset": OPSET, "cores": len(fused),
                                            "passed": gate["passed"], "reason": gate["reason"]}, "note": NOTE}
    return entry, block


def fp16_attention_op_stage(out: Path, manifest: dict[str, Any], quantize: Mapping[str, Any] | None = None, *,
                            progress: Any = None, shown: Path | None = None) -> dict[str, Any]:
    """Write ``model.fp16.attn.onnx``, the fp16 twin of ``model.fp16.onnx``: the fp32 Attention-op form through the
    very fp16 conversion ``model.fp16.onnx`` gets (same fp32 islands; the ``Attention`` op itself runs in fp16, as
    TensorRT's fused attention does), gated as ``model.fp16.onnx`` is (ONNX Runtime CPU, which runs the op in fp16,
    and the bit-faithful fp16 probe, whose reference evaluator implements it). Returns its artifact entry; a failed
    gate is recorded in it. ExportFailed when the conversion lost an ``Attention`` op or its bias."""
    import onnx

    from ..quantization.artifact import fp16_twin
    from .attention_graph import attention_cores

    shown = shown or out
    source, fp32_twin = onnx_artifact(manifest, "fp16"), attention_op_artifact(manifest, "fp32")
    if source is None or fp32_twin is None:
        raise ExportFailed("the fp16 ONNX Attention-op form is written after model.fp16.onnx and model.attn.onnx")
    name = ATTENTION_OP_ONNX["fp16"]
    config, report, gate = fp16_twin(out, manifest, fp32_twin["path"], name, dict(quantize or {}), progress)
    layers = len(attention_cores(onnx.load(str(out / fp32_twin["path"]))))
    cores = attention_cores(onnx.load(str(out / name)))
    fused = [c for c in cores if c["form"] == "attention-op" and c["attn_mask"] and c["bias_constants"]]
    if len(fused) != layers or len(cores) != layers:
        raise ExportFailed(f"{shown / name}: the fp16 conversion left {len(fused)} of {layers} ONNX Attention ops "
                           f"carrying the folded bias")
    gate.update(reference=ONNX_DEFAULT_FP32, twin_of=source["path"])
    return artifact_entry(out, name, ATTENTION_OP_KIND, "fp16", opset=OPSET, attention_form="attention-op",
                          twin_of={"path": source["path"], "sha256": source["sha256"]}, gate=gate,
                          quantization=config.to_dict(), float_nodes=report["fp32_nodes"], conversion=report,
                          requires=f"TensorRT {feature('onnx_attention_op').span()} (its ONNX parser's Attention "
                                   f"op); elsewhere the device kit builds from {source['path']}")
