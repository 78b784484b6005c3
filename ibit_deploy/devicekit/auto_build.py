"""``build_engine.py --precision auto``: build an engine of every precision, check each against ONNX Runtime, time
each with the one trtexec recipe, keep the fastest that passes (the selection rules: :mod:`.precision_auto`).
"""

from __future__ import annotations

import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import attention_form, precision_auto
from .acceptance import engine_accepted
from .agreement import compare_logits
from .build import DEFAULT_WORKSPACE_MIB, build_record, build_serialized_engine, trtexec_benchmark_command
from .build_limits import BuilderLimits, GpuInfo
from .engine_compat import EngineCompat, runtime_options
from .fileio import atomic_write_bytes
from .manifest import onnx_artifact
from .profile import EngineProfile
from .session import EngineBuildError
from .trtexec_tool import parse_trtexec_output
from .verify import verification_set, verify_engine

AUTO = "auto"
TRTEXEC_TIMEOUT_S = 900.0


def accuracy_budget(manifest: dict[str, Any], reference_top1: float | None,
                    max_drop: float | None = None) -> precision_auto.AccuracyBudget:
    """The bundle's accuracy budget for ``--precision auto``: ``max_drop`` (a fraction) when given, else the tightest
    ``max_drop`` of the quantization gates manifest.json records; none recorded: no top-1 budget (the acceptance
    table still applies)."""
    if max_drop is not None:
        return precision_auto.AccuracyBudget(float(max_drop), reference_top1, "--max-drop")
    drops = sorted((float(a["gate"]["max_drop"]), str(a.get("path"))) for a in manifest.get("artifacts", [])
                   if isinstance(a.get("gate"), dict) and isinstance(a["gate"].get("max_drop"), (int, float)))
    if not drops:
        return precision_auto.AccuracyBudget(None, reference_top1, "none in manifest.json: acceptance table only")
    return precision_auto.AccuracyBudget(drops[0][0], reference_top1, f"quantization gate of {drops[0][1]}")


def run_trtexec_stdout(argv: Sequence[str], timeout: float = TRTEXEC_TIMEOUT_S) -> str:
    """Run one trtexec command; its stdout, or RuntimeError with the end of its log when it fails."""
    import subprocess

    try:
        proc = subprocess.run(list(argv), capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"trtexec did not finish within {timeout:.0f} s: {shlex.join(argv)}") from exc
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-10:])
        raise RuntimeError(f"trtexec exited with {proc.returncode}: {shlex.join(argv)}\n{tail}")
    return proc.stdout


def onnx_top1(onnx_path: Path, batches: Sequence[Any], labels: Any, input_name: str) -> float:
    """Top-1 accuracy of ONNX Runtime (CPU) on ``onnx_path`` over ``batches`` against ``labels``."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, {input_name: b})[0] for b in batches])
    return float(compare_logits(logits, logits, labels)["top1"])


def build_auto(trt: Any, bundle: Path, manifest: dict[str, Any], profile: EngineProfile, engine: Path, *,
               trt_major: int, trtexec_run: Callable[[list[str]], str], trtexec: str = "trtexec",
               workspace_mib: int = DEFAULT_WORKSPACE_MIB, timing_cache: Path | None = None, verify_samples: int = 64,
               limits: BuilderLimits | None = None, gpu: GpuInfo | None = None,
               max_drop: float | None = None, run: Callable[..., list[Any]] | None = None,
               compat: EngineCompat | None = None, lean_runtime: str | None = None, jetson: bool = False,
               progress: Callable[[str], None] = lambda msg: print(f"auto: {msg}", file=sys.stderr),
               ) -> dict[str, Any]:
    """``--precision auto``: build an engine of every precision the bundle has ONNX for, check each against ONNX
    Runtime on the bundle's images (acceptance table + :func:`accuracy_budget`), time each with the one trtexec
    recipe (:func:`trtexec_benchmark_command` at batch 1 and the profile's opt batch, run by ``trtexec_run``), and
    move the fastest that passes to ``engine``. Returns the selection record (precision_auto.run_auto); the other
    candidates' engines are deleted. ``run`` runs an engine for the check (default :func:`run_engine`); ``compat``
    builds every candidate version/hardware-compatible (:mod:`.engine_compat`), ``lean_runtime`` is the lean
    runtime library that checks candidates built without theirs. Each engine is built from the attention form
    :func:`.attention_form.choose_onnx` picks (``jetson``: on a Jetson)."""
    import shutil

    batches, labels, inputs = verification_set(bundle, manifest, profile, verify_samples)
    onnx = {p: bundle / art["path"] if (art := onnx_artifact(manifest, p)) else None
            for p in precision_auto.CANDIDATES}
    reference_top1 = None
    if labels is not None and onnx["fp32"] is not None and onnx["fp32"].is_file():
        reference_top1 = onnx_top1(onnx["fp32"], batches, labels, profile.input_name)
    budget = accuracy_budget(manifest, reference_top1, max_drop)
    work = Path(tempfile.mkdtemp(prefix=".auto-", dir=engine.parent))
    builds: dict[str, dict[str, Any]] = {}  # precision -> build_record(...) of its engine (+ its attention form)
    built_from: dict[str, str] = {}  # precision -> the bundle file its engine was built from

    def build(precision: str) -> str:
        if onnx[precision] is None or not onnx[precision].is_file():
            raise FileNotFoundError(f"the bundle has no {precision} ONNX")
        # the ONNX Attention-op form where this TensorRT parses it, else (or when rejected) the MatMul form; every
        # candidate is still checked against ONNX Runtime on its MatMul form (onnx[precision])
        choice = attention_form.choose_onnx(bundle, manifest, precision, str(trt.__version__), jetson)
        (data, info), used, form = attention_form.build_with_fallback(choice, lambda path: build_serialized_engine(
            trt, path, profile, workspace_mib=workspace_mib, timing_cache=timing_cache, limits=limits, gpu=gpu,
            compat=compat))
        builds[precision] = {**build_record(info), **form}
        built_from[precision] = used.name
        path = work / f"engine.{precision}.plan"
        atomic_write_bytes(path, data)
        return str(path)

    def verify(precision: str, path: str) -> dict[str, Any]:
        try:
            return verify_engine(trt, Path(path).read_bytes(), onnx[precision], batches, input_name=profile.input_name,
                                 precision=precision, inputs=inputs, run=run, labels=labels,
                                 runtime_options=runtime_options(compat or EngineCompat(), lean_runtime))
        except EngineBuildError as exc:  # TensorRT could not load or run the engine: a failed check
            return {"passed": False, "error": str(exc)}

    def benchmark(precision: str, path: str, batch: int) -> str:
        return trtexec_run(trtexec_benchmark_command(trt_major, path, profile, batch=batch, trtexec=trtexec))

    try:
        record = precision_auto.run_auto(
            build, verify, engine_accepted, benchmark, parse_trtexec_output, budget, opt_batch=profile.opt_batch,
            recipe=trtexec_benchmark_command(trt_major, "{engine}", profile, batch=profile.opt_batch,
                                             trtexec=trtexec),
            progress=progress)
        if record["chosen"]:
            os.replace(record["engine"], engine)  # the same directory: an atomic rename
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for cand in record["candidates"]:  # only the shipped engine is kept
        cand["engine"] = engine.name if cand["precision"] == record["chosen"] else None
    record["engine"] = engine.name if record["chosen"] else None
    record["verification_inputs"] = inputs
    record["builds"] = builds
    record["built_from"] = built_from
    return record
