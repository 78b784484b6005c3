"""``build_engine`` / ``verify_built_engine``: the package's face of :mod:`ibit_deploy.devicekit`.

The version rules, the build and the verification live in the device kit, the package every bundle also carries
(run by its ``build_engine.py``); this module adds the package's conventions around it: lazy imports,
:class:`~ibit_deploy.errors.BackendUnavailable`, atomic writes, and explicit seams (``trt``, ``run``) through which
tests pass a fake TensorRT module or engine runner.

One path serves TensorRT 10.x and 11.x: a strongly typed network built from the precision-typed ONNX
(``model.fp16.onnx``, ``model.int8.onnx`` with symmetric Q/DQ). ``legacy_precision`` ("fp16"/"int8") instead builds
a weakly typed network with ``BuilderFlag.FP16``/``INT8``; that exists on TensorRT 10.x only (11.x removed the flags,
the INT8 calibrators and precision constraints), and asking for it on 11.x raises ValueError.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..devicekit import attention_form, auto_build, build, refit, session, verify
from ..devicekit.attention_form import OnnxChoice
from ..devicekit.build import DEFAULT_WORKSPACE_MIB
from ..devicekit.build_limits import probe_gpu, resolve_limits
from ..devicekit.engine_compat import EngineCompat
from ..devicekit.fileio import atomic_write_bytes, sha256_file
from ..devicekit.profile import EngineProfile
from ..devicekit.session import CudaUnavailable
from ..devicekit.trtexec_tool import find_trtexec
from ..errors import BackendUnavailable


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or BackendUnavailable saying how to get it."""
    try:
        import tensorrt
    except Exception as exc:  # ImportError, or the PyPI stub failing to download the real wheel
        raise BackendUnavailable(
            f"TensorRT is not available: `import tensorrt` failed ({type(exc).__name__}: {exc}). On a Jetson it "
            f"comes with JetPack (python3-libnvinfer); on a desktop install NVIDIA's tensorrt wheel. The engine can "
            f"also be built on the device with the bundle's build_engine.sh (trtexec).") from exc
    return tensorrt


def require_cuda_device(device_count: Callable[[], int | None] = session.cuda_device_count) -> None:
    """Raise BackendUnavailable when cuda-python reports no CUDA GPU (unknown without cuda-python: carry on)."""
    if device_count() == 0:
        raise BackendUnavailable("no CUDA GPU is visible (cudaGetDeviceCount reports none or the NVIDIA driver is "
                                 "missing): TensorRT engines are built on the GPU that will run them")


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, profile: EngineProfile, *,
                 workspace_mib: int = DEFAULT_WORKSPACE_MIB, timing_cache: str | os.PathLike | None = None,
                 strongly_typed: bool = True, legacy_precision: str | None = None, trt: Any = None,
                 device_count: Callable[[], int | None] = session.cuda_device_count,
                 limits: dict[str, Any] | None = None, refit: str | None = None,
                 compat: EngineCompat | None = None,
                 onnx_choice: Callable[[str], OnnxChoice] | None = None) -> dict[str, Any]:
    """Build ``engine_path`` from ``onnx_path`` for ``profile`` (its batch range, tuned for its opt batch).

    ``onnx_choice``: given the installed TensorRT's version, the attention form to build
    (:func:`ibit_deploy.devicekit.attention_form.choose_onnx` bound to a bundle); the build then follows
    :func:`~ibit_deploy.devicekit.attention_form.build_with_fallback`, as the device kit's does, and the description
    gains ``built_from`` (the file's name) and the form record (``attention_form``, ``attention_note``, ...).

    ``limits``: builder limits given by the user (:func:`devicekit.build_limits.resolve_limits` keywords); the
    others come from the device class of the GPU here (``workspace_mib`` is the fallback workspace when no limits
    are given and no GPU is detected). ``refit``: ``"refittable"`` or ``"stripped"`` (weight-stripped) builds a
    refittable engine (:mod:`ibit_deploy.devicekit.refit`). ``timing_cache``, if given, is loaded when it matches this GPU and TensorRT
    (else set aside) and written back atomically. ``compat``: a version- and/or hardware-compatible engine
    (:mod:`ibit_deploy.devicekit.engine_compat`). ``trt`` is the TensorRT
    module to use (default: ``import tensorrt``) and ``device_count`` how GPUs are counted: the seams tests use.
    Returns the build description (TensorRT version, typing, flags, shapes, timing, warnings) plus ``engine``,
    ``engine_sha256`` and ``engine_bytes``.

    Raises BackendUnavailable without TensorRT or a CUDA GPU, FileNotFoundError for a missing ONNX file,
    ValueError for bad arguments (including legacy precision on TensorRT >= 11), EngineBuildError when TensorRT's
    parser or builder fails (with its messages).
    """
    if legacy_precision is not None and legacy_precision not in ("fp16", "int8"):
        raise ValueError(f"legacy_precision must be 'fp16', 'int8' or None, got {legacy_precision!r}")
    if legacy_precision is not None:
        strongly_typed = False  # builder precision flags act on weakly typed networks only
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")

    trt = trt if trt is not None else import_tensorrt()
    require_cuda_device(device_count)
    gpu = probe_gpu()
    asked = dict(limits or {})
    if workspace_mib != DEFAULT_WORKSPACE_MIB:  # the older keyword, still honoured
        asked.setdefault("workspace_mib", workspace_mib)
    resolved = resolve_limits(gpu, **asked)
    def build_from(path: Path) -> tuple[bytes, dict[str, Any]]:
        return build.build_serialized_engine(
            trt, path, profile, workspace_mib=workspace_mib, timing_cache=timing_cache,
            strongly_typed=strongly_typed, legacy_precision=legacy_precision, write_bytes=atomic_write_bytes,
            limits=resolved, gpu=gpu, refit=refit, compat=compat)

    try:
        if onnx_choice is None:
            engine, info = build_from(onnx_path)
        else:
            choice = onnx_choice(str(trt.__version__))
            (engine, info), used, form = attention_form.build_with_fallback(
                choice, build_from, say=lambda line: print(f"ibit-export: {line}", file=sys.stderr))
            info.update(form, built_from=used.name)
    except CudaUnavailable as exc:
        raise BackendUnavailable(str(exc)) from exc
    atomic_write_bytes(engine_path, engine)
    info.update(engine=str(engine_path), engine_sha256=sha256_file(engine_path), engine_bytes=len(engine))
    return info


def verify_built_engine(engine_path: str | os.PathLike, onnx_path: str | os.PathLike, precision: str,
                        profile: EngineProfile, images: np.ndarray, inputs: str, *, trt: Any = None,
                        run: Callable[..., list[Any]] | None = None, stripped: bool = False,
                        runtime_options: dict[str, Any] | None = None,
                        refit_from: str | os.PathLike | None = None) -> dict[str, Any]:
    """The kit's engine verification (:func:`verify.verify_engine`) on ``images``, chunked to the profile's batch range.

    Chunks shorter than the profile's minimum are dropped (the kit compares whole batches). ``trt``/``run`` as in
    :func:`build_engine` / :func:`verify.verify_engine`. ``stripped``: a weight-stripped engine, refitted in memory
    from ``onnx_path`` first (:func:`refit.refit_serialized`), as the device will before its first use;
    ``refit_from``: the file the engine was built from, when that is not ``onnx_path`` (an engine built from the ONNX
    Attention-op form is refitted from it and checked against the MatMul form ``onnx_path``).
    ``runtime_options``: how a version-compatible engine is opened
    (:func:`ibit_deploy.devicekit.engine_compat.runtime_options`).
    """
    hi, lo = profile.max_batch, profile.min_batch
    batches = [c for c in (images[i:i + hi] for i in range(0, len(images), hi)) if len(c) >= lo]
    if not batches:
        raise ValueError(f"no verification batch fits the engine profile [{lo}, {hi}] ({len(images)} images)")
    if trt is None and run is None:  # a caller's own engine runner may not need TensorRT's module
        trt = import_tensorrt()
    engine = Path(engine_path).read_bytes()
    if stripped:
        if trt is None:
            trt = import_tensorrt()
        engine = refit.refit_serialized(trt, engine, refit_from or onnx_path)[0]
    return verify.verify_engine(trt, engine, Path(onnx_path),
                             [np.ascontiguousarray(b, dtype=np.float32) for b in batches],
                             input_name=profile.input_name, precision=precision,
                             inputs=inputs if sum(map(len, batches)) == len(images) else
                             f"{sum(map(len, batches))} of {inputs}", run=run, runtime_options=runtime_options)


def build_engine_auto(bundle: str | os.PathLike, manifest: dict[str, Any], profile: EngineProfile,
                      engine_path: str | os.PathLike, *, timing_cache: str | os.PathLike | None = None,
                      trt: Any = None, device_count: Callable[[], int | None] = session.cuda_device_count,
                      trtexec_run: Callable[[list[str]], str] | None = None,
                      run: Callable[..., list[Any]] | None = None,
                      limits: dict[str, Any] | None = None, compat: EngineCompat | None = None) -> dict[str, Any]:
    """``--precision auto`` here (:func:`auto_build.build_auto`): build fp32/fp16/int8 engines from the bundle's ONNX, check
    each against ONNX Runtime, time each with trtexec, move the fastest that passes to ``engine_path``; return the
    selection record (``chosen`` None: every candidate failed) with ``tensorrt_version``.

    Raises BackendUnavailable without TensorRT, a CUDA GPU, trtexec (unless ``trtexec_run`` is given) or with a
    TensorRT version the kit does not know. ``trt``, ``device_count``, ``trtexec_run``, ``run``: the seams.
    """
    trt = trt if trt is not None else import_tensorrt()
    try:
        major = build.check_trt_major(build.parse_trt_version(trt.__version__)[0])
    except ValueError as exc:
        raise BackendUnavailable(f"the installed TensorRT ({trt.__version__}) cannot be used: {exc}") from exc
    require_cuda_device(device_count)
    trtexec = "trtexec"
    if trtexec_run is None:
        exe = find_trtexec()
        if exe is None:
            raise BackendUnavailable("--precision auto times every candidate with trtexec, which was not found here "
                                     "($TRTEXEC, /usr/src/tensorrt/bin/trtexec, PATH)")
        trtexec, trtexec_run = str(exe), auto_build.run_trtexec_stdout
    gpu = probe_gpu()
    try:
        record = auto_build.build_auto(trt, Path(bundle), manifest, profile, Path(engine_path), trt_major=major,
                                trtexec_run=trtexec_run, trtexec=trtexec,
                                timing_cache=Path(timing_cache) if timing_cache else None, run=run,
                                limits=resolve_limits(gpu, **(limits or {})), gpu=gpu, compat=compat)
    except CudaUnavailable as exc:
        raise BackendUnavailable(str(exc)) from exc
    record["tensorrt_version"] = str(trt.__version__)
    return record


@dataclasses.dataclass(frozen=True)
class EngineTools:
    """How an export builds and verifies an engine (``auto``: ``--precision auto``): the seam tests use to stand in
    for TensorRT and a GPU."""

    build: Callable[..., dict[str, Any]] = build_engine
    verify: Callable[..., dict[str, Any]] = verify_built_engine
    auto: Callable[..., dict[str, Any]] = build_engine_auto
