"""The report's figures (matplotlib, Agg): top-1 vs fraction, top-1 vs latency with the Pareto front, curves.

The records hold accuracies as fractions (:mod:`.records`); the figures show percent."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..devicekit.fileio import atomic_path
from .records import as_points


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)


def fraction_series(top1: dict[float, dict[str, float]], fractions: list[float]
                    ) -> tuple[list[float], list[float], list[float]]:
    """x, mean and std per fraction, all in percent (``top1`` holds fractions); NaN where a fraction has no runs, so
    the line breaks there instead of joining its neighbours straight across a point that was never measured."""
    nan = float("nan")
    xs = [as_points(f) for f in fractions]
    means = [as_points(top1[f]["mean"]) if f in top1 else nan for f in fractions]
    stds = [as_points(top1[f]["std"]) if f in top1 else nan for f in fractions]
    return xs, means, stds


def plot_fraction(table: dict[str, Any], fractions: list[float], seeds: int, path: Path) -> None:
    """Top-1 (mean, error bar = std over seeds) against the fraction of the training split, one line per model."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(9, 5))
    for name, row in table.items():
        if not any(f in row["top1"] for f in fractions):
            continue
        xs, means, stds = fraction_series(row["top1"], fractions)
        ax.errorbar(xs, means, yerr=stds, marker="o", capsize=3,
                    linestyle="--" if row["role"] == "teacher" else "-",
                    label=name if row["role"] == "candidate" else f"{name} (teacher)")
    ax.set(xscale="log", xlabel="% of the training split", ylabel="held-out top-1 (%)",
           title=f"top-1 vs data, mean ± std over up to {seeds} seeds")
    ax.set_xticks([100 * f for f in fractions], [f"{100 * f:g}" for f in fractions])
    ax.minorticks_off()  # the log axis would otherwise label its own minor ticks (2x10^1, ...) beside ours
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_pareto(table: dict[str, Any], points: dict[str, tuple[float, float]], front: list[str], fraction: float,
                backend: str, path: Path) -> None:
    """Top-1 at ``fraction`` against batch-1 latency; the Pareto front (faster or better than all others) joined."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    for name, (lat, fraction_acc) in points.items():
        acc, std = as_points(fraction_acc), as_points(table[name]["top1"][fraction]["std"])
        on = name in front
        ax.errorbar([lat], [acc], yerr=[std], marker="*" if on else "o", markersize=12 if on else 7, capsize=3,
                    label=f"{name}{' (Pareto)' if on else ''}")
        ax.annotate(name, (lat, acc), textcoords="offset points", xytext=(6, 4), fontsize=8)
    if len(front) > 1:
        ax.step([points[n][0] for n in front], [as_points(points[n][1]) for n in front], where="post", color="k", alpha=0.5,
                linewidth=1, label="Pareto front")
    ax.set(xlabel=f"latency, batch 1, p50 (ms) on {backend}", ylabel=f"held-out top-1 at {fraction:.0%} of data (%)",
           title="accuracy vs latency")
    ax.margins(x=0.12)  # room for the labels of the rightmost points
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="center left", bbox_to_anchor=(1.01, 0.5))
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def plot_curves(results: list[dict[str, Any]], path: Path) -> None:
    """Held-out top-1 per step of every finished seed-0 run (one panel per fraction): what "converged" looks at."""
    plt = _pyplot()
    runs = [r for r in results if r["seed"] == min(x["seed"] for x in results)]
    fractions = sorted({r["fraction"] for r in runs})
    fig, axes = plt.subplots(1, len(fractions), figsize=(4.5 * len(fractions), 4), squeeze=False)
    for ax, f in zip(axes[0], fractions, strict=True):
        for r in sorted((r for r in runs if r["fraction"] == f), key=lambda r: r["name"]):
            pts = [(c["step"], as_points(c["val_acc1"])) for c in r["curve"] if c.get("val_acc1") is not None]
            if pts:
                ax.plot(*zip(*pts, strict=True), label=r["name"], linewidth=1)
        start = 0.9 * max(r["steps"] for r in runs if r["fraction"] == f)
        ax.axvspan(start, start / 0.9, color="grey", alpha=0.15)
        ax.set(title=f"{f:.0%} of data, seed {runs[0]['seed']}", xlabel="step", ylabel="held-out top-1 (%)")
        ax.grid(alpha=0.3)
        lo = min((as_points(c["val_acc1"]) for r in runs if r["fraction"] == f for c in r["curve"]
                  if c.get("val_acc1") is not None), default=0)
        ax.set_ylim(max(0.0, lo - 2), 100)
    axes[0][-1].legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)
