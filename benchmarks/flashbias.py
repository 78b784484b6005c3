"""FlashBias vs the dense (heads, T, T) bias: what the truncation costs a trained model, and what the form costs to run.

Quality (``--checkpoint``, a trained bias-mode IBiT): the singular-value energy of each layer's folded bias in token
coordinates, the rank each layer needs for 99 / 99.5 / 99.9% energy, and top-1 / agreement of the FlashBias model
against the dense-bias model on the checkpoint's whole validation split at each bound (plus fixed ranks). A PNG
plots the energy curves.

Speed and size (synthetic, one bias-mode attention layer of DeiT-tiny width: dim 192, 3 heads of 64, locality-init
bias): dense bias vs FlashBias (v padded to the q/k head dim, the default, and unpadded) at each token count, batch 1 and 32, through torch SDPA and through ONNX Runtime CPU,
candidates interleaved round by round; prints latency ratios and the bytes of attention constants in each ONNX
file. ``--device cuda`` (where a GPU is present) times torch SDPA on CUDA in fp16 and reports the SDPA backend the
profiler saw each form run (untested here: no GPU on the machine these numbers come from).

    OMP_NUM_THREADS=1 python benchmarks/flashbias.py --checkpoint runs/bias_d96x4 --threads 1
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from ort_bench import interleaved_rounds, medians, ort_session
from tqdm import tqdm

from ibit_deploy.export.attention_graph import attention_cores
from ibit_deploy.export.onnx_export import export_onnx
from ibit_deploy.fold import fold_masks, to_flashbias
from ibit_deploy.fold.lowrank import energy_curve
from ibit_deploy.models.attention import IBiTAttention

ENERGIES = (0.99, 0.995, 0.999)
FIXED_RANKS = (8, 16, 32)
GRIDS = {50: 7, 197: 14, 577: 24, 785: 28, 1025: 32}  # tokens: patch grid side (+1 CLS)


def quality(checkpoint: Path, plot: Path | None) -> dict:
    """Energy per layer, rank per energy bound, top-1 and agreement of each FlashBias bound vs the dense model."""
    from ibit_deploy.checkpoint import load_checkpoint
    from ibit_deploy.data import eval_arrays
    from ibit_deploy.models import ibit_attentions

    model, config = load_checkpoint(checkpoint)
    dense = fold_masks(model)
    data = config["data"]
    inp = config.get("input", {})
    size = inp.get("image_size") or data.get("image_size")
    size = (size, size) if isinstance(size, int) else tuple(size)
    mean, std = tuple(inp.get("mean") or data["mean"]), tuple(inp.get("std") or data["std"])
    images, labels = eval_arrays(data["spec"], "val", size, mean, std, val_fraction=data.get("val_fraction", 0.2),
                                 seed=data.get("seed", 0))
    x = torch.from_numpy(images)

    def predict(m: torch.nn.Module) -> np.ndarray:
        with torch.no_grad():
            return torch.cat([m(x[i : i + 256]) for i in range(0, len(x), 256)]).argmax(1).numpy()

    dense_pred = predict(dense)
    layers = []
    curves = []
    for i, attn in enumerate(ibit_attentions(dense)):
        curve = energy_curve(attn.dense_mask())  # (heads, T)
        curves.append(curve)
        need = {f"{e:g}": int(((curve < e - 1e-12).sum(-1) + 1).max()) for e in ENERGIES}
        layers.append({"layer": i, "tokens": attn.num_tokens, "heads": attn.num_heads,
                       "energy_at_rank": {r: [round(float(c), 5) for c in curve[:, r - 1]] for r in (1, 4, 8, 16, 32)
                                          if r <= attn.num_tokens}, "rank_for_energy": need})
    rows = [{"policy": "dense", "top1": float((dense_pred == labels).mean() * 100), "agreement": 100.0}]
    for policy in [*(f"energy={e:g}" for e in ENERGIES), *(f"rank={r}" for r in FIXED_RANKS)]:
        fb, report = to_flashbias(dense, policy)
        pred = predict(fb)
        rows.append({"policy": policy, "ranks": [r["rank"] for r in report],
                     "max_bias_error": max(r["max_abs_error"] for r in report),
                     "top1": float((pred == labels).mean() * 100), "agreement": float((pred == dense_pred).mean() * 100)})
    if plot is not None:
        _plot_energy(curves, plot)
    return {"checkpoint": str(checkpoint), "images": f"{len(labels)} val images of {data['spec']}",
            "layers": layers, "policies": rows}


def _plot_energy(curves: list[torch.Tensor], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for i, curve in enumerate(curves):
        for h, head in enumerate(curve):
            ax.plot(range(1, len(head) + 1), head.numpy(), color=f"C{i}", alpha=0.8,
                    label=f"block {i}" if h == 0 else None)
    for e in ENERGIES:
        ax.axhline(e, color="grey", lw=0.6, ls="--")
    ax.set(xlabel="rank (token coordinates)", ylabel="energy kept (sum sigma^2)", ylim=(0.9, 1.001),
           title="Learned bias energy per head (bias-mode IBiT, mnist5k)")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def attention_layer(tokens: int, dim: int, heads: int) -> IBiTAttention:
    """A folded bias-mode IBiT attention over ``GRIDS[tokens]``^2 patches + CLS (locality-initialized bias)."""
    side = GRIDS[tokens]
    torch.manual_seed(0)
    layer = IBiTAttention(dim, heads, (side, side), num_prefix=1, rank=9, mode="bias").eval()
    layer.fold()
    return layer


def _iters(fn, budget_s: float) -> int:
    start = time.perf_counter()
    fn()
    return max(1, min(50, math.floor(budget_s / max(time.perf_counter() - start, 1e-6))))


def speed(tokens_list: list[int], batches: list[int], rank: int, rounds: int, budget_s: float, threads: int,
          device: str) -> list[dict]:
    """Interleaved dense-vs-FlashBias timings per token count and batch, torch SDPA and (CPU) ONNX Runtime."""
    dim, heads = 192, 3
    rows = []
    work = Path(tempfile.mkdtemp(prefix="flashbias-bench-"))
    bar = tqdm(total=len(tokens_list) * len(batches), desc="speed", unit="case")
    for tokens in tokens_list:
        layer = attention_layer(tokens, dim, heads)
        fb, report = to_flashbias(layer_wrapper(layer), f"rank={rank}")
        unpadded, _ = to_flashbias(layer_wrapper(layer), f"rank={rank}", pad_value=False)
        forms = {"dense": layer_wrapper(layer), "flashbias": fb, "flashbias_v_unpadded": unpadded}
        files, sizes = {}, {}
        if device == "cpu":
            for name, module in forms.items():
                files[name] = export_onnx(module, work / f"{name}_{tokens}.onnx", (tokens, dim))
                import onnx

                cores = attention_cores(onnx.load(str(files[name])))
                sizes[name] = {"file_bytes": files[name].stat().st_size,
                               "attention_constant_bytes": sum(c["constant_bytes"] for c in cores)}
        for batch in batches:
            x = torch.randn(batch, tokens, dim)
            row = {"tokens": tokens, "batch": batch, "rank": rank, "qk_head_dim": report[0]["qk_head_dim"],
                   "max_bias_error": report[0]["max_abs_error"], "sizes": sizes}
            if device == "cpu":
                with torch.no_grad():
                    torch_fns = {k: (lambda m=m, x=x: m(x)) for k, m in forms.items()}
                    iters = _iters(torch_fns["dense"], budget_s)
                    row["torch_ms"] = medians(interleaved_rounds(torch_fns, rounds, iters))
                sessions = {k: ort_session(p, threads) for k, p in files.items()}
                feed = {"images": x.numpy()}
                ort_fns = {k: (lambda s=s, feed=feed: s.run(None, feed)) for k, s in sessions.items()}
                iters = _iters(ort_fns["dense"], budget_s)
                row["ort_ms"] = medians(interleaved_rounds(ort_fns, rounds, iters))
            else:
                row.update(_cuda_case(forms, x))
            for key in ("torch_ms", "ort_ms", "cuda_ms"):
                if key in row:
                    row[key.replace("_ms", "_ratio")] = {k: v / row[key]["dense"] for k, v in row[key].items()
                                                         if k != "dense"}
            rows.append(row)
            bar.update(1)
    bar.close()
    return rows


class _Layer(torch.nn.Module):
    """A model holding one attention as ``attn`` (to_flashbias replaces children, not the root)."""

    def __init__(self, attn: torch.nn.Module) -> None:
        super().__init__()
        self.attn = attn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.attn(x)


def layer_wrapper(layer: IBiTAttention) -> torch.nn.Module:
    return _Layer(layer).eval()


def _cuda_case(forms: dict, x: torch.Tensor) -> dict:  # pragma: no cover - needs a GPU (untested here)
    from torch.profiler import ProfilerActivity, profile

    out: dict = {"cuda_ms": {}, "sdpa_kernels": {}}
    x = x.cuda().half()
    mods = {k: m.cuda().half() for k, m in forms.items()}
    with torch.no_grad():
        for k, m in mods.items():
            with profile(activities=[ProfilerActivity.CUDA]) as prof:
                m(x)
                torch.cuda.synchronize()
            out["sdpa_kernels"][k] = sorted({e.key for e in prof.key_averages()
                                             if any(s in e.key.lower() for s in ("flash", "efficient", "fmha", "mem_eff",
                                                                                  "softmax", "bmm", "gemm"))})[:6]

        def run(m):
            m(x)
            torch.cuda.synchronize()

        times = interleaved_rounds({k: (lambda m=m: run(m)) for k, m in mods.items()}, 7, 20)
    out["cuda_ms"] = medians(times)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="trained bias-mode checkpoint for the quality part")
    parser.add_argument("--tokens", default="50,197,577,785,1025")
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--rank", type=int, default=16, help="FlashBias rank of the speed part (FlashBias's cap)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--budget", type=float, default=0.3, help="seconds per timed block (sets the iterations)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--json", type=Path, default=Path(__file__).parent / "results" / "flashbias.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict = {"threads": args.threads, "device": args.device}
    if args.checkpoint:
        result["quality"] = q = quality(args.checkpoint, args.json.with_suffix(".png"))
        for layer in q["layers"]:
            print(f"block {layer['layer']}: rank for energy {layer['rank_for_energy']}, "
                  f"energy at rank 16 {layer['energy_at_rank'].get(16)}")
        for row in q["policies"]:
            print(f"{row['policy']:>14}: ranks {row.get('ranks', '-')}, top-1 {row['top1']:.2f}, agreement "
                  f"{row['agreement']:.2f}%, max |bias err| {row.get('max_bias_error', 0):.3g}")
    tokens = [int(t) for t in args.tokens.split(",") if t]
    unknown = [t for t in tokens if t not in GRIDS]
    if unknown:
        parser.error(f"--tokens: {unknown} not in {sorted(GRIDS)}")
    if tokens:
        result["speed"] = rows = speed(tokens, [int(b) for b in args.batches.split(",")], args.rank, args.rounds,
                                       args.budget, args.threads, args.device)
        for row in rows:
            parts = [f"T={row['tokens']:>4} B={row['batch']:>2} qk_dim {row['qk_head_dim']}"]
            for key in ("torch", "ort", "cuda"):
                if f"{key}_ms" in row:
                    ms, ratio = row[f"{key}_ms"], row[f"{key}_ratio"]
                    parts.append(f"{key} dense {ms['dense']:.2f} ms, fb/dense {ratio['flashbias']:.2f}x "
                                 f"(v unpadded {ratio['flashbias_v_unpadded']:.2f}x)")
            if row["sizes"]:
                parts.append(f"attn const bytes dense {row['sizes']['dense']['attention_constant_bytes']} "
                             f"fb {row['sizes']['flashbias']['attention_constant_bytes']}")
            print(" | ".join(parts))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=2))
    print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
