"""End to end, as an application sees it: an image file in, a label out, timed by stage (``--end-to-end DIR``).

One timed iteration at batch B takes B image files of DIR (cycling through them) and runs, timing each stage with
``perf_counter_ns``:

    read         the files' bytes (``Path.read_bytes``; after the first pass they come from the OS page cache)
    decode       PNG/JPEG -> uint8 pixels in the bundle's colour mode (``Predictor.decode``: the dataset reader)
    preprocess   resize, scale and normalise to the float32 NCHW batch (``Predictor.preprocess``: ibit_deploy.data's
                 eval transform, with the manifest's image size, mean and std)
    h2d          copy of the batch to the device            } ``Runner.infer_staged``; on a backend without device
    inference    the model                                   } memory (ORT CPU) h2d and d2h are recorded as not
    d2h          copy of the logits back to the host         } applicable (null, with the reason), never as zero
    postprocess  softmax, top-1 and class names (``Predictor.postprocess``)

and the whole iteration's wall time (``end_to_end``). Percentiles of a sum are not sums of percentiles, so the
end-to-end p50/p99 are those of the measured totals; the stage means add up to the end-to-end mean.

Every runner's timings go through one function, :func:`summarize`, from per-iteration records of this shape (the
Python runtime makes them here; a C++ runner prints one such JSON object per line and becomes another row)::

    {"batch": 8, "stages_ms": {"read": 0.1, "decode": 0.4, "preprocess": 0.9, "h2d": null, "inference": 2.1,
                               "d2h": null, "postprocess": 0.05}, "end_to_end_ms": 3.6}
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..data.sources import IMAGE_SUFFIXES, read_image
from ..errors import BackendUnavailable, BadInput
from .latency import MIN_TIMED_ITERS, check_budget, latency_stats

STAGES = ("read", "decode", "preprocess", "h2d", "inference", "d2h", "postprocess")
RUNTIME = "python"  # the runtime of the rows measured here; C++ runners add rows of their own runtime
BACKENDS = ("ort-cpu", "ort-cuda", "ort-trt", "tensorrt")  # what runtime.load deploys (PyTorch is the yardstick)
NOT_MEASURED = "not measured by this runner"


def image_folder(folder: str | Path) -> dict[str, Any]:
    """The image files of ``folder`` (sorted), each decoded once to check it, and their description.

    Raises BadInput naming the folder when it is missing or holds no image file, or naming the file that does not
    decode (the dataset reader's rules: 8/16-bit, at most its pixel limit): a benchmark of some of the files would
    not be the benchmark asked for.
    """
    root = Path(folder)
    if not root.is_dir():
        raise BadInput(f"--end-to-end {folder}: not a folder; expected a folder of image files "
                       f"({', '.join(IMAGE_SUFFIXES)})")
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise BadInput(f"--end-to-end {folder}: holds no image file; expected files ending in "
                       f"{', '.join(IMAGE_SUFFIXES)}")
    formats: Counter[str] = Counter()
    sizes: Counter[str] = Counter()
    for path in files:
        try:
            image = read_image(path)
        except ValueError as exc:
            raise BadInput(f"--end-to-end {folder}: {exc}") from exc
        formats[path.suffix.lower().lstrip(".").replace("jpg", "jpeg")] += 1
        sizes[f"{image.width}x{image.height}"] += 1
    return {"dir": str(root.resolve()), "count": len(files), "formats": dict(sorted(formats.items())),
            "sizes": dict(sizes.most_common()), "files": files}


def time_iteration(predictor: Any, files: list[Path]) -> tuple[dict[str, Any], Any, str | None]:
    """One end-to-end pass over ``files`` as one batch: (record, Predictions, why h2d/d2h are null or None)."""
    t0 = time.perf_counter_ns()
    blobs = [path.read_bytes() for path in files]
    t1 = time.perf_counter_ns()
    pixels = [predictor.decode(io.BytesIO(blob), str(path)) for path, blob in zip(files, blobs, strict=True)]
    t2 = time.perf_counter_ns()
    batch = predictor.preprocess(pixels)
    t3 = time.perf_counter_ns()
    staged = predictor.runner.infer_staged(batch)
    t4 = time.perf_counter_ns()
    predictions = predictor.postprocess(staged.logits)
    t5 = time.perf_counter_ns()
    stages = {"read": _ms(t0, t1), "decode": _ms(t1, t2), "preprocess": _ms(t2, t3), "h2d": staged.h2d_ms,
              "inference": staged.inference_ms, "d2h": staged.d2h_ms, "postprocess": _ms(t4, t5)}
    return {"batch": len(files), "stages_ms": stages, "end_to_end_ms": _ms(t0, t5)}, predictions, staged.copy_note


def measure_batch(predictor: Any, files: list[Path], batch: int, *, warmup: int, iters: int | None,
                  seconds: float | None) -> dict[str, Any]:
    """``warmup`` untimed passes, then ``iters`` timed ones (or as many as fit in ``seconds``, at least 3), each
    over the next ``batch`` files; their :func:`summarize`."""
    iters, seconds = check_budget(warmup, iters, seconds)
    records: list[dict[str, Any]] = []
    note = None
    count = 0

    def next_files() -> list[Path]:
        nonlocal count
        chosen = [files[(count + k) % len(files)] for k in range(batch)]
        count += batch
        return chosen

    for _ in range(warmup):
        time_iteration(predictor, next_files())
    start = time.perf_counter_ns()
    while True:
        record, _, note = time_iteration(predictor, next_files())
        records.append(record)
        if iters is not None and len(records) >= iters:
            break
        if seconds is not None and (time.perf_counter_ns() - start) / 1e9 >= seconds and \
                len(records) >= MIN_TIMED_ITERS:
            break
    return summarize(records, {"h2d": note, "d2h": note} if note else None)


def summarize(records: list[dict[str, Any]], notes: dict[str, str] | None = None) -> dict[str, Any]:
    """Per-stage and end-to-end statistics (ms) of per-iteration records of one runner at one batch size.

    A stage that is null in every record is not applicable (``notes`` says why); one null in some records only,
    an unknown stage name, or records of different batch sizes are a ValueError naming it.
    """
    if not records:
        raise ValueError("end-to-end summary: no timed iterations")
    batches = {r["batch"] for r in records}
    if len(batches) != 1:
        raise ValueError(f"end-to-end summary: records of several batch sizes {sorted(batches)}; summarise each apart")
    batch = batches.pop()
    unknown = {s for r in records for s in r["stages_ms"]} - set(STAGES)
    if unknown:
        raise ValueError(f"end-to-end summary: unknown stage(s) {sorted(unknown)}; the stages are {', '.join(STAGES)}")
    stages: dict[str, dict[str, Any]] = {}
    for stage in STAGES:
        values = [r["stages_ms"].get(stage) for r in records]
        missing = sum(v is None for v in values)
        if missing == len(values):
            stages[stage] = {"n": 0, "mean_ms": None, "p50_ms": None, "p99_ms": None, "applicable": False,
                             "note": (notes or {}).get(stage) or NOT_MEASURED}
        elif missing:
            raise ValueError(f"end-to-end summary: stage {stage!r} is timed in {len(values) - missing} of "
                             f"{len(values)} iterations; a stage is timed in every iteration or in none")
        else:
            stages[stage] = {**_stats(values, batch), "applicable": True, "note": None}
    total = _stats([r["end_to_end_ms"] for r in records], batch)
    inference = stages["inference"]["mean_ms"]
    return {"batch": batch, "status": "ok", "n": total["n"], "stages": stages, "end_to_end": total,
            "images_per_s": batch * 1000.0 / total["mean_ms"] if total["mean_ms"] > 0 else None,
            "outside_inference_share": None if inference is None or total["mean_ms"] <= 0 else
            max(0.0, 1.0 - inference / total["mean_ms"])}


def run_end_to_end(bundle: Path, runs: list[dict[str, Any]], images: dict[str, Any], batches: list[int], *,
                   threads: int, warmup: int, iters: int | None, seconds: float | None, allow_failed: bool,
                   progress: bool, predictor: Callable[..., Any] | None = None) -> dict[str, Any]:
    """The report's ``end_to_end`` section: every run of ``runs`` (report rows) that ran on a deployable backend,
    through a ``Predictor`` of that backend and precision, at batch 1 and every size of ``batches``."""
    from tqdm import tqdm

    if predictor is None:
        from ..runtime.predictor import Predictor as predictor  # noqa: N813 (a factory, named as it is used)
    sizes = sorted({1, *batches})
    rows: dict[str, dict[str, Any]] = {}
    chosen = [r for r in runs if r["status"] == "ok" and r["backend"] in BACKENDS]
    for run in tqdm(chosen, desc="end to end", unit="backend", disable=not progress):
        name = f"{RUNTIME}:{run['backend']}:{run['precision']}"
        if name in rows:  # several artifacts of one precision: the Predictor loads the first, as applications do
            continue
        row = {"runtime": RUNTIME, "backend": run["backend"], "precision": run["precision"],
               "artifact": run["artifact"], "status": "ok", "reason": None, "batches": []}
        rows[name] = row
        try:
            with predictor(bundle, backend=run["backend"], precision=run["precision"], threads=threads,
                           verify=False, allow_failed=allow_failed) as p:
                spec = p.runner.spec
                for size in sizes:
                    if size < spec.min_batch or (spec.max_batch is not None and size > spec.max_batch):
                        row["batches"].append({"batch": size, "status": "skipped", "reason": f"batch {size} is "
                                               f"outside the artifact's range [{spec.min_batch}, {spec.max_batch}]"})
                        continue
                    row["batches"].append(measure_batch(p, images["files"], size, warmup=warmup, iters=iters,
                                                        seconds=seconds))
        except BackendUnavailable as exc:
            row.update(status="skipped", reason=str(exc))
        except Exception as exc:  # one runner failing must not lose the others' measurements
            row.update(status="error", reason=f"{type(exc).__name__}: {exc}")
    described = {k: v for k, v in images.items() if k != "files"}
    return {"images": described, "stages": list(STAGES), "batches": sizes, "runners": rows}


def _stats(values: list[float], batch: int) -> dict[str, Any]:
    stats = latency_stats(values, batch)
    return {"n": stats.n, "mean_ms": stats.mean_ms, "p50_ms": stats.p50_ms, "p99_ms": stats.p99_ms}


def _ms(start: int, end: int) -> float:
    return (end - start) / 1e6
