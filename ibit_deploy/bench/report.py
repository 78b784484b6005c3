"""The benchmark report: ``report.json`` (schema below), ``report.md`` (one table), two PNG plots, a manifest summary.

``report.json``, schema_version 3 (every key is always present; null where it does not apply)::

    {
      "schema_version": 3,
      "tool": "ibit-bench",
      "status": "complete" | "incomplete" | "interrupted",   # incomplete: a run ended in "error", or nothing was timed
      "complete": bool,                                      # status == "complete"
      "created": "2026-11-21T21:00:00Z", "elapsed_s": float,
      "bundle": {"path", "model", "manifest_created", "source", "artifacts": [{"path", "kind", "precision", "sha256"}]},
      "machine": {"cpu", "cpu_count", "cpu_usable", "threads", "torch_threads", "gpu", "versions": {...}, ...},
      "options": {the BenchOptions fields, to reproduce the run},
      "data": {"spec", "split", "count", "val_fraction", "seed", "classes"},
      "reference": {"name", "fallback", "reason"},           # whose logits "agreement" and "logit diff" compare to
      "jetson": {"available", "reason", "model", "l4t", "nvpmodel", "power_mode", "jetson_clocks", "clocks_locked"},
      "runs": [{
          "name": "ort-cpu:fp32", "backend", "precision", "artifact",
          "status": "ok" | "skipped" | "error", "reason": str | null,
          "runner": {runner.describe()} | null,
          "accuracy": {"count", "top1", "top5", "top5_k", "agreement", "max_abs_diff",
                       "mean_abs_diff", "cosine", "per_class": {class: {"count", "top1"}}} | null,
          "latency": [{"batch", "status": "ok", "n", "mean_ms", "std_ms", "min_ms", "max_ms", "p50_ms", "p90_ms",
                       "p99_ms", "images_per_s", "threads", "device": {"compute_ms"|"h2d_ms"|"d2h_ms": stats} | null,
                       "power": {tegrastats summary} | null}
                      | {"batch", "status": "skipped", "reason"}],
          "speedup_vs_reference": {"<batch>": reference p50 / this p50},
          "trtexec": [{"batch", "status", ...run_trtexec result or "reason"}] | null
      }],
      "end_to_end": null | {                                 # --end-to-end DIR (see end_to_end.py)
          "images": {"dir", "count", "formats": {"png": n, "jpeg": n}, "sizes": {"28x28": n}},
          "stages": ["read", "decode", "preprocess", "h2d", "inference", "d2h", "postprocess"],
          "batches": [1, ...],                               # batch 1 and the --batches
          "runners": {"python:ort-cpu:fp32": {               # runtime:backend:precision (C++ runners: "cpp:...")
              "runtime", "backend", "precision", "artifact", "status": "ok" | "skipped" | "error", "reason",
              "batches": [{"batch", "status": "ok", "n",
                           "stages": {stage: {"n", "mean_ms", "p50_ms", "p99_ms", "applicable", "note"}},
                           "end_to_end": {"n", "mean_ms", "p50_ms", "p99_ms"}, "images_per_s",
                           "outside_inference_share"}    # 1 - mean inference / mean end to end
                          | {"batch", "status": "skipped", "reason"}]}}},   # not applicable: null ms, a note
      "files": {"markdown": "report.md", "plots": ["latency_vs_batch.png", ...]},
      "manifest_update": {"updated": bool, "reason": str | null}
    }

Latency is host wall time of a synchronous ``infer`` (see ``ibit_deploy.bench.latency``); ``device`` holds CUDA-event
GPU timings where the runner offers them. Any change to these keys must bump ``SCHEMA_VERSION`` (a test pins it).
Files are written atomically; ``report.json`` last, so a report.json on disk always describes a finished run.
"""

from __future__ import annotations

import hashlib
import io
import json
import warnings
from pathlib import Path
from typing import Any

from ..devicekit.fileio import atomic_path, atomic_write_json, atomic_write_text
from ..outputs import BENCH_REPORT_FILE
from .end_to_end_report import PLOT as END_TO_END_PLOT
from .end_to_end_report import markdown_lines as end_to_end_lines
from .end_to_end_report import write_plot as write_end_to_end_plot

SCHEMA_VERSION = 3  # 2: accuracy keys named as in devicekit.agreement (agreement, max_abs_diff, ...); 3: end_to_end
REPORT_FILE = BENCH_REPORT_FILE  # with "tool": BENCH_TOOL, what the write policy recognises a report folder by
MARKDOWN_FILE = "report.md"
LATENCY_PLOT = "latency_vs_batch.png"
ACCURACY_PLOT = "accuracy_vs_latency.png"
OWNED_FILES = (REPORT_FILE, MARKDOWN_FILE, LATENCY_PLOT, ACCURACY_PLOT, END_TO_END_PLOT)

SCHEMA: dict[str, tuple[str, ...]] = {
    "report": ("schema_version", "tool", "status", "complete", "created", "elapsed_s", "bundle", "machine",
               "options", "data", "reference", "jetson", "runs", "end_to_end", "files", "manifest_update"),
    "bundle": ("path", "model", "manifest_created", "source", "artifacts"),
    "data": ("spec", "split", "count", "val_fraction", "seed", "classes"),
    "reference": ("name", "fallback", "reason"),
    "jetson": ("available", "reason", "model", "l4t", "nvpmodel", "power_mode", "jetson_clocks", "clocks_locked"),
    "run": ("name", "backend", "precision", "artifact", "status", "reason", "runner", "accuracy", "latency",
            "speedup_vs_reference", "trtexec"),
    "accuracy": ("count", "top1", "top5", "top5_k", "agreement", "max_abs_diff", "mean_abs_diff",
                 "cosine", "per_class"),
    "latency_ok": ("batch", "status", "n", "mean_ms", "std_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p99_ms",
                   "images_per_s", "threads", "device", "power"),
    "latency_skipped": ("batch", "status", "reason"),
    "end_to_end": ("images", "stages", "batches", "runners"),
    "e2e_images": ("dir", "count", "formats", "sizes"),
    "e2e_runner": ("runtime", "backend", "precision", "artifact", "status", "reason", "batches"),
    "e2e_batch_ok": ("batch", "status", "n", "stages", "end_to_end", "images_per_s", "outside_inference_share"),
    "e2e_stage": ("n", "mean_ms", "p50_ms", "p99_ms", "applicable", "note"),
    "e2e_total": ("n", "mean_ms", "p50_ms", "p99_ms"),
    "files": ("markdown", "plots"),
    "manifest_update": ("updated", "reason"),
}


def schema_fingerprint() -> str:
    """A short hash of :data:`SCHEMA`: tests pin it together with SCHEMA_VERSION."""
    return hashlib.sha256(json.dumps(SCHEMA, sort_keys=True).encode()).hexdigest()[:16]


def check_report(report: dict[str, Any]) -> None:
    """Raise ValueError naming the section and keys where ``report`` differs from :data:`SCHEMA`."""
    def same(section: str, obj: Any, where: str) -> None:
        if not isinstance(obj, dict):
            raise ValueError(f"report {where}: expected an object, got {type(obj).__name__}")
        missing, extra = set(SCHEMA[section]) - set(obj), set(obj) - set(SCHEMA[section])
        if missing or extra:
            raise ValueError(f"report {where}: missing keys {sorted(missing)}, unexpected keys {sorted(extra)} "
                             f"(schema_version {SCHEMA_VERSION})")

    same("report", report, "top level")
    for section in ("bundle", "data", "reference", "jetson", "files", "manifest_update"):
        same(section, report[section], section)
    for run in report["runs"]:
        same("run", run, f"run {run.get('name')!r}")
        if run["accuracy"] is not None:
            same("accuracy", run["accuracy"], f"run {run['name']!r} accuracy")
        for entry in run["latency"]:
            same("latency_ok" if entry.get("status") == "ok" else "latency_skipped", entry,
                 f"run {run['name']!r} latency batch {entry.get('batch')}")
    if report["end_to_end"] is not None:
        _check_end_to_end(report["end_to_end"], same)


def _check_end_to_end(section: dict[str, Any], same: Any) -> None:
    """The end-to-end section against :data:`SCHEMA` (``same(section_name, obj, where)`` raises)."""
    same("end_to_end", section, "end_to_end")
    same("e2e_images", section["images"], "end_to_end images")
    for name, row in section["runners"].items():
        same("e2e_runner", row, f"end_to_end runner {name!r}")
        for entry in row["batches"]:
            where = f"end_to_end runner {name!r} batch {entry.get('batch')}"
            if entry.get("status") != "ok":
                same("latency_skipped", entry, where)
                continue
            same("e2e_batch_ok", entry, where)
            same("e2e_total", entry["end_to_end"], f"{where} end_to_end")
            if set(entry["stages"]) != set(section["stages"]):
                raise ValueError(f"report {where}: stages {sorted(entry['stages'])}, expected {section['stages']}")
            for stage, stats in entry["stages"].items():
                same("e2e_stage", stats, f"{where} stage {stage!r}")


def latency_at(run: dict[str, Any], batch: int) -> dict[str, Any] | None:
    """The run's ok latency entry at ``batch``, or None."""
    return next((e for e in run.get("latency", []) if e["batch"] == batch and e["status"] == "ok"), None)


def markdown_table(report: dict[str, Any]) -> str:
    """The report as Markdown: a header, one table row per run, and the reasons for skipped or failed runs."""
    batches: list[int] = list(report["options"]["batches"])
    ref = report["reference"]["name"] or "reference"
    head = ["artifact", "backend", "precision", "top-1", "agreement", "max \\|Δlogit\\|",
            *[f"p50 ms @{b}" for b in batches], "img/s (largest batch)", f"× vs {ref}"]
    lines = [f"# ibit-bench: {report['bundle']['model']}", "",
             f"- bundle: `{report['bundle']['path']}`; status: **{report['status']}**; {report['created']}",
             f"- data: {report['data']['spec']} / {report['data']['split']}, {report['data']['count']} images; "
             f"reference: {report['reference']['name'] or 'none'}"
             + (f" ({report['reference']['reason']})" if report["reference"]["reason"] else ""),
             f"- machine: {report['machine'].get('cpu')}, {report['machine'].get('cpu_usable')} usable cores, "
             f"threads {report['machine'].get('threads') or 'default'}, GPU {report['machine'].get('gpu') or 'none'}",
             "- latency: host wall time of one synchronous infer call (copies included on GPUs), median of the "
             "timed calls; (gpu ...) is CUDA-event GPU compute time where the backend reports it",
             f"- × vs {ref}: its p50 over this p50 at the largest batch both measured (> 1 is faster)", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    notes = []
    for run in report["runs"]:
        acc = run["accuracy"] or {}
        cells = [run["artifact"] or "—", run["backend"], run["precision"]]
        if run["status"] != "ok":
            notes.append(f"- **{run['name']}** {run['status']}: {_cell(run['reason'])}")
            lines.append("| " + " | ".join(cells + [run["status"]] + [""] * (len(head) - 4)) + " |")
            continue
        cells += [_pct(acc.get("top1")), _pct(acc.get("agreement")), _sci(acc.get("max_abs_diff"))]
        for b in batches:
            entry = latency_at(run, b)
            cell = "—" if entry is None else f"{entry['p50_ms']:.3g}"
            if entry is not None and entry.get("device"):
                cell += f" (gpu {entry['device']['compute_ms']['p50_ms']:.3g})"
            cells.append(cell)
        measured = [e for e in run["latency"] if e["status"] == "ok"]
        cells.append(f"{measured[-1]['images_per_s']:.4g} @{measured[-1]['batch']}" if measured else "—")
        common = [int(b) for b in run["speedup_vs_reference"]]
        cells.append(f"{run['speedup_vs_reference'][str(max(common))]:.2f}× @{max(common)}" if common else "—")
        notes += [f"- {run['name']} batch {e['batch']} skipped: {_cell(e['reason'])}" for e in run["latency"]
                  if e["status"] != "ok"]
        lines.append("| " + " | ".join(cells) + " |")
    if notes:
        lines += ["", "Not measured:", *notes]
    lines += _power_lines(report) + _trtexec_lines(report) + end_to_end_lines(report.get("end_to_end"))
    return "\n".join(lines) + "\n"


def _power_lines(report: dict[str, Any]) -> list[str]:
    """Jetson power per run and batch, where tegrastats was sampled."""
    rows = [f"| {run['name']} | {e['batch']} | {e['power']['mean_power_mW']:.0f} | "
            f"{e['power']['energy_per_image_mJ']:.3g} | {e['power']['total_source']} |"
            for run in report["runs"] for e in run["latency"]
            if e["status"] == "ok" and e.get("power") and e["power"].get("mean_power_mW") is not None]
    if not rows:
        return []
    mode = (report["jetson"].get("power_mode") or {}).get("name")
    return ["", f"Power (tegrastats, power mode {mode or 'unknown'}, clocks locked: "
                f"{report['jetson'].get('clocks_locked')}):", "",
            "| backend | batch | mean mW | mJ / image | total from |", "|---|---|---|---|---|", *rows]


def _trtexec_lines(report: dict[str, Any]) -> list[str]:
    """trtexec's own GPU compute and latency medians, where it ran."""
    rows = []
    for run in report["runs"]:
        for t in run.get("trtexec") or []:
            if t.get("status") == "ok":
                metrics = t["summary"]["metrics"]
                gpu, lat = metrics.get("gpu_compute", {}), metrics.get("latency", {})
                rows.append(f"| {run['name']} | {t['batch']} | {gpu.get('p50_ms', gpu.get('median_ms'))} | "
                            f"{lat.get('p50_ms', lat.get('median_ms'))} | {t['summary'].get('throughput_qps')} |")
            else:
                rows.append(f"| {run['name']} | {t.get('batch')} | {t.get('status')}: {_cell(t.get('reason'))} | | |")
    if not rows:
        return []
    return ["", "trtexec (CUDA graph, no data transfers, spin wait):", "",
            "| engine | batch | GPU compute p50 ms | latency p50 ms | qps |", "|---|---|---|---|---|", *rows]


def write_plots(report: dict[str, Any], out_dir: Path) -> list[str]:
    """Latency vs batch size per run, and top-1 vs p50 latency at the smallest batch; returns the file names."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and Jetsons
    import matplotlib.pyplot as plt

    runs = [r for r in report["runs"] if r["status"] == "ok"]
    if not runs:
        return []
    written = []
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for run in runs:
        points = [(e["batch"], e["p50_ms"]) for e in run["latency"] if e["status"] == "ok"]
        if points:
            ax.plot(*zip(*points, strict=True), marker="o", label=run["name"])
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="p50 latency (ms)",
           title="Latency vs batch size (host wall time)")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    written.append(_save(fig, out_dir / LATENCY_PLOT))
    plt.close(fig)

    small = min(report["options"]["batches"])
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for run in runs:
        entry = latency_at(run, small)
        if entry is not None and run["accuracy"] is not None:
            ax.scatter(entry["p50_ms"], 100 * run["accuracy"]["top1"])
            ax.annotate(run["name"], (entry["p50_ms"], 100 * run["accuracy"]["top1"]), fontsize=8,
                        xytext=(4, 4), textcoords="offset points")
    ax.set(xlabel=f"p50 latency at batch {small} (ms)", ylabel="top-1 (%)", title="Accuracy vs latency")
    ax.grid(True, alpha=0.3)
    written.append(_save(fig, out_dir / ACCURACY_PLOT))
    plt.close(fig)
    stages_plot = write_end_to_end_plot(report.get("end_to_end"), out_dir, _save)
    return written + ([stages_plot] if stages_plot else [])


def manifest_summary(report: dict[str, Any], report_path: Path) -> list[dict[str, Any]]:
    """Compact entries for the bundle manifest's ``results``: one per run that was measured."""
    machine = report["machine"]
    versions = machine.get("versions", {})
    power_mode = (report["jetson"].get("power_mode") or {}).get("name")
    brief_machine = {"cpu": machine.get("cpu"), "cpu_count": machine.get("cpu_count"),
                     "threads": machine.get("threads") or machine.get("torch_threads"), "gpu": machine.get("gpu"),
                     "onnxruntime": versions.get("onnxruntime"), "torch": versions.get("torch"),
                     "tensorrt": versions.get("tensorrt"), "jetson_power_mode": power_mode}
    entries = []
    for run in report["runs"]:
        if run["status"] != "ok":
            continue
        acc = run["accuracy"] or {}
        entries.append({
            "kind": "bench", "created": report["created"], "report": str(report_path), "complete": report["complete"],
            "artifact": run["artifact"], "backend": run["backend"], "precision": run["precision"],
            "accuracy": {"data": f"{report['data']['spec']}/{report['data']['split']}", "count": acc.get("count"),
                         "top1": acc.get("top1"), "agreement": acc.get("agreement"),
                         "max_abs_diff": acc.get("max_abs_diff"),
                         "reference": report["reference"]["name"]},
            "latency": {str(e["batch"]): {"p50_ms": e["p50_ms"], "p99_ms": e["p99_ms"],
                                          "images_per_s": e["images_per_s"]}
                        for e in run["latency"] if e["status"] == "ok"},
            "machine": brief_machine,
        })
    return entries


def write_report_files(report: dict[str, Any], out_dir: Path) -> None:
    """Plots, then Markdown, then ``report.json`` last (each atomically); fills ``report['files']``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        report["files"]["plots"] = write_plots(report, out_dir)
    except ImportError as exc:  # matplotlib is not part of a device install; every number is in report.json/.md
        warnings.warn(f"no plots: {exc}", stacklevel=2)
        report["files"]["plots"] = []
    atomic_write_text(out_dir / MARKDOWN_FILE, markdown_table(report))
    report["files"]["markdown"] = MARKDOWN_FILE
    check_report(report)
    atomic_write_json(out_dir / REPORT_FILE, report)


def _save(fig: Any, path: Path) -> str:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
    return path.name


def _cell(text: Any) -> str:
    """Text made safe for one Markdown table cell or list line (multi-line errors, pipes)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _pct(value: float | None) -> str:
    return "—" if value is None else f"{100 * value:.2f}%"


def _sci(value: float | None) -> str:
    return "—" if value is None else f"{value:.2e}"
