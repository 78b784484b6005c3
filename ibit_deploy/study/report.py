"""The study's report: every finished run, top-1 mean +- std over seeds, the targets, and a recommendation.

Written to ``OUT/report/``: ``compare.json`` (every run), ``compare.md`` (tables, targets, recommendation),
``top1_vs_fraction.png``, ``top1_vs_latency.png`` (Pareto front marked; only when some candidate has a batch-1
latency) and ``curves.png`` (convergence). A report of an unfinished study says how many of the planned runs it covers;
cells with fewer seeds than planned say so. A report shows what was measured and nothing else: one latency column per
batch size some run was timed at.

Writing a report only reads the study (:func:`write_report` with ``latency_rounds=0``): it writes nothing but the
report's files. Re-timing is its own step (:func:`retime`): it times one bundle per candidate side by side (building
latency stand-ins where needed) and keeps the measurement in ``OUT/latency_side_by_side.json``, which later reports
use. Accuracies are fractions in every record (:mod:`.records`); the Markdown and the plots show percent.
"""

from __future__ import annotations

import math
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

from ..devicekit.fileio import atomic_write_json, atomic_write_text, read_json
from ..outputs import check_report_folder
from . import layout
from .convergence import ACC_TOLERANCE, LOSS_TOLERANCE, WINDOW
from .latency_standins import STANDIN_STEPS, standin_bundle
from .plan import SAMPLE_EFFICIENCY_FRACTION
from .provenance import machines_line, ray_node_lines, restored_teachers_lines
from .records import FRACTION, UNIT_KEY, as_points, at_least
from .worker import checked_spec, finished_result

DEFAULT_MARGIN_POINTS = 0.5  # top-1 percentage points (the command line's unit): "as good as the best"
LATENCY_BATCH = "1"  # the Pareto plot and the recommendation use batch-1 latency
IBIT, VIT, CONVIT, CNN = "ibit", "vit", "convit", "resnet"
DISPLAY = {IBIT: "IBiT", VIT: "ViT", CONVIT: "ConViT", CNN: "the CNN"}


def load_study(out: str | os.PathLike) -> dict[str, Any]:
    """The study's recipe, planned run ids and the results of the runs finished under the current plan."""
    out = Path(out)
    path = out / layout.STUDY_FILE
    study = read_json(path, "study file")
    runs = study.get("runs") if isinstance(study, dict) else None
    if not isinstance(runs, list) or not all(isinstance(r, str) and layout.valid_run_id(r) for r in runs):
        raise ValueError(f"{path} is not a valid study file: expected a JSON object with 'runs', a list of run ids")
    results = []
    for run_id in runs:
        directory = layout.run_dir(out, run_id)
        spec_path = directory / layout.RUN_FILE
        if not spec_path.is_file():
            continue
        result = finished_result(directory, checked_spec(read_json(spec_path, "run spec"), spec_path)["digest"])
        if result is not None:
            results.append(result)
    return {**study, "results": results}


def _stats(values: list[float], seeds: list[int] | None = None) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    out = {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)) if len(arr) > 1 else 0.0, "n": int(len(arr)),
           "values": [float(v) for v in arr]}
    if seeds is not None:
        out["seeds"] = [int(s) for s in seeds]
    return out


def paired(a: dict[str, Any] | None, b: dict[str, Any] | None) -> dict[str, Any] | None:
    """``a`` - ``b`` seed by seed over the seeds both have: a seed fixes the held-out images (whatever the fraction),
    so the paired difference removes the split-to-split spread that the two means' stds both carry."""
    if not a or not b or "seeds" not in a or "seeds" not in b:
        return None
    other = dict(zip(b["seeds"], b["values"], strict=True))
    diffs = [va - other[s] for s, va in zip(a["seeds"], a["values"], strict=True) if s in other]
    if not diffs:
        return None
    return {**_stats(diffs), "wins": sum(at_least(d, 0.0) for d in diffs)}


def _seedwise(goal: dict[str, Any]) -> str:
    """For a target met on the means: whether it also holds seed by seed (the paired comparisons)."""
    pairs = [r["paired"] for r in goal.get("per_fraction", [goal]) if r.get("paired")]
    if goal["met"] is not True or not pairs:
        return ""
    wins, total = sum(d["wins"] for d in pairs), sum(d["n"] for d in pairs)
    return " on every seed" if wins == total else f" on the mean, not on every seed ({wins}/{total} paired)"


def _paired_text(diff: dict[str, Any] | None, name: str, other: str) -> str:
    if not diff:
        return ""
    return (f"; paired by seed {as_points(diff['mean']):+.2f} ± {as_points(diff['std']):.2f}, {name} >= {other} on "
            f"{diff['wins']}/"
            f"{diff['n']} seeds")


def latency_ms(result: dict[str, Any], batch: str = LATENCY_BATCH) -> float | None:
    """Median (p50) latency of one run at ``batch``, or None when it was not measured."""
    stats = (result.get("latency", {}).get("batches") or {}).get(batch)
    return float(stats["p50_ms"]) if stats else None


def aggregate(study: dict[str, Any]) -> dict[str, Any]:
    """Per candidate: top-1 stats per fraction, latency (median of its runs' p50s), params, cost, convergence."""
    seeds = len(study["seeds"])
    table: dict[str, Any] = {}
    # the role is the study's, not the run's: a resnet run planned as a teacher becomes a candidate once listed
    wanted = set(study["candidates"])
    for role in ("candidate", "teacher"):
        for r in (x for x in study["results"] if (x["name"] in wanted) == (role == "candidate")):
            row = table.setdefault(r["name"], {"role": role, "runs": [], "top1": {}})
            row["runs"].append(r)
    for row in table.values():
        runs = row.pop("runs")
        by_fraction: dict[float, dict[int, float]] = {}
        for r in sorted(runs, key=lambda r: r["seed"]):
            by_fraction.setdefault(float(r["fraction"]), {})[int(r["seed"])] = float(r["val_acc1"])
        row["top1"] = {f: _stats(list(v.values()), list(v)) for f, v in sorted(by_fraction.items())}
        lat = {b: [v for v in (latency_ms(r, b) for r in runs) if v is not None]
               for b in {b for r in runs for b in (r.get("latency", {}).get("batches") or {})}}
        row["latency_p50_ms"] = {b: float(np.median(v)) for b, v in sorted(lat.items(), key=lambda kv: int(kv[0]))
                                 if v}
        row["latency_unavailable"] = sorted({r["latency"]["unavailable"] for r in runs
                                             if r.get("latency", {}).get("unavailable")})
        row["num_params"] = runs[0]["export"]["num_params"]
        row["train_seconds_mean"] = float(np.mean([r["train_seconds"] for r in runs]))
        row["runs_finished"] = len(runs)
        row["runs_planned"] = seeds * len(study["fractions"])
        verdicts = [r["convergence"].get("converged") for r in runs]
        row["converged"] = {"yes": verdicts.count(True), "no": verdicts.count(False), "unknown": verdicts.count(None)}
        row["not_converged"] = [f"{r['id']} ({r['convergence'].get('reason')})" for r in runs
                                if r["convergence"].get("converged") is not True]
    return table


def _cell(stats: dict[str, Any] | None, seeds: int) -> str:
    if not stats:
        return "-"
    text = f"{as_points(stats['mean']):.2f} ± {as_points(stats['std']):.2f}"
    return text if stats["n"] == seeds else f"{text} (n={stats['n']})"


def _per_seed(stats: dict[str, Any]) -> str:
    return "[" + ", ".join(f"{as_points(v):.1f}" for v in stats["values"]) + "]"


def targets(table: dict[str, Any], fractions: list[float]) -> list[dict[str, Any]]:
    """The issue's targets, each with the numbers it rests on; ``met`` None when the runs are not there yet."""
    out = []

    def top1(name: str, f: float) -> dict[str, Any] | None:
        return table.get(name, {}).get("top1", {}).get(f)

    full = max(fractions)
    a, b = top1(IBIT, SAMPLE_EFFICIENCY_FRACTION), top1(VIT, full)
    out.append({"target": f"IBiT on {SAMPLE_EFFICIENCY_FRACTION:.0%} of the data >= ViT on {full:.0%} "
                          f"({full / SAMPLE_EFFICIENCY_FRACTION:g}x sample efficiency)",
                "ibit": a, "other": b, "met": None if not (a and b) else at_least(a["mean"], b["mean"]),
                "difference": None if not (a and b) else a["mean"] - b["mean"], "paired": paired(a, b)})
    rows = []
    for f in fractions:
        a, b = top1(IBIT, f), top1(CONVIT, f)
        rows.append({"fraction": f, "ibit": a, "convit": b, "paired": paired(a, b),
                     "difference": None if not (a and b) else a["mean"] - b["mean"]})
    known = [r for r in rows if r["difference"] is not None]
    out.append({"target": "IBiT >= ConViT at every fraction", "per_fraction": rows, "other": CONVIT,
                "met": None if len(known) < len(rows) and all(at_least(r["difference"], 0.0) for r in known)
                else bool(known) and all(at_least(r["difference"], 0.0) for r in known)})
    cnn = []
    for f in fractions:
        a, b = top1(IBIT, f), top1(CNN, f)
        cnn.append({"fraction": f, "ibit": a, "resnet": b, "paired": paired(a, b),
                    "difference": None if not (a and b) else a["mean"] - b["mean"]})
    out.append({"target": "IBiT vs the CNN reference (ResNet-style), for information", "per_fraction": cnn,
                "other": CNN, "met": None, "informational": True})
    return out


def recommend(table: dict[str, Any], fractions: list[float], margin_points: float = DEFAULT_MARGIN_POINTS,
              planned: list[str] | None = None, seeds: int | None = None) -> dict[str, Any]:
    """The fastest candidate (batch-1 p50) whose mean top-1 at the largest fraction is within ``margin_points``
    percentage points of the best. The returned record holds the margin as a fraction, like every accuracy.

    With ``planned`` (candidate names) and ``seeds``, a recommendation made before every candidate has every seed at
    that fraction says it is provisional.
    """
    full = max(fractions)
    scored = {n: r for n, r in table.items() if r["role"] == "candidate" and full in r["top1"]}
    if not scored:
        return {"line": f"no recommendation yet: no candidate has finished a run at fraction {full}", "choice": None}
    best = max(scored, key=lambda n: scored[n]["top1"][full]["mean"])
    best_acc = scored[best]["top1"][full]["mean"]
    margin = margin_points / as_points(1.0)
    close = [n for n, r in scored.items() if at_least(r["top1"][full]["mean"], best_acc - margin)]
    timed = [n for n in close if LATENCY_BATCH in scored[n]["latency_p50_ms"]]
    choice = min(timed, key=lambda n: scored[n]["latency_p50_ms"][LATENCY_BATCH]) if timed else best
    acc = scored[choice]["top1"][full]
    lat = scored[choice]["latency_p50_ms"].get(LATENCY_BATCH)
    line = (f"Ship **{choice}**: top-1 {as_points(acc['mean']):.2f} ± {as_points(acc['std']):.2f}% at {full:.0%} of "
            f"the data (n={acc['n']}), within {margin_points:g} points of the best ({best}, "
            f"{as_points(best_acc):.2f}%)"
            + (f", and the fastest of those at batch 1 ({lat:.3f} ms p50)" if lat is not None else
               " (no latency measured)")
            + f"; candidates within the margin: {', '.join(sorted(close))}.")
    missing = [n for n in (planned or []) if n not in scored or (seeds and scored[n]["top1"][full]["n"] < seeds)]
    if missing:
        line += (f" PROVISIONAL: {', '.join(missing)} {'has' if len(missing) == 1 else 'have'} not yet finished "
                 f"every seed at {full:.0%} of the data.")
    return {"line": line, "choice": choice, "best": best, "margin": margin, "within_margin": sorted(close),
            "fraction": full}


def pareto_front(points: dict[str, tuple[float, float]]) -> list[str]:
    """Names not dominated in (lower latency, higher top-1), ordered by latency."""
    front = []
    for name, (lat, acc) in points.items():
        dominated = any(ol <= lat and oa >= acc and (ol < lat or oa > acc)
                        for other, (ol, oa) in points.items() if other != name)
        if not dominated:
            front.append(name)
    return sorted(front, key=lambda n: points[n][0])


def measured_batches(table: dict[str, Any]) -> list[str]:
    """The batch sizes (as strings, ascending) at which at least one row has a latency: the report's columns."""
    return sorted({b for row in table.values() for b in row["latency_p50_ms"]}, key=int)


def markdown(study: dict[str, Any], table: dict[str, Any], goals: list[dict[str, Any]], rec: dict[str, Any],
             pareto: bool = True) -> str:
    """The report's Markdown; ``pareto`` whether the top-1 vs latency plot was drawn (some batch-1 latency)."""
    recipe, fractions, seeds = study["recipe"], sorted(study["fractions"]), len(study["seeds"])
    planned, finished = len(study["runs"]), len(study["results"])
    budgets = {float(r["fraction"]): r["budget"] for r in study["results"]}
    lines = [f"# ibit-deploy compare: {recipe['data']}", "",
             f"**{finished} of {planned} planned runs finished** "
             f"({'complete' if finished == planned else 'PARTIAL: cells show n when fewer than ' + str(seeds) + ' seeds'})."
             f" Seeds {study['seeds']}, fractions {fractions}.", "",
             f"Recipe (every candidate): {recipe['steps']} optimizer steps per run (exact count per fraction below), "
             f"batch {recipe['batch_size']}, AdamW lr {recipe['lr']} (weight decay {recipe['weight_decay']}), "
             f"linear warm-up over {recipe['warmup']:.1%} of the steps then cosine to {recipe['min_lr']}, label "
             f"smoothing {recipe['label_smoothing']}, RandAugment {recipe['randaugment']}, random erasing "
             f"{recipe['random_erasing']}; transformer dims embed {recipe['embed_dim']}, depth {recipe['depth']}, heads "
             f"{recipe['num_heads']}, patch 4. Held-out split: {recipe['val_fraction']:.0%} of the data, stratified, "
             f"fixed by the seed (the same for every candidate and fraction of a seed). Latency: p50 of the fp32 ONNX "
             f"export on {recipe['backend']}, {recipe['threads']} thread(s), " + (
                 f"one bundle per candidate timed side by side in {study['latency_interleaved']['rounds']} "
                 f"interleaved rounds (median of the rounds' p50)" + _no_bundle_note(study["latency_interleaved"])
                 if study.get("latency_interleaved") else
                 "median over the candidate's runs (each timed by its worker)") + ".", "",
             "## Top-1 (%) on the held-out split, mean ± std over seeds", "",
             "| candidate | " + " | ".join(
                 f"{f:.0%}" + (f" ({budgets[f]['n_train']} img, {budgets[f]['steps']} steps)" if f in budgets else "")
                 for f in fractions) + " |",
             "|---" * (len(fractions) + 1) + "|"]
    order = [n for n in table if table[n]["role"] == "candidate"] + [n for n in table if table[n]["role"] == "teacher"]
    for name in order:
        row = table[name]
        label = name if row["role"] == "candidate" else f"{name} (teacher only)"
        lines.append(f"| {label} | " + " | ".join(_cell(row["top1"].get(f), seeds) for f in fractions) + " |")
    batches = measured_batches(table)
    lines += ["", "## Deployment and cost", "",
              "| candidate | params | " + "".join(f"latency b{b} p50 (ms) | " for b in batches)
              + "train s/run (mean) | converged |",
              "|---" * (4 + len(batches)) + "|"]
    for name in order:
        row = table[name]
        lat = row["latency_p50_ms"]
        c = row["converged"]
        lines.append(f"| {name}{'' if row['role'] == 'candidate' else ' (teacher only)'} | {row['num_params']:,} | "
                     + "".join(f"{lat[b]:.3f} | " if b in lat else "- | " for b in batches)
                     + f"{row['train_seconds_mean']:.0f} | {c['yes']}/{row['runs_finished']}"
                     + (f" ({c['unknown']} unknown)" if c["unknown"] else "") + " |")
    unavailable = sorted({why for row in table.values() for why in row["latency_unavailable"]})
    if not batches or unavailable:
        lines += ["", ("No latency was measured" if not batches else "Latency not measured for some runs")
                  + (f": {'; '.join(unavailable)}" if unavailable else "") + "."]
    kd_logits = [r["teacher_logits_seconds"] for r in study["results"] if r.get("teacher_logits_seconds")]
    lines += ["", "LIB-KD teacher cost (apart from the candidates): the resnet teacher is the resnet candidate's own "
              "run; the rednet teacher is trained only for LIB-KD"
              + (f" ({table['rednet']['train_seconds_mean']:.0f} s per fraction and seed)" if "rednet" in table else "")
              + (f"; storing the teachers' logits took {np.mean(kd_logits):.1f} s per student" if kd_logits else "")
              + "."]
    restored = restored_teachers_lines(study["results"])
    if restored:
        lines += ["", "LIB-KD students whose teachers' checkpoints were gone, so the teachers were retrained from "
                  "their records before distilling (the table keeps each teacher's recorded result):", *restored]
    machines = machines_line(study["results"])
    if machines:
        lines += ["", machines]
    nodes = ray_node_lines(study["results"])
    if nodes:
        lines += ["", "Runs per Ray node (the node that finished each run; a run retried after its worker or node died "
                  "names the last):", *nodes]
    lines += ["", f"Converged = over the last {WINDOW:.0%} of a run's steps the smoothed held-out top-1 moves by at "
              f"most {as_points(ACC_TOLERANCE):g} points and the smoothed training loss by at most {LOSS_TOLERANCE:.0%} "
              "(ibit_deploy/study/convergence.py)."]
    unconverged = [x for n in order for x in table[n]["not_converged"]]
    if unconverged:
        lines += ["", f"Runs not (known to be) converged: {'; '.join(unconverged[:20])}"
                  + (f"; and {len(unconverged) - 20} more" if len(unconverged) > 20 else "")]
    lines += ["", "## Targets", ""]
    for goal in goals:
        verdict = {True: "MET", False: "NOT MET", None: "not yet measurable"}[goal["met"]] + _seedwise(goal)
        head = f"- {goal['target']}" + ("" if goal.get("informational") else f": **{verdict}**")
        if "per_fraction" in goal:
            other = goal["other"]
            cells = [f"{r['fraction']:.0%}: {_cell(r['ibit'], seeds)} vs {_cell(r[other], seeds)}"
                     + (f" ({as_points(r['difference']):+.2f}; per seed {_per_seed(r['ibit'])} vs {_per_seed(r[other])}"
                        f"{_paired_text(r['paired'], 'IBiT', DISPLAY[other])})"
                        if r["difference"] is not None else "")
                     for r in goal["per_fraction"]]
            lines.append(head + " — " + "; ".join(cells))
        else:
            detail = (f"IBiT {_cell(goal['ibit'], seeds)} vs ViT {_cell(goal['other'], seeds)} "
                      f"({as_points(goal['difference']):+.2f}); per seed {_per_seed(goal['ibit'])} vs {_per_seed(goal['other'])}"
                      f"{_paired_text(goal['paired'], 'IBiT', 'ViT')}"
                      if goal["difference"] is not None else "runs missing")
            lines.append(f"{head} — {detail}")
    plots = ["top1_vs_fraction.png"] + (["top1_vs_latency.png (Pareto front marked)"] if pareto else []) + [
        "curves.png (held-out top-1 per step, seed 0)"]
    lines += ["", "## Recommendation", "", rec["line"], "", f"Plots: {', '.join(plots)}."]
    return "\n".join(lines) + "\n"


def _no_bundle_note(interleaved: dict[str, Any]) -> str:
    """The latency sentence's tail: which rows were not timed on a trained bundle, and how they were timed."""
    parts = []
    if standins := interleaved.get("standins"):
        parts.append(f"{', '.join(standins)}: timed on a latency stand-in (no trained bundle left in the study "
                     f"folder: the run's architecture trained {STANDIN_STEPS} steps and exported the same way, since "
                     f"an fp32 graph's latency does not depend on its weight values)")
    if missing := interleaved.get("no_bundle_left"):
        failed = interleaved.get("standin_failed") or {}
        why = "".join(f"; stand-in failed: {name}: {reason}" for name, reason in failed.items())
        parts.append(f"{', '.join(missing)}: median over the runs' own measurements (no exported bundle left in the "
                     f"study folder{why})")
    if later := interleaved.get("not_in_pass"):
        parts.append(f"{', '.join(later)}: median over the runs' own measurements (not in the side-by-side pass: "
                     f"no finished run when it was timed; --retime times it)")
    if teachers := interleaved.get("teachers_not_timed"):
        parts.append(f"teacher rows ({', '.join(teachers)}): median over their runs' own measurements (teachers are "
                     f"not in the side-by-side pass)")
    return "".join(f"; {part}" for part in parts)


def representative_first(result: dict[str, Any]) -> tuple[float, int]:
    """Sort key of the run that stands for its candidate: the largest fraction, then the smallest seed."""
    return -result["fraction"], result["seed"]


def side_by_side_latency(study: dict[str, Any], table: dict[str, Any], rounds: int,
                         out: str | os.PathLike, standins: bool = True) -> dict[str, Any]:
    """Time one bundle per candidate in interleaved rounds (:mod:`.latency`); returns the measurement record.

    The bundle is that of the candidate's finished run at the largest fraction and smallest seed whose bundle is
    still in the study folder ``out`` (every run of a candidate has the same architecture, so the same graph). It is
    found through the run's folder, not the path recorded in result.json, so a moved study folder still works. A
    candidate none of whose bundles is left (runs kept as records only) is timed on a latency stand-in
    (:mod:`.latency_standins`, built in ``out``), or with ``standins=False`` keeps its runs' own measurements.
    ``table`` is only read (:func:`apply_side_by_side` puts the figures into it).
    """
    from ..devicekit.layout import MANIFEST_FILE
    from .latency import interleaved_latency

    recipe = study["recipe"]
    bundles: dict[str, str] = {}
    representative: dict[str, dict[str, Any]] = {}  # each candidate's first run in that order, bundle or not
    for r in sorted(study["results"], key=representative_first):
        if table[r["name"]]["role"] != "candidate":
            continue
        representative.setdefault(r["name"], r)
        bundle = layout.run_dir(out, r["id"]) / layout.BUNDLE_DIR
        if r["name"] not in bundles and (bundle / MANIFEST_FILE).is_file():
            bundles[r["name"]] = str(bundle)
    missing = sorted(n for n in representative if n not in bundles)
    built, failed = [], {}
    if standins:
        for name in missing:
            run = representative[name]
            try:
                bundles[name] = str(standin_bundle(out, run["id"]))
                built.append(name)
            except Exception as exc:  # noqa: BLE001 - the report goes on with the runs' own figures, and says why
                failed[name] = f"{type(exc).__name__}: {exc}"
                print(f"compare report: latency stand-in for {name} (from {run['id']}) failed, keeping its runs' own "
                      f"measurements: {failed[name]} (--no-latency-standins skips stand-ins)", file=sys.stderr)
        missing = sorted(failed)
    measured = interleaved_latency(bundles, recipe["backend"], sorted(recipe["latency_batches"]), rounds=rounds,
                                   threads=recipe["threads"]) if bundles else {
        "backend": recipe["backend"], "threads": recipe["threads"], "rounds": rounds, "candidates": {}}
    teachers = sorted(n for n, row in table.items() if row["role"] == "teacher")
    return {**measured, "bundles": bundles, "standins": built, "standin_failed": failed, "no_bundle_left": missing,
            "teachers_not_timed": teachers}


def apply_side_by_side(table: dict[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """Make a side-by-side measurement ``record`` the latency of the candidates it timed; returns the record with
    ``not_in_pass`` (candidates of ``table`` it did not cover: they keep their runs' own measurements) and the teacher
    rows brought up to date with ``table``."""
    for name, lat in record.get("candidates", {}).items():
        row = table.get(name)
        if row is None or row["role"] != "candidate" or "unavailable" in lat:
            continue
        row["latency_per_run_p50_ms"] = row["latency_p50_ms"]
        row["latency_p50_ms"] = {b: v["p50_ms"] for b, v in lat.items() if isinstance(v, dict)}
        row["latency_source"] = "interleaved"
    covered = set(record.get("candidates", {})) | set(record.get("no_bundle_left", []))
    return {**record,
            "not_in_pass": sorted(n for n, row in table.items() if row["role"] == "candidate" and n not in covered),
            "teachers_not_timed": sorted(n for n, row in table.items() if row["role"] == "teacher")}


def retime(out: str | os.PathLike, rounds: int, standins: bool = True) -> dict[str, Any]:
    """Re-time the study in ``out`` side by side (:func:`side_by_side_latency`) and keep the measurement in
    ``OUT/latency_side_by_side.json`` for this and later reports; returns it.

    The one step of the report that measures, and so writes into the study folder (the record, and latency stand-ins
    where needed). Held under the study's lock: timing beside a running study's workers would measure the machine's
    load, not the models.
    """
    if rounds < 1:
        raise ValueError(f"--latency-rounds must be >= 1 to re-time, got {rounds}")
    if not (Path(out) / layout.STUDY_FILE).is_file():  # before the lock: nothing is written beside what is no study
        raise ValueError(f"{out}: no study here (no {layout.STUDY_FILE}); --retime re-times a study folder written by "
                         f"ibit-deploy compare")
    with layout.locked(out, "ibit-deploy compare --retime", then="run the same command again"):
        study = load_study(out)
        if not study["results"]:
            raise ValueError(f"{out}: no run of the study has finished yet; nothing to time")
        record = side_by_side_latency(study, aggregate(study), rounds, out, standins)
        atomic_write_json(Path(out) / layout.SIDE_BY_SIDE_FILE, _jsonable(record))
    return record


def read_side_by_side(out: str | os.PathLike) -> dict[str, Any] | None:
    """The study's last side-by-side latency measurement (:func:`retime`), or None when it was never re-timed."""
    path = Path(out) / layout.SIDE_BY_SIDE_FILE
    return read_json(path, "side-by-side latency record") if path.is_file() else None


def write_report(out: str | os.PathLike, margin_points: float = DEFAULT_MARGIN_POINTS,
                 report_dir: str | os.PathLike | None = None, latency_rounds: int = 0,
                 standins: bool = True) -> dict[str, Path]:
    """Write compare.json, compare.md and the plots for the study in ``out``; returns the paths written.

    With ``latency_rounds`` 0 this only reads the study and writes the report's files (into ``report_dir``, default
    ``OUT/report``): latency is the last side-by-side measurement kept in the study (:func:`retime`), else the median
    of each candidate's per-run measurements. ``latency_rounds`` > 0 first re-times (:func:`retime`, with
    ``standins``). A plot of something not measured is not drawn (and an earlier report's copy is removed).
    """
    from .plots import plot_curves, plot_fraction, plot_pareto

    if latency_rounds:
        retime(out, latency_rounds, standins)
    study = load_study(out)
    if not study["results"]:
        raise ValueError(f"{out}: no run of the study has finished yet; nothing to report")
    fractions = sorted(study["fractions"])
    table = aggregate(study)
    recorded = read_side_by_side(out)
    study["latency_interleaved"] = apply_side_by_side(table, recorded) if recorded else None
    goals = targets(table, fractions)
    rec = recommend(table, fractions, margin_points, planned=study["candidates"], seeds=len(study["seeds"]))
    full = max(fractions)
    points = {n: (r["latency_p50_ms"][LATENCY_BATCH], r["top1"][full]["mean"]) for n, r in table.items()
              if r["role"] == "candidate" and full in r["top1"] and LATENCY_BATCH in r["latency_p50_ms"]}
    directory = Path(report_dir) if report_dir else Path(out) / layout.REPORT_DIR
    check_report_folder(directory, ("compare.json", "compare.md", "top1_vs_fraction.png", "top1_vs_latency.png",
                                    "curves.png"), "study report")  # the write policy (ibit_deploy.outputs)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {"json": directory / "compare.json", "markdown": directory / "compare.md",
             "fraction_plot": directory / "top1_vs_fraction.png", "pareto_plot": directory / "top1_vs_latency.png",
             "curves_plot": directory / "curves.png"}
    atomic_write_json(paths["json"], {UNIT_KEY: FRACTION, "recipe": study["recipe"],
                                      "candidates": study["candidates"], "seeds": study["seeds"],
                                      "fractions": fractions, "runs_planned": len(study["runs"]),
                                      "runs_finished": len(study["results"]),
                                      "summary": {n: {**r, "top1": {str(f): s for f, s in r["top1"].items()}}
                                                  for n, r in table.items()},
                                      "targets": _jsonable(goals), "recommendation": rec,
                                      "latency_interleaved": study["latency_interleaved"], "runs": study["results"]})
    atomic_write_text(paths["markdown"], markdown(study, table, goals, rec, pareto=bool(points)))
    plot_fraction(table, fractions, len(study["seeds"]), paths["fraction_plot"])
    if points:
        plot_pareto(table, points, pareto_front(points), full, study["recipe"]["backend"], paths["pareto_plot"])
    else:  # nothing at batch 1 was measured: no plot, and no earlier report's plot left to contradict this one
        paths.pop("pareto_plot").unlink(missing_ok=True)
    plot_curves(study["results"], paths["curves_plot"])
    return paths


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
