"""Data efficiency on real MNIST (mnist5k): top-1 vs the fraction of training data, five models, equal budget.

Models (all the same transformer dims, 28x28 input, patch 4):
    vit           timm ViT (DeiT architecture)
    convit        timm ConViT (GPSA layers up to depth - 1)
    ibit          IBiT (learned low-rank attention masks)
    ibit_impulse  IBiT with impulse (structured) initialization of Q/K
    ibit_kd       IBiT student distilled (LIB-KD) from a ResNet-style CNN and an involution network, trained on the
                  same fraction with the same budget; their logits are stored once, un-augmented

Budget: the same number of optimizer steps for every model and fraction (as ConViT's sample-efficiency study scales
epochs by 1/fraction): epochs = ceil(steps / steps_per_epoch), and epochs are capped to ceil(steps / epochs) steps,
so every run takes ``--steps`` steps (+ at most epochs - 1). The val split (20% of mnist5k, 1,000 images, stratified)
is the same for every fraction; subsets are stratified fractions of the remaining 4,000.

    python benchmarks/data_efficiency.py --quick                 # ~15-20 min on 2 busy CPU cores
    python benchmarks/data_efficiency.py --steps 3000 --embed-dim 192 --depth 6 --num-heads 3

Writes benchmarks/results/data_efficiency.{json,md,png}.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import tempfile
import time
from pathlib import Path

from ibit_deploy.data import split_arrays
from ibit_deploy.models import matching_baseline_kwargs
from ibit_deploy.train import DistillConfig, TrainConfig, compute_teacher_logits, train

MODELS = ("vit", "convit", "ibit", "ibit_impulse", "ibit_kd")
IBIT = "ibit_tiny_patch4_28"
RESULTS = Path(__file__).with_name("results")


def model_spec(kind: str, arch: dict) -> tuple[str, dict]:
    """(model name, kwargs) of candidate ``kind`` with the transformer dims ``arch``."""
    if kind in ("ibit", "ibit_kd"):
        return IBIT, dict(arch)
    if kind == "ibit_impulse":
        return IBIT, {**arch, "init": "impulse"}
    base = matching_baseline_kwargs(IBIT, **arch)
    base = {k: v for k, v in base.items() if k in arch}  # img/chans/classes come from the data
    if kind == "vit":
        return "vit_tiny_patch16_224", {**base, "patch_size": 4}
    if kind == "convit":
        return "convit_tiny", {**base, "patch_size": 4, "local_up_to_layer": max(1, arch["depth"] - 1)}
    raise ValueError(f"unknown model {kind!r}; choose from {MODELS}")


def budget_epochs(n_train: int, batch: int, steps: int) -> tuple[int, int]:
    """(epochs, max steps per epoch) so that a run takes ``steps`` steps (the last partial batch is dropped)."""
    per_epoch = max(1, n_train // batch)
    epochs = math.ceil(steps / per_epoch)
    return epochs, math.ceil(steps / epochs)


def run_one(base: TrainConfig, model: str, kwargs: dict, out: Path, steps: int, fraction: float,
            distill: DistillConfig | None = None) -> dict:
    n_train = len(split_arrays(base.data, "train", base.val_fraction, base.seed, fraction)[1])
    epochs, cap = budget_epochs(n_train, base.batch_size, steps)
    config = dataclasses.replace(base, model=model, model_kwargs=kwargs, subset=fraction, epochs=epochs,
                                 max_steps_per_epoch=cap, warmup_epochs=0.1 * epochs, out=str(out),
                                 val_every=epochs, distill=distill)
    start = time.perf_counter()
    result = train(config)
    return {"val_acc1": result["val_acc1"], "val_loss": result["val_loss"], "steps": result["step"],
            "epochs": epochs, "n_train": n_train, "seconds": round(time.perf_counter() - start, 1)}


def run_all(args: argparse.Namespace) -> dict:
    arch = {"embed_dim": args.embed_dim, "depth": args.depth, "num_heads": args.num_heads}
    base = TrainConfig(data="mnist5k", batch_size=args.batch_size, lr=args.lr, weight_decay=0.05, min_lr=1e-5,
                       label_smoothing=0.1, randaugment_magnitude=args.randaugment, random_erasing=args.random_erasing,
                       num_workers=0, progress=False, seed=args.seed)
    work = Path(args.work or tempfile.mkdtemp(prefix="data_efficiency_"))
    runs: dict = {m: {} for m in args.models}
    for fraction in args.fractions:
        tag = f"f{int(round(fraction * 100)):03d}"
        if "ibit_kd" in args.models:
            teachers = []
            for name in ("resnet_small", "rednet_small"):
                out = work / tag / name
                teacher = dataclasses.replace(base, randaugment_magnitude=0, random_erasing=0.0)
                info = run_one(teacher, name, {"stem_stride": 2, "kernel_size": 5} if name == "rednet_small"
                               else {"stem_stride": 2}, out, args.teacher_steps, fraction)
                runs.setdefault(f"teacher_{name}", {})[fraction] = info
                teachers.append(out)
                print(f"[{tag}] teacher {name}: top-1 {info['val_acc1']:.2f}% ({info['seconds']} s)", flush=True)
            logits = compute_teacher_logits(teachers, work / tag / "teachers.npz", [0.5, 0.5])
        for kind in args.models:
            model, kwargs = model_spec(kind, arch)
            distill = (DistillConfig(logits=str(logits), alpha=args.alpha, tau=args.tau, kind=args.distill_type)
                       if kind == "ibit_kd" else None)
            info = run_one(base, model, kwargs, work / tag / kind, args.steps, fraction, distill)
            runs[kind][fraction] = info
            print(f"[{tag}] {kind}: top-1 {info['val_acc1']:.2f}% after {info['steps']} steps "
                  f"({info['epochs']} epochs of {info['n_train']} images, {info['seconds']} s)", flush=True)
    return {"setup": {**vars(args), "arch": arch, "recipe": base.to_dict(), "work": str(work)}, "runs": runs}


def load_result(path: Path) -> dict:
    """A saved data_efficiency.json with its fraction keys turned back into floats."""
    result = json.loads(Path(path).read_text())
    result["runs"] = {kind: {float(f): info for f, info in runs.items()} for kind, runs in result["runs"].items()}
    return result


def write_report(result: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "data_efficiency.json").write_text(json.dumps(result, indent=2, default=str))
    fractions = result["setup"]["fractions"]
    rows = [k for k in result["runs"] if result["runs"][k]]
    lines = ["| model | " + " | ".join(f"{f:.0%} ({result['runs'][rows[0]][f]['n_train']} img)" for f in fractions)
             + " |", "|---" * (len(fractions) + 1) + "|"]
    for kind in rows:
        cells = [f"{result['runs'][kind][f]['val_acc1']:.2f}" if f in result["runs"][kind] else "-" for f in fractions]
        lines.append(f"| {kind} | " + " | ".join(cells) + " |")
    (out_dir / "data_efficiency.md").write_text("val top-1 (%) on mnist5k, equal step budget\n\n" + "\n".join(lines)
                                                 + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4.5))
    for kind in rows:
        xs = [f for f in fractions if f in result["runs"][kind]]
        style = "--" if kind.startswith("teacher") else "-"
        ax.plot([100 * f for f in xs], [result["runs"][kind][f]["val_acc1"] for f in xs], style, marker="o", label=kind)
    ax.set(xscale="log", xlabel="% of mnist5k training split", ylabel="val top-1 (%)",
           title=f"data efficiency, {result['setup']['steps']} steps each")
    ax.set_xticks([100 * f for f in fractions], [f"{100 * f:g}" for f in fractions])
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    fig.savefig(out_dir / "data_efficiency.png", dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="dim 96, depth 4, 150 steps (teachers 100), no RandAugment/"
                                                        "erasing, 1 thread: ~15-20 min on 2 busy CPU cores")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    p.add_argument("--fractions", nargs="+", type=float, default=[0.1, 0.25, 0.5, 1.0])
    p.add_argument("--steps", type=int, help="optimizer steps per run, every model and fraction (default 2000, "
                                             "quick 300)")
    p.add_argument("--teacher-steps", type=int, help="steps per teacher (default: --steps; quick 100)")
    p.add_argument("--embed-dim", type=int, help="default 192, quick 96")
    p.add_argument("--depth", type=int, help="default 6, quick 4")
    p.add_argument("--num-heads", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--randaugment", type=int, help="RandAugment magnitude (default 9, quick 0)")
    p.add_argument("--random-erasing", type=float, help="default 0.25, quick 0")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--tau", type=float, default=1.0)
    p.add_argument("--distill-type", choices=("soft", "hard"), default="hard")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's; quick: 1, which beats 2 on a "
                                               "shared 2-core machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", help="where run checkpoints go (default: a temporary folder)")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--from-json", type=Path, help="only redraw the table and plot from a saved data_efficiency.json")
    args = p.parse_args(argv)
    if args.from_json:
        write_report(load_result(args.from_json), args.out)
        return 0
    # --quick: dims and budget for a 2-core CPU; light augmentation suits a few hundred steps. Flags given win.
    defaults = ({"embed_dim": 96, "depth": 4, "steps": 150, "teacher_steps": 100, "randaugment": 0,
                 "random_erasing": 0.0, "threads": 1} if args.quick else
                {"embed_dim": 192, "depth": 6, "steps": 2000, "randaugment": 9, "random_erasing": 0.25})
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    args.teacher_steps = args.teacher_steps or args.steps
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    write_report(run_all(args), args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
