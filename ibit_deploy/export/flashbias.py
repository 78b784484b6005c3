"""``ibit-export --attention dense|flashbias[:RANK|:energy=E|:error=X]``: the export's attention-form stage.

``flashbias`` replaces each folded (heads, T, T) bias of a bias-mode IBiT by low-rank factors riding inside a plain
attention call (:func:`~ibit_deploy.fold.to_flashbias`), measures what the truncation costs end to end (logits of
the FlashBias model against the dense-bias model on real validation images) and gates it like any other artifact.
After the ONNX files are written, :func:`attention_report` checks the fp32 graph has no (T, T) constant between its
MatMuls and records, per file, the attention form, the bytes of attention constants and (INT8) the Q/DQ placement
against TensorRT's fused-MHA rules (METHODS.md section 3).

Opset 23 and later export each core as one ONNX ``Attention`` op (no ``attn_mask`` in the FlashBias form); only
TensorRT >= 10.14 parses it. JetPack 6 ships TensorRT 10.3: keep the default opset (18) there, which gives the
MatMul -> Softmax -> MatMul form TensorRT fuses into its MHA kernels.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from ..devicekit.agreement import compare_logits
from ..devicekit.layout import ATTENTION_OP_KIND
from ..errors import ExportFailed
from ..fold.flashbias import to_flashbias
from ..fold.lowrank import RankPolicy
from .probe import probe_images

# dense: the folded (heads, T, T) bias/mask in the MatMul form; flashbias: its low-rank factors inside plain attention;
# onnx-attention (bias mode): the MatMul form plus an exact ONNX Attention-op twin for TensorRT >= 10.14
# (export/attention_op.py)
ATTENTION_FORMS = ("dense", "flashbias", "onnx-attention")
# FlashBias's own choice for SwinV2's learned biases (METHODS.md section 3)
DEFAULT_POLICY = "energy=0.995"
ATTENTION_OP_OPSET = 23
ATTENTION_OP_NOTE = ("ONNX Attention op (opset >= 23): parsed by TensorRT >= 10.14 only; JetPack 6's TensorRT 10.3 "
                     "needs opset <= 22 (the MatMul -> Softmax -> MatMul form)")
# FP16 islands of the FlashBias graph: LayerNormalization only. The dense bias form keeps its Softmax in fp32 as well
# (fp16.py); here the Softmax input is a plain MatMul output with no bias Add, which TensorRT's fused MHA kernels
# take in fp16 (softmax accumulated in fp32 inside the kernel), and an fp32 island with Casts around the Softmax
# would break the MatMul -> Softmax -> MatMul pattern. The fp16 gate and its bit-faithful probe check it.
FP16_KEEP_OP_TYPES = ["LayerNormalization"]
# TensorRT's fused INT8 MHA (METHODS.md section 3): these q/k head sizes, at most this many tokens
INT8_MHA_HEAD_SIZES = (16, 32, 64)
INT8_MHA_MAX_TOKENS = 512


@dataclass(frozen=True)
class AttentionOption:
    """The attention form of an export: ``dense`` (the folded (heads, T, T) bias/mask), ``flashbias`` + policy, or
    ``onnx-attention`` (dense plus its ONNX Attention-op twin: :mod:`.attention_op`)."""

    form: str = "dense"
    policy: RankPolicy | None = None

    @classmethod
    def parse(cls, text: str) -> AttentionOption:
        """``"dense"``, ``"flashbias"`` (energy 0.995), ``"flashbias:16"``, ``"flashbias:energy=0.99"``,
        ``"flashbias:error=0.01"``, ``"onnx-attention"``."""
        form, sep, spec = text.strip().partition(":")
        if form not in ATTENTION_FORMS or (form != "flashbias" and sep):
            raise ValueError(f"--attention must be 'dense', 'flashbias[:RANK|:energy=E|:error=X]' or "
                             f"'onnx-attention', got {text!r}")
        if form != "flashbias":
            return cls(form)
        try:
            return cls("flashbias", RankPolicy.parse(spec or DEFAULT_POLICY))
        except ValueError as exc:
            raise ValueError(f"--attention {text!r}: {exc}") from None

    def __str__(self) -> str:
        return self.form if self.policy is None else f"{self.form}:{self.policy}"


@torch.no_grad()
def _logits(model: nn.Module, images: torch.Tensor, batch: int = 256) -> np.ndarray:
    return np.concatenate([model(images[i : i + batch]).numpy() for i in range(0, len(images), batch)])


def flashbias_stage(folded: nn.Module, manifest: dict[str, Any], option: AttentionOption,
                    max_drop: float | None = None, eval_count: int | None = None,
                    data: str | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The FlashBias model for ``folded`` (a folded bias-mode IBiT) and the manifest's ``attention`` block.

    ``manifest`` needs the ``input`` and ``data`` blocks (:mod:`ibit_deploy.devicekit.profile` reads them); ``data`` is another
    dataset spec to gate on (``--data``). The block records the policy, each layer's decomposition (rank, widths,
    energy, max |bias error|) and a ``gate``: the FlashBias model's logits against the dense-bias model's
    (:func:`~ibit_deploy.devicekit.agreement.compare_logits`, fractions) on up to ``eval_count`` validation images,
    failing when top-1 drops by more than ``max_drop`` (a fraction; default and ``eval_count``'s: the quantization
    gates') or a logit is not finite. Without readable validation images the gate runs on random inputs against the
    dense model's top-1 (so top1_drop = 1 - agreement) and says so (:func:`.probe.probe_images`). Mask-mode and
    non-IBiT models raise ValueError.
    """
    from ..quantization.artifact import QuantizeOptions  # lazy, as in pipeline.py: loads onnxruntime
    from ..quantization.gate import AccuracyGate

    max_drop = QuantizeOptions.max_drop if max_drop is None else max_drop
    eval_count = QuantizeOptions.eval_count if eval_count is None else eval_count
    model, layers = to_flashbias(folded, option.policy)
    probe = probe_images(manifest, eval_count, spec=data)
    dense = _logits(folded.eval(), probe.images)
    ours = _logits(model, probe.images)
    labels = probe.labels if probe.real else dense.argmax(1)
    gate = AccuracyGate(max_drop=float(max_drop)).check(compare_logits(dense, ours, labels))
    gate.update(images=probe.description, real_images=probe.real, backend="torch-cpu",
                reference="dense-bias folded model")
    if not probe.real:
        gate["labels"] = "the dense model's top-1 (random inputs have none)"
    block = {"form": "flashbias", "policy": str(option.policy), "layers": layers,
             "max_rank": max(layer["rank"] for layer in layers),
             "max_bias_error": max(layer["max_abs_error"] for layer in layers),
             "min_energy": min(layer["energy_min"] for layer in layers), "gate": gate,
             "fp16_keep_op_types": FP16_KEEP_OP_TYPES}
    return model, block


def quantize_overrides(block: dict[str, Any] | None) -> dict[str, Any]:
    """Quantization options the attention form sets (the user's own options win)."""
    return {"fp16_keep_op_types": block["fp16_keep_op_types"]} if block and block["form"] == "flashbias" else {}


def attention_report(bundle: str | os.PathLike, manifest: dict[str, Any], block: dict[str, Any]) -> dict[str, Any]:
    """``block`` plus, per ONNX artifact, its attention cores' form and constant bytes (and INT8 Q/DQ placement).

    For a FlashBias block the fp32 graph must be plain attention (:func:`.attention_graph.check_no_dense_bias`);
    otherwise the export fails (:class:`~ibit_deploy.errors.ExportFailed`) saying what is in the way.
    """
    import onnx

    from .attention_graph import attention_cores, check_no_dense_bias

    files: dict[str, Any] = {}
    for art in manifest.get("artifacts", []):
        if art.get("kind") not in ("onnx", ATTENTION_OP_KIND):  # ATTENTION_OP_KIND: --attention onnx-attention
            continue
        model = onnx.load(str(Path(bundle) / art["path"]))
        if block.get("form") == "flashbias" and art.get("precision") == "fp32":
            try:
                cores = check_no_dense_bias(model, art["path"])
            except ValueError as exc:
                raise ExportFailed(f"FlashBias export: {exc}") from exc
        else:
            cores = attention_cores(model)
        entry: dict[str, Any] = {"cores": len(cores), "forms": sorted({c["form"] for c in cores}),
                                 "attention_constant_bytes": sum(c["constant_bytes"] for c in cores)}
        if "attention-op" in entry["forms"]:
            entry["note"] = ATTENTION_OP_NOTE
        if art.get("precision") == "int8":
            entry["int8_mha"] = int8_mha_placement(model, block)
        files[art["path"]] = entry
    return {**block, "onnx": files}


def int8_mha_placement(model, block: dict[str, Any]) -> dict[str, Any]:
    """Where the INT8 graph's Q/DQ sit around each attention core, against TensorRT's fused INT8 MHA rules.

    The rules (METHODS.md section 3): Q/DQ on both inputs of the score MatMul, after the Softmax and after the
    second MatMul; q/k head size in {16, 32, 64}; at most 512 tokens. Returns per-rule counts of cores that meet them
    and whether every core is eligible.
    """
    from ..quantization.graph import GraphIndex
    from .attention_graph import attention_cores

    idx = GraphIndex(model)
    nodes = {n.name: n for n in model.graph.node}

    def dequantized(name: str) -> bool:
        node = idx.producer.get(name)
        while node is not None and node.op_type in ("Transpose", "Reshape", "Cast"):
            node = idx.producer.get(node.input[0])
        return node is not None and node.op_type == "DequantizeLinear"

    def quantized_after(name: str) -> bool:
        frontier = [name]
        while frontier:
            for consumer in idx.consumers.get(frontier.pop(), []):
                if consumer.op_type == "QuantizeLinear":
                    return True
                if consumer.op_type in ("Transpose", "Reshape", "Slice"):  # data movement TensorRT moves Q/DQ across
                    frontier.append(consumer.output[0])
        return False

    cores = [c for c in attention_cores(model) if c["form"] == "matmul"]
    rules = {"qk_dequantized": 0, "softmax_output_quantized": 0, "output_quantized": 0}
    for core in cores:
        scores, apply = nodes[core["scores"]], nodes.get(core["apply"] or "")
        rules["qk_dequantized"] += all(dequantized(i) for i in scores.input)
        rules["softmax_output_quantized"] += apply is not None and dequantized(apply.input[0])
        rules["output_quantized"] += apply is not None and quantized_after(apply.output[0])
    layers = block.get("layers") or []
    head_sizes = sorted({layer["qk_head_dim"] for layer in layers})
    tokens = max((layer["tokens"] for layer in layers), default=0)
    shape_ok = bool(layers) and all(h in INT8_MHA_HEAD_SIZES for h in head_sizes) and tokens <= INT8_MHA_MAX_TOKENS
    eligible = bool(cores) and all(v == len(cores) for v in rules.values()) and shape_ok
    return {"cores": len(cores), **rules, "qk_head_sizes": head_sizes, "tokens": tokens,
            "shape_eligible": shape_ok, "fused_int8_mha_eligible": eligible,
            "rule": f"Q/DQ before the score MatMul, after Softmax and after the second MatMul; q/k head size in "
                    f"{INT8_MHA_HEAD_SIZES}; <= {INT8_MHA_MAX_TOKENS} tokens"}
