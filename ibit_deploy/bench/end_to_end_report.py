"""The end-to-end section of the bench report as text and as a plot: a Markdown table (one row per runner and batch
size, p50 / p99 per stage) and ``end_to_end_stages.png`` (stacked bars of the stages' p50, one panel per batch)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

PLOT = "end_to_end_stages.png"
NOT_APPLICABLE = "n/a"


def markdown_lines(section: dict[str, Any] | None) -> list[str]:
    """The section as Markdown lines (none when the run had no ``--end-to-end``)."""
    if section is None:
        return []
    images = section["images"]
    formats = ", ".join(f"{n} {fmt.upper()}" for fmt, n in images["formats"].items())
    stages = section["stages"]
    lines = ["", f"End to end (image file -> label; {images['count']} files in `{images['dir']}`: {formats}), "
                 "p50 / p99 ms per batch; n/a: the backend has no such stage (not zero):", "",
             "| runner | batch | " + " | ".join(stages) + " | end to end | img/s | outside inference |",
             "|" + "---|" * (len(stages) + 5)]
    notes = []
    for name, row in section["runners"].items():
        if row["status"] != "ok":
            notes.append(f"- **{name}** {row['status']}: {_one_line(row['reason'])}")
            continue
        for entry in row["batches"]:
            if entry["status"] != "ok":
                notes.append(f"- {name} batch {entry['batch']} skipped: {_one_line(entry['reason'])}")
                continue
            cells = [_pair(entry["stages"][s]) for s in stages]
            share = entry["outside_inference_share"]
            lines.append(f"| {name} | {entry['batch']} | " + " | ".join(cells) + f" | {_pair(entry['end_to_end'])} "
                         f"| {entry['images_per_s']:.4g} | {'—' if share is None else f'{100 * share:.0f}%'} |")
    reasons = sorted({e["stages"][s]["note"] for r in section["runners"].values() if r["status"] == "ok"
                      for e in r["batches"] if e["status"] == "ok" for s in stages
                      if not e["stages"][s]["applicable"]})
    if reasons:
        lines += ["", *[f"- n/a: {_one_line(reason)}" for reason in reasons]]
    if notes:
        lines += ["", "Not measured end to end:", *notes]
    return lines


def write_plot(section: dict[str, Any] | None, out_dir: Path, save: Any) -> str | None:
    """Stacked bars of every stage's p50 (ms per batch) per runner, one panel per batch size, the measured
    end-to-end p50 marked on each bar; ``save(fig, path)`` writes it. None when nothing was measured."""
    if section is None:
        return None
    measured = {(name, e["batch"]): e for name, row in section["runners"].items() if row["status"] == "ok"
                for e in row["batches"] if e["status"] == "ok"}
    if not measured:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    batches = [b for b in section["batches"] if any(k[1] == b for k in measured)]
    names = list(dict.fromkeys(k[0] for k in measured))
    fig, axes = plt.subplots(1, len(batches), figsize=(1.2 + 2.2 * len(batches) + 0.5 * len(names), 4.4),
                             squeeze=False)
    colours = plt.get_cmap("tab10").colors
    for ax, batch in zip(axes[0], batches, strict=True):
        for x, name in enumerate(names):
            entry = measured.get((name, batch))
            if entry is None:
                continue
            bottom = 0.0
            for i, stage in enumerate(section["stages"]):
                value = entry["stages"][stage]["p50_ms"]
                if value is not None:
                    ax.bar(x, value, bottom=bottom, color=colours[i % len(colours)],
                           label=stage if x == 0 else None)
                    bottom += value
            ax.plot(x, entry["end_to_end"]["p50_ms"], marker="_", color="black", markersize=18, mew=2,
                    label="end to end p50" if x == 0 else None)
        ax.set_xticks(range(len(names)), names, rotation=30, ha="right", fontsize=8)
        ax.set(title=f"batch {batch}", ylabel="p50 ms per batch" if batch == batches[0] else None)
        ax.grid(True, axis="y", alpha=0.3)
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    fig.suptitle("Image file -> label, by stage (n/a stages absent)", fontsize=10)
    fig.tight_layout()
    name = save(fig, out_dir / PLOT)
    plt.close(fig)
    return name


def _pair(stats: dict[str, Any]) -> str:
    if stats.get("p50_ms") is None:
        return NOT_APPLICABLE
    return f"{stats['p50_ms']:.3g} / {stats['p99_ms']:.3g}"


def _one_line(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")
