"""Alternative ONNX forms of IBiT's mask-mode attention core, timed side by side on ORT CPU against timm ViT.

The model's graph (``current``) is ``S = Q K^T * (Mask / sqrt(d)); S / (ReduceL2(S) + eps); S V``. The variants
compute the same function (dividing by a per-(sample, head) scalar commutes with ``@ V``) in other forms:

  previous        the model's form until 2026-11-21: ``(Q K^T / sqrt(d)) * Mask``, ``Sqrt(ReduceSum(Pow(S, 2)))``
  divide_after_sv ``ReduceL2`` norm, but divide the (T, d) product ``S V`` instead of the (T, T) map
  sumsq_after_sv  ``Sqrt(ReduceSum(Pow(S, 2)))`` norm, divide after ``S V``

Dividing after ``S V`` would leave ``S V`` unnormalised, which can overflow fp16 unless that MatMul joins the fp32
island: it would trade ORT CPU time for an fp32 MatMul in TensorRT FP16 engines (not measurable here without a
GPU), so ``current`` keeps the division first.

Each variant is checked against its own PyTorch forward on ORT before it is timed. ``--profile`` adds ORT's per-op
totals for the model's graph and ViT's, which is where the IBiT/ViT difference lives.

    python benchmarks/attention_core.py --model ibit_tiny_patch16_224 --batch 32 --rounds 21 --profile
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from ort_bench import interleaved_rounds, kernel_times, medians, ort_session

from ibit_deploy.export.onnx_export import export_onnx
from ibit_deploy.fold import fold_masks
from ibit_deploy.models import IBiTAttention, create_model, matching_baseline_kwargs
from ibit_deploy.models.attention import FROBENIUS_EPS
from ibit_deploy.models.registry import VARIANTS

VARIANT_NAMES = ("current", "previous", "divide_after_sv", "sumsq_after_sv")


def variant_forward(variant: str):
    """A mask-mode ``IBiTAttention.forward`` computing the same function in the form named ``variant``."""

    def forward(self: IBiTAttention, x: torch.Tensor, attn_mask=None, is_causal: bool = False) -> torch.Tensor:
        batch, tokens, dim = x.shape
        qkv = self.qkv(x).reshape(batch, tokens, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        mask = self.dense_mask()
        if variant == "previous":
            scores = ((q @ k.transpose(-2, -1)) * self.scale) * mask
            out = (scores / (scores.square().sum(dim=(-2, -1), keepdim=True).sqrt() + FROBENIUS_EPS)) @ v
        elif variant == "divide_after_sv":
            scores = (q @ k.transpose(-2, -1)) * (mask * self.scale)
            out = (scores @ v) / (torch.linalg.vector_norm(scores, dim=(-2, -1), keepdim=True) + FROBENIUS_EPS)
        else:  # sumsq_after_sv
            scores = (q @ k.transpose(-2, -1)) * (mask * self.scale)
            out = (scores @ v) / (scores.square().sum(dim=(-2, -1), keepdim=True).sqrt() + FROBENIUS_EPS)
        return self.proj(out.transpose(1, 2).reshape(batch, tokens, dim))

    return forward


def export_variant(model_name: str, variant: str, path: Path, chw: tuple[int, ...], x: np.ndarray) -> Path:
    """Export the folded model with ``variant``'s attention forward and check ORT against PyTorch on ``x``."""
    original = IBiTAttention.forward
    if variant != "current":
        IBiTAttention.forward = variant_forward(variant)
    try:
        torch.manual_seed(0)
        model = fold_masks(create_model(model_name).eval())
        with torch.inference_mode():
            expected = model(torch.from_numpy(x)).numpy()
        export_onnx(model, path, chw)
    finally:
        IBiTAttention.forward = original
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": x})[0]
    diff = float(np.abs(got - expected).max())
    if diff > 1e-4:
        raise SystemExit(f"{variant}: ORT differs from PyTorch by {diff:.2e} (> 1e-4); not timing a wrong graph")
    return path


def op_totals(path: Path, x: np.ndarray, threads: int, runs: int = 5) -> dict[str, float]:
    """Milliseconds per forward spent in each ONNX op type (ORT's profiler, two warm-up runs included)."""
    ms, _ = kernel_times(path, {"images": x}, threads, runs, warmup=2, profile_prefix=str(path.with_suffix("")))
    return ms


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ibit_tiny_patch16_224", choices=sorted(VARIANTS))
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="also print ORT per-op totals (current vs ViT)")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "attention_core.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    chw = tuple(create_model(args.model).pretrained_cfg["input_size"])
    x = np.random.default_rng(0).standard_normal((args.batch, *chw)).astype(np.float32)
    tmp = Path(tempfile.mkdtemp(prefix="ibit-attn-core-"))
    paths = {name: export_variant(args.model, name, tmp / f"{name}.onnx", chw, x) for name in VARIANT_NAMES}
    vit = create_model("vit_tiny_patch16_224", **matching_baseline_kwargs(args.model)).eval()
    paths["vit"] = export_onnx(vit, tmp / "vit.onnx", chw)

    sessions = {k: ort_session(p, args.threads) for k, p in paths.items()}
    iters = max(3, 64 // args.batch)
    rounds = interleaved_rounds({k: (lambda s=sess: s.run(None, {"images": x})) for k, sess in sessions.items()},
                                args.rounds, iters)
    med = medians(rounds)
    # The fastest round is the least disturbed by other tenants of a shared machine; show both.
    best = {k: min(v) for k, v in rounds.items()}
    print(f"model {args.model} batch {args.batch}, ORT {ort.__version__} CPU, {args.threads} threads, "
          f"{args.rounds} interleaved rounds")
    print("| graph | median ms | / current | / ViT | min ms | / current | / ViT |")
    print("|---|---|---|---|---|---|---|")
    for key in med:
        print(f"| {key} | {med[key]:.2f} | {med[key] / med['current']:.3f} | {med[key] / med['vit']:.3f} "
              f"| {best[key]:.2f} | {best[key] / best['current']:.3f} | {best[key] / best['vit']:.3f} |")
    result = {"model": args.model, "batch": args.batch, "threads": args.threads, "rounds": args.rounds,
              "ort": ort.__version__, "median_ms": med, "fastest_round_ms": best, "rounds_ms": rounds}
    if args.profile:
        result["op_totals_ms"] = {}
        for key in ("current", "vit"):
            totals = result["op_totals_ms"][key] = op_totals(paths[key], x, args.threads)
            print(f"\n{key}: ORT op totals (ms per forward, profiler on)")
            for op, ms in totals.items():
                if ms >= 0.01 * sum(totals.values()):
                    print(f"  {op:24s} {ms:8.2f}")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
