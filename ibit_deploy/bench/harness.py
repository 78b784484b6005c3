"""``run_benchmark``: accuracy against the reference PyTorch model and latency sweeps, for every backend of a bundle.

Order of work, and why:

1. Options are checked and the bundle verified (every artifact's sha256 against the manifest) before anything is
   measured: numbers for a file that is not the exported one are worse than none.
2. The evaluation set is built as the manifest says (dataset spec, split parameters, image size, mean, std). Where
   that dataset cannot be read here (not on this machine, or no torch: a device install), the bundle's check images
   are used (``reference.npz``, :mod:`ibit_deploy.devicekit.reference`), with the reference logits the export
   recorded on them.
3. Each backend runs in turn (progress bar over runners): logits on the whole set, then the batch-size sweep. A
   backend that cannot run here is "skipped" with its reason; one that fails is "error" and makes the run
   incomplete. Accuracy is computed afterwards, against ``torch-ref``; where it cannot run (no checkpoint or no
   torch here) against the logits recorded in the bundle, when the images are the bundle's check images; else
   against the first fp32 backend that ran, recorded as a fallback.
4. Plots, Markdown, the manifest's ``results`` and, last, ``report.json`` are written (see ``report.py``), into a
   folder beside the report folder that is swapped in whole when complete (the write policy,
   :mod:`ibit_deploy.outputs`): a killed bench leaves the previous reports as they were, and a Ctrl-C replaces them
   with its partial report (marked "interrupted") only when they were not a complete report themselves.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.eval_split import EvalSet
from ..devicekit.fileio import read_json
from ..devicekit.layout import BENCH_DIR, PRECISIONS, REFERENCE_FILE
from ..devicekit.manifest import find_artifact, load_manifest, update_manifest, utc_now
from ..devicekit.profile import InputSpec
from ..devicekit.reference import read_reference
from ..devicekit.staging import staged_folder
from ..errors import BackendUnavailable
from ..outputs import BENCH_REPORT, BENCH_TOOL, check_output, source_id
from ..runtime.base import Runner
from ..runtime.load import ORT_GRAPHS, RunnerChoice, canonical_backend, make_runners
from .accuracy import accuracy_report
from .end_to_end import BACKENDS as END_TO_END_BACKENDS
from .end_to_end import image_folder, run_end_to_end
from .latency import check_budget, sweep_batches
from .report import REPORT_FILE, SCHEMA_VERSION, manifest_summary, write_report_files

DEFAULT_BACKENDS = ("torch-ref", "torch-folded", "ort-cpu", "ort-cuda", "tensorrt")
RECORDED_REFERENCE = f"torch-ref (recorded in {REFERENCE_FILE})"  # the reference's name when the export's logits stand in
SPLITS = ("train", "val", "test")
DEFAULT_CPP_ITERS = 20  # timed runs of the C++ runner per batch size when the bench is timed by --seconds


@dataclass
class BenchOptions:
    """What to measure and how. ``iters``/``seconds``: timed calls per batch size (one of them; default 50 calls)."""

    backends: list[str] = field(default_factory=lambda: list(DEFAULT_BACKENDS))
    precisions: list[str] | None = None  # None: every precision the bundle has
    batches: list[int] = field(default_factory=lambda: [1, 8, 32])
    data: str | None = None  # dataset spec; None: the one the manifest records
    split: str = "val"
    limit: int | None = None  # evaluate a stratified subset of this many images
    warmup: int = 10
    iters: int | None = None
    seconds: float | None = None
    threads: int = 0  # intra-op threads for torch and ORT (0: library default)
    eval_batch: int = 32  # batch size of the accuracy pass
    torch_device: str = "cpu"
    jetson: bool = False  # record nvpmodel/clocks and sample power with tegrastats
    jetson_clocks: bool = False  # run `sudo -n jetson_clocks` first (changes the board's clocks)
    tegrastats_interval_ms: int = 100
    trtexec: bool = False  # also time engines with trtexec
    progress: bool = True
    allow_failed: bool = False  # also run artifacts whose recorded gate failed (runtime.load's allow_failed)
    end_to_end: str | None = None  # folder of image files: also time image file -> label by stage (end_to_end.py)
    cpp_runner: str | None = None  # with end_to_end: also the C++ runner at this path (cpp_runner.py)
    ort_graph: str = "fused"  # ort-cpu/ort-cuda: a bundle's fused graph where present, or "plain" (runtime.load)

    def validate(self) -> None:
        """Raise ValueError naming the first bad option."""
        if not self.backends:
            raise ValueError("no backends given")
        self.backends = [canonical_backend(b) for b in self.backends]
        if self.ort_graph not in ORT_GRAPHS:
            raise ValueError(f"ort_graph must be one of {ORT_GRAPHS}, got {self.ort_graph!r}")
        if self.precisions is not None:
            bad = [p for p in self.precisions if p not in PRECISIONS]
            if bad or not self.precisions:
                raise ValueError(f"precisions must be a non-empty subset of {PRECISIONS}, got {self.precisions}")
        if not self.batches or any(not isinstance(b, int) or b < 1 for b in self.batches):
            raise ValueError(f"batch sizes must be integers >= 1, got {self.batches}")
        self.batches = sorted(set(self.batches))
        if self.split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {self.split!r}")
        if self.limit is not None and self.limit < 1:
            raise ValueError(f"limit must be >= 1 image, got {self.limit} (an empty evaluation set measures nothing)")
        check_budget(self.warmup, self.iters, self.seconds)
        if self.threads < 0:
            raise ValueError(f"threads must be >= 0, got {self.threads}")
        if self.eval_batch < 1:
            raise ValueError(f"eval_batch must be >= 1, got {self.eval_batch}")
        if self.cpp_runner is not None and self.end_to_end is None:
            raise ValueError("--cpp-runner times the C++ runner end to end: give --end-to-end DIR too")
        if self.end_to_end is not None and not set(self.backends) & set(END_TO_END_BACKENDS):
            raise ValueError(f"--end-to-end times the Python runtime's backends ({', '.join(END_TO_END_BACKENDS)}); "
                             f"--backends {','.join(self.backends)} has none of them")


def run_benchmark(bundle: str | Path, options: BenchOptions | None = None, *, out_dir: str | Path | None = None,
                  runners: Callable[..., list[RunnerChoice]] = make_runners, **overrides: Any) -> dict[str, Any]:
    """Benchmark ``bundle``; returns the report (also written to ``out_dir``, default ``<bundle>/bench``).

    ``overrides`` set :class:`BenchOptions` fields, e.g. ``run_benchmark(b, backends=["ort-cpu"], batches=[1])``.
    ``runners`` makes the runner list (signature of :func:`~ibit_deploy.runtime.load.make_runners`; tests script it).
    Raises (before measuring or writing anything) FileNotFoundError/ValueError for a missing or altered bundle
    file, bad options, or data that does not fit the bundle's input, and FileExistsError when ``out_dir`` holds
    something other than a bench report of this bundle (the write policy; the default ``<bundle>/bench`` is always
    this bundle's).
    """
    options = dataclasses.replace(options or BenchOptions(), **overrides)
    options.validate()
    bundle = Path(bundle)
    manifest = load_manifest(bundle, verify=True)
    check_batches(manifest, options.batches)
    images, labels, data, recorded = evaluation_set(manifest, options, bundle)
    files = image_folder(options.end_to_end) if options.end_to_end is not None else None
    default = out_dir is None
    out_dir = bundle / BENCH_DIR if default else Path(out_dir)
    check_output(out_dir, BENCH_REPORT, None if default else source_id(bundle), folder=True, sources=(bundle,),
                 hint="choose another --out")
    with staged_folder(out_dir, "ibit-bench") as staged:
        # a Ctrl-C publishes its partial report only where it replaces no complete one
        staged.publish_on_interrupt = not _is_complete(out_dir)
        return _measure(bundle, manifest, options, runners, (images, labels, recorded), data, staged.path, out_dir,
                        files)


def _is_complete(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a complete bench report."""
    try:
        return read_json(out_dir / REPORT_FILE, "bench report").get("complete") is True
    except (OSError, ValueError, AttributeError):
        return False


def _measure(bundle: Path, manifest: dict[str, Any], options: BenchOptions, runners: Callable[..., list[RunnerChoice]],
             evaluation: tuple[np.ndarray, np.ndarray, np.ndarray | None], data: dict[str, Any], staging: Path,
             out_dir: Path, files: dict[str, Any] | None = None) -> dict[str, Any]:
    """Measure every backend (and, given the image ``files``, their end to end) and write the report into
    ``staging`` (``out_dir`` is where it will be); ``evaluation`` is (images, labels, the reference logits recorded
    for these images or None)."""
    images, labels, recorded = evaluation
    from .jetson import jetson_state
    from .machine import machine_description

    started = time.perf_counter()
    # Reading the power mode is harmless, so a Jetson always records it; clocks change only when asked.
    jetson = jetson_state(lock_clocks=options.jetson_clocks)
    machine = machine_description(options.threads)
    machine["jetson_power_mode"] = (jetson.get("power_mode") or {}).get("name")
    report: dict[str, Any] = {
        "schema_version": SCHEMA_VERSION, "tool": BENCH_TOOL, "status": "interrupted", "complete": False,
        "created": utc_now(), "elapsed_s": None,
        "bundle": {"path": str(bundle.resolve()), "model": manifest.get("model", {}).get("name"),
                   "manifest_created": manifest.get("created"), "source": manifest.get("source"),
                   "artifacts": [{k: a.get(k) for k in ("path", "kind", "precision", "sha256")}
                                 for a in manifest["artifacts"]]},
        "machine": machine, "options": dataclasses.asdict(options), "data": data,
        "reference": {"name": None, "fallback": False, "reason": None}, "jetson": jetson, "runs": [],
        "end_to_end": None,
        "files": {"markdown": None, "plots": []}, "manifest_update": {"updated": False, "reason": "not attempted"},
    }
    monitor = _power_monitor(options, jetson)
    choices = runners(bundle, options.backends, manifest, precisions=options.precisions,
                      threads=options.threads, torch_device=options.torch_device, allow_failed=options.allow_failed,
                      ort_graph=options.ort_graph)
    # The reference runs first, so a run interrupted half-way still has its yardstick.
    choices.sort(key=lambda c: c.backend != "torch-ref")
    logits: dict[str, np.ndarray] = {}
    try:
        for choice in _progress(choices, options.progress):
            report["runs"].append(_run_one(choice, images, options, logits, (staging, out_dir), monitor, bundle,
                                           manifest))
        if files is not None:
            report["end_to_end"] = run_end_to_end(
                bundle, report["runs"], files, options.batches, threads=options.threads, warmup=options.warmup,
                iters=options.iters, seconds=options.seconds, allow_failed=options.allow_failed,
                progress=options.progress)
            if options.cpp_runner is not None:  # the same files and batch sizes through the C++ runner
                from .cpp_runner import cpp_rows

                ran = {r["precision"]: r["artifact"] for r in report["runs"] if r["backend"] == "ort-cpu" and
                       r["status"] == "ok"}  # the very files the Python runtime ran (a fused twin where it has one)
                report["end_to_end"]["runners"].update(cpp_rows(
                    options.cpp_runner, bundle, dict(sorted(ran.items())), files["files"], options.batches,
                    warmup=options.warmup, iters=options.iters or DEFAULT_CPP_ITERS, threads=options.threads))
    except KeyboardInterrupt:
        _finish(report, (logits, recorded), labels, manifest, bundle, (staging, out_dir), started, interrupted=True)
        raise
    return _finish(report, (logits, recorded), labels, manifest, bundle, (staging, out_dir), started,
                   interrupted=False)


def _progress(choices: list[RunnerChoice], show: bool) -> Any:
    """``choices`` behind a tqdm bar where tqdm is installed (a device install need not have it)."""
    try:
        from tqdm import tqdm
    except ImportError:
        return choices
    return tqdm(choices, desc="ibit-bench", unit="backend", disable=not show)


def check_batches(manifest: dict[str, Any], batches: list[int]) -> None:
    """Raise ValueError if no batch size lies in the bundle's batch range (the sweep would time nothing)."""
    low, high = (list(manifest["input"].get("batch_range") or []) + [1, None])[:2]
    low = low or 1
    if not any(b >= low and (high is None or b <= high) for b in batches):
        raise ValueError(f"batch sizes {','.join(map(str, batches))} all lie outside the bundle's batch range "
                         f"[{low}, {high}] (manifest input.batch_range): nothing would be measured; choose --batches "
                         f"within it or export with another --max-batch")


def measured_anything(report: dict[str, Any]) -> bool:
    """Whether any run of ``report`` timed at least one batch size."""
    return any(entry.get("status") == "ok" for run in report["runs"] if run["status"] == "ok"
               for entry in run.get("latency") or [])


def evaluation_set(manifest: dict[str, Any], options: BenchOptions, bundle: Path
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, Any], np.ndarray | None]:
    """Preprocessed images, labels, their description and the reference logits recorded for them (or None).

    The manifest's dataset (``data`` and ``input`` blocks) or ``options.data``; where the recorded dataset cannot be
    read here (not on this machine, or no torch), the bundle's check images and the logits the export recorded on
    them, said in a warning and in the report's ``data.spec``.
    """
    try:
        return (*_dataset(manifest, options), None)
    except (ImportError, OSError) as exc:
        if options.data is not None:
            raise ValueError(f"--data {options.data} cannot be read here: {exc}") from exc
        why = f"{(manifest.get('data') or {}).get('spec')} cannot be read here ({type(exc).__name__}: {exc})"
        recorded = read_reference(bundle, manifest)
        if recorded is None or not recorded.real:
            has = "no check images" if recorded is None else "random check images only"
            raise ValueError(f"{why}, and the bundle has {has} ({REFERENCE_FILE}: exported without readable "
                             f"validation images, or before bundles carried them); give --data SPEC") from exc
    if options.split != "val":
        raise ValueError(f"{why}; the bundle's check images are validation images, so only --split val can run here")
    count = len(recorded.labels) if options.limit is None else min(options.limit, len(recorded.labels))
    warnings.warn(f"{why}: measuring on the bundle's {count} check images ({REFERENCE_FILE}: "
                  f"{recorded.description})", stacklevel=2)
    data = manifest.get("data") or {}
    return recorded.images[:count], recorded.labels[:count], {
        "spec": f"{REFERENCE_FILE} ({recorded.description})", "split": "val", "count": int(count),
        "val_fraction": data.get("val_fraction"), "seed": data.get("seed"),
        "classes": list(manifest.get("classes") or [])}, recorded.logits[:count]


def _dataset(manifest: dict[str, Any], options: BenchOptions) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Preprocessed images, labels and their description, as the manifest's ``data`` and ``input`` say."""
    from ..data.fit import ModelInput, check_data_fits

    eval_set = EvalSet.from_manifest(manifest, options.data)  # another dataset than the recorded one: default split
    spec = eval_set.spec
    if not spec:
        raise ValueError("the manifest records no dataset (manifest['data']['spec']); give one with --data SPEC")
    input_spec = InputSpec.from_manifest(manifest)
    classes = list(manifest.get("classes") or [])
    raw = check_data_fits(spec, ModelInput.from_manifest(manifest, "the bundle's model"))
    images, labels = eval_set.arrays(options.split, input_spec, limit=options.limit)
    val_fraction, seed = eval_set.val_fraction, eval_set.seed
    if len(labels) == 0:
        raise ValueError(f"the evaluation set is empty: {spec!r} split {options.split!r}, limit {options.limit}")
    return images, labels, {"spec": spec, "split": options.split, "count": int(len(labels)),
                            "val_fraction": val_fraction, "seed": seed, "classes": classes or list(raw.classes)}


def infer_all(runner: Runner, images: np.ndarray, batch: int) -> np.ndarray:
    """Logits for every image, in chunks the runner's batch range allows (:meth:`Runner.infer_all`)."""
    return runner.infer_all(images, batch)


def _run_one(choice: RunnerChoice, images: np.ndarray, options: BenchOptions, logits: dict[str, np.ndarray],
             out_dir: tuple[Path, Path], monitor: Any, bundle: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Logits and the latency sweep of one backend, as a report row (skipped/error rows say why)."""
    row: dict[str, Any] = {"name": choice.name, "backend": choice.backend, "precision": choice.precision,
                           "artifact": choice.artifact, "status": "ok", "reason": None, "runner": None,
                           "accuracy": None, "latency": [], "speedup_vs_reference": {}, "trtexec": None}
    runner = choice.runner
    if isinstance(runner, str):
        return {**row, "status": "skipped", "reason": runner}
    try:
        with runner:
            row["runner"] = runner.describe()
            logits[choice.name] = infer_all(runner, images, options.eval_batch)
            row["latency"] = sweep_batches(runner, images, options.batches, warmup=options.warmup,
                                           iters=options.iters, seconds=options.seconds, monitor=monitor)
    except BackendUnavailable as exc:
        return {**row, "status": "skipped", "reason": str(exc)}
    except Exception as exc:  # one backend failing must not lose the others' measurements
        logits.pop(choice.name, None)
        return {**row, "status": "error", "reason": f"{type(exc).__name__}: {exc}"}
    if options.trtexec and choice.backend == "tensorrt":
        row["trtexec"] = _trtexec_runs(choice, runner, options, out_dir, bundle, manifest)
    return row


def _trtexec_runs(choice: RunnerChoice, runner: Runner, options: BenchOptions, out_dir: tuple[Path, Path],
                  bundle: Path, manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """trtexec timings of the engine behind ``choice`` at every batch size (its own flags per TensorRT major);
    ``out_dir`` is (the staging folder its files go to, the report folder the results name)."""
    staging, shown = out_dir
    from ..devicekit.build import parse_trt_version
    from .trtexec import run_trtexec

    engine = bundle / choice.artifact
    # The engine records the TensorRT that built it; 10.x needs the benchmarking flags that 11.x made default.
    version = (find_artifact(manifest, path=choice.artifact) or {}).get("tensorrt")
    try:
        trt_major = parse_trt_version(str(version))[0] if version else 10
    except ValueError:
        trt_major = 10
    results = []
    spec = runner.spec
    for batch in options.batches:
        if batch < spec.min_batch or (spec.max_batch is not None and batch > spec.max_batch):
            results.append({"batch": batch, "status": "skipped", "reason": "outside the engine's batch range"})
            continue
        try:
            timed = run_trtexec(engine, spec.profile(), batch=batch, out_dir=staging, trt_major=trt_major)
            results.append({"batch": batch, "status": "ok", **_moved(timed, str(staging), str(shown))})
        except BackendUnavailable as exc:
            return [{"batch": None, "status": "skipped", "reason": str(exc)}]
        except (RuntimeError, ValueError, OSError) as exc:
            results.append({"batch": batch, "status": "error", "reason": str(exc)})
    return results


def _moved(value: Any, old: str, new: str) -> Any:
    """``value`` with the staging folder ``old`` in its strings named as the report folder ``new`` it becomes."""
    if isinstance(value, str):
        return value.replace(old, new)
    if isinstance(value, list):
        return [_moved(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: _moved(v, old, new) for k, v in value.items()}
    return value


def _finish(report: dict[str, Any], logits: tuple[dict[str, np.ndarray], np.ndarray | None], labels: np.ndarray,
            manifest: dict[str, Any], bundle: Path, out_dir: tuple[Path, Path], started: float,
            interrupted: bool) -> dict[str, Any]:
    """Accuracy against the reference, speedups, status; then the files (report.json last) into ``out_dir[0]``,
    the staging folder that becomes ``out_dir[1]``. ``logits`` is (each run's, the recorded reference's or None)."""
    staging, out_dir = out_dir
    logits, recorded = logits
    ok = [r for r in report["runs"] if r["status"] == "ok" and r["name"] in logits]
    ref = next((r for r in ok if r["backend"] == "torch-ref"), None)
    ref_logits = logits[ref["name"]] if ref else recorded
    if ref is None and recorded is not None:
        report["reference"] = {"name": RECORDED_REFERENCE, "fallback": False,
                               "reason": f"torch-ref did not run here; the logits the export recorded in "
                                         f"{REFERENCE_FILE} for these images stand in"}
    elif ref is None:
        ref = next((r for r in ok if r["precision"] == "fp32"), None)
        reason = "torch-ref did not run (see its row); the first fp32 backend stands in" if ref else \
            "no fp32 backend ran: agreement and logit differences are not computed"
        report["reference"] = {"name": ref["name"] if ref else None, "fallback": True, "reason": reason}
        ref_logits = logits[ref["name"]] if ref else None
    else:
        report["reference"] = {"name": ref["name"], "fallback": False, "reason": None}
    classes = report["data"]["classes"]
    for run in ok:
        try:
            run["accuracy"] = accuracy_report(logits[run["name"]], labels, ref_logits, classes)
        except ValueError as exc:
            run.update(status="error", reason=f"accuracy: {exc}")
        if ref is not None:
            for entry in run["latency"]:
                base = next((e for e in ref["latency"] if e["batch"] == entry["batch"] and e["status"] == "ok"), None)
                if entry["status"] == "ok" and base is not None:
                    run["speedup_vs_reference"][str(entry["batch"])] = base["p50_ms"] / entry["p50_ms"]
    errors = any(r["status"] == "error" for r in report["runs"]) or any(
        t.get("status") == "error" for r in report["runs"] for t in (r["trtexec"] or []))
    # a run that timed nothing is not complete, whatever the reason (every backend skipped, every batch out of range)
    errors = errors or not measured_anything(report) or _end_to_end_failed(report)
    report["status"] = "interrupted" if interrupted else ("incomplete" if errors else "complete")
    report["complete"] = report["status"] == "complete"
    report["elapsed_s"] = time.perf_counter() - started
    entries = manifest_summary(report, (out_dir / "report.json").resolve())
    if interrupted or not entries:
        report["manifest_update"] = {"updated": False, "reason": "interrupted" if interrupted else "no backend ran"}
    else:
        try:
            current = update_manifest(bundle, results=entries, measured_on=manifest)
            left_out = [e["artifact"] for e in entries if e not in current.get("results", [])]
            report["manifest_update"] = {"updated": True, "reason": None if not left_out else
                                         f"left out (re-exported while benchmarking): {', '.join(left_out)}"}
        except (OSError, ValueError) as exc:  # e.g. a read-only bundle on a device: the report still stands
            report["manifest_update"] = {"updated": False, "reason": f"{type(exc).__name__}: {exc}"}
    write_report_files(report, staging)
    return report


def _end_to_end_failed(report: dict[str, Any]) -> bool:
    """Whether an end-to-end section was measured with a runner in error, or timed nothing at all."""
    section = report["end_to_end"]
    if section is None:
        return False
    rows = section["runners"].values()
    return any(r["status"] == "error" for r in rows) or not any(
        b["status"] == "ok" for r in rows for b in r["batches"])


def _power_monitor(options: BenchOptions, jetson: dict[str, Any]) -> Any:
    """A TegrastatsSampler factory in Jetson mode on a Jetson with tegrastats, else None."""
    if not (options.jetson and jetson.get("available")):
        return None
    if shutil.which("tegrastats") is None:
        jetson["reason"] = "tegrastats not found on PATH: power is not measured"
        return None
    from .jetson import TegrastatsSampler

    return lambda: TegrastatsSampler(options.tegrastats_interval_ms)
