"""Training throughput: IBiT vs a timm ViT of equal dims (and optionally ConViT), images/s of full training steps.

One step = forward, cross-entropy, backward, AdamW step, on a fixed random batch (no data loading: this measures the
model). Candidates run in interleaved rounds (IBiT, ViT, ..., then again) so load from other processes hits them
alike; each round's rate is images / wall time of ``--steps`` steps after warm-up, and the reported figure is the
median over rounds. The IBiT/ViT ratio is computed per round and its median reported (target: >= 0.9).

    python benchmarks/train_throughput.py --model ibit_tiny_patch4_28 --batch-size 64 --rounds 7
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time

import torch
import torch.nn.functional as F

from ibit_deploy.models import create_model, matching_baseline_kwargs

ARCH = ("embed_dim", "depth", "num_heads")


def build(kind: str, ibit_name: str, arch: dict) -> torch.nn.Module:
    """The candidate ``kind`` with the architecture of ``ibit_name`` (overridden by ``arch``)."""
    if kind == "ibit":
        return create_model(ibit_name, **arch)
    if kind == "ibit_bias":
        return create_model(ibit_name, attn_mode="bias", **arch)
    kwargs = matching_baseline_kwargs(ibit_name, **arch)
    if kind == "vit":
        return create_model("vit_tiny_patch16_224", **kwargs)
    if kind == "convit":
        return create_model("convit_tiny", **kwargs)
    raise ValueError(f"unknown candidate {kind!r}; choose from ibit, ibit_bias, vit, convit")


class Stepper:
    """Holds one model, its optimizer and a fixed batch; ``run(n)`` times n training steps."""

    def __init__(self, model: torch.nn.Module, batch: int, device: torch.device) -> None:
        self.model = model.to(device).train()
        chans, height, width = model.pretrained_cfg["input_size"]
        self.x = torch.randn(batch, chans, height, width, device=device)
        self.y = torch.randint(0, model.num_classes, (batch,), device=device)
        self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        self.device = device

    def step(self) -> None:
        loss = F.cross_entropy(self.model(self.x), self.y)
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()

    def run(self, steps: int) -> float:
        """images/s over ``steps`` steps (synchronised on CUDA)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        start = time.perf_counter()
        for _ in range(steps):
            self.step()
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        return steps * self.x.shape[0] / (time.perf_counter() - start)


def measure(kinds: list[str], ibit_name: str, arch: dict, batch: int, warmup: int, steps: int, rounds: int,
            device: torch.device) -> dict:
    """Interleaved rounds over ``kinds``; returns per-candidate rates, medians and the per-round IBiT/ViT ratios."""
    steppers = {}
    for kind in kinds:
        torch.manual_seed(0)
        steppers[kind] = Stepper(build(kind, ibit_name, arch), batch, device)
        steppers[kind].run(warmup)
    rates: dict[str, list[float]] = {k: [] for k in kinds}
    for _ in range(rounds):
        for kind in kinds:
            rates[kind].append(steppers[kind].run(steps))
    result = {"rates": rates, "median": {k: statistics.median(v) for k, v in rates.items()},
              "params": {k: sum(p.numel() for p in s.model.parameters()) for k, s in steppers.items()}}
    if "ibit" in kinds and "vit" in kinds:
        ratios = [a / b for a, b in zip(rates["ibit"], rates["vit"], strict=True)]
        result["ibit_over_vit"] = {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios)}
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="ibit_tiny_patch4_28", help="IBiT variant whose dims every candidate uses")
    p.add_argument("--embed-dim", type=int)
    p.add_argument("--depth", type=int)
    p.add_argument("--num-heads", type=int)
    p.add_argument("--candidates", nargs="+", default=["ibit", "vit"], help="ibit, ibit_bias, vit, convit")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--steps", type=int, default=5, help="timed steps per round")
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", help="also write the full result here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    arch = {k: v for k, v in zip(ARCH, (args.embed_dim, args.depth, args.num_heads), strict=True) if v is not None}
    result = measure(args.candidates, args.model, arch, args.batch_size, args.warmup, args.steps, args.rounds,
                     torch.device(args.device))
    result["setup"] = {"model": args.model, "arch": arch, "batch_size": args.batch_size, "steps": args.steps,
                       "rounds": args.rounds, "threads": torch.get_num_threads(), "device": args.device,
                       "torch": torch.__version__, "cpu": platform.processor() or platform.machine()}
    print(f"{'candidate':<10} {'params':>10} {'img/s (median)':>15}  per round")
    for kind in args.candidates:
        rounds = " ".join(f"{r:.0f}" for r in result["rates"][kind])
        print(f"{kind:<10} {result['params'][kind]:>10,} {result['median'][kind]:>15.1f}  {rounds}")
    if "ibit_over_vit" in result:
        r = result["ibit_over_vit"]
        print(f"IBiT / ViT throughput: {r['median']:.3f}x (median of per-round ratios; range {r['min']:.3f}-"
              f"{r['max']:.3f}; target >= 0.9)")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
