"""Building an engine: TensorRT version rules (10.x vs 11.x), the trtexec command lines (the one timing recipe),
and the Python-API build (:func:`build_serialized_engine`).

TensorRT 10 vs 11, as encoded below:
- One path works on both: a strongly typed network (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``), precision
  taken from the typed ONNX itself (``model.fp16.onnx`` carries fp16 tensors, ``model.int8.onnx`` symmetric Q/DQ).
  TensorRT 11 makes every network strongly typed (the flag is accepted and ignored; trtexec's ``--stronglyTyped``
  became a deprecated no-op, so it is passed on 10.x only).
- ``legacy`` (10.x only): a weakly typed network with ``BuilderFlag.FP16`` / ``BuilderFlag.INT8`` (trtexec
  ``--fp16`` / ``--int8``). TensorRT 11 removed these flags, INT8 calibrators and precision constraints.
- trtexec benchmarking on 10.x needs ``--useCudaGraph --noDataTransfers --useSpinWait --separateProfileRun``; 11.x
  made that behaviour the default and deprecated the flags, so they are passed on 10.x only.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import versions
from .build_limits import DEFAULT_WORKSPACE_MIB, BuilderLimits, GpuInfo, probe_gpu
from .build_memory import DeviceMemorySampler, host_peak_rss_mib
from .engine_compat import EngineCompat
from .fileio import atomic_write_bytes
from .layout import DEFAULT_ONNX, check_precision
from .profile import EngineProfile
from .refit import refit_builder_flags
from .session import EngineBuildError, create_with_gpu, import_cudart, make_logger, trt_errors
from .timing_cache import cache_key, load_timing_cache, save_timing_cache

# The version rules live in the version matrix; re-exported here for the callers that build engines.
from .versions import SUPPORTED_TRT_MAJORS, check_trt_major, parse_trt_version, supported_versions  # noqa: F401

# trtexec 10.x defaults measure enqueue overhead, copies and blocking sync along with the GPU; 11.x defaults to these.
TRT10_BENCHMARK_FLAGS = ("--useCudaGraph", "--noDataTransfers", "--useSpinWait", "--separateProfileRun")
PERCENTILES = "50,90,99"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


def onnx_precision_for(precision: str, legacy: bool = False) -> str:
    """Which of the bundle's ONNX files an engine of ``precision`` is built from.

    Strongly typed: the file of that precision. Legacy fp16 lets the builder pick fp16 kernels in the fp32 graph;
    legacy int8 still needs the Q/DQ graph (TensorRT only honours explicit quantization without a calibrator).
    """
    check_precision(precision)
    if legacy and precision == "fp16":
        return "fp32"
    return precision


def trt_build_settings(trt_major: int, precision: str, *, legacy: bool = False) -> dict[str, Any]:
    """How TensorRT ``trt_major`` builds an engine of ``precision``: network typing, builder flags, trtexec flags.

    Keys: ``trt_major``, ``precision``, ``legacy``, ``onnx_precision`` (which bundle ONNX to build from),
    ``strongly_typed``, ``builder_flags`` (``trt.BuilderFlag`` names), ``trtexec_flags`` (typing/precision flags),
    ``benchmark_flags`` (trtexec timing flags).
    """
    check_precision(precision)
    check_trt_major(trt_major)
    if legacy and trt_major >= 11:
        raise ValueError(f"legacy precision flags were removed in TensorRT 11 (found {trt_major}.x): BuilderFlag.FP16/"
                         f"INT8 and trtexec --fp16/--int8/--best no longer exist and every network is strongly typed. "
                         f"Build the typed ONNX ({DEFAULT_ONNX[precision]}) without --legacy.")
    if legacy:
        builder_flags = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}[precision]
        trtexec_flags = ["--" + flag.lower() for flag in builder_flags]
    else:
        builder_flags = []
        trtexec_flags = ["--stronglyTyped"] if trt_major == 10 else []  # a deprecated no-op on 11
    return {
        "trt_major": trt_major, "precision": precision, "legacy": legacy,
        "onnx_precision": onnx_precision_for(precision, legacy), "strongly_typed": not legacy,
        "builder_flags": builder_flags, "trtexec_flags": trtexec_flags,
        "benchmark_flags": list(TRT10_BENCHMARK_FLAGS) if trt_major == 10 else [],
    }


def _shape_spec(input_name: str, batch: int, chw: Sequence[int]) -> str:
    if not _NAME_RE.match(input_name):
        raise ValueError(f"input name {input_name!r} must match {_NAME_RE.pattern} to be passed to trtexec")
    return f"{input_name}:{batch}x" + "x".join(str(int(d)) for d in chw)


def _benchmark_args(trt_major: int, export_prefix: str | None) -> list[str]:
    args = [*trt_build_settings(trt_major, "fp32")["benchmark_flags"], f"--percentile={PERCENTILES}"]
    if export_prefix:
        args += [f"--exportTimes={export_prefix}.times.json", f"--exportProfile={export_prefix}.profile.json",
                 f"--exportLayerInfo={export_prefix}.layers.json"]
    return args


def trtexec_command(trt_major: int, onnx: str, engine: str, precision: str, profile: EngineProfile, *,
                    timing_cache: str | None = None, legacy: bool = False,
                    workspace_mib: int | None = DEFAULT_WORKSPACE_MIB, benchmark: bool = False,
                    export_prefix: str | None = None, trtexec: str = "trtexec",
                    limits: BuilderLimits | None = None, compat: EngineCompat | None = None) -> list[str]:
    """The trtexec argv that builds ``engine`` from ``onnx`` for TensorRT ``trt_major``.

    Without ``benchmark`` it stops after saving the engine (``--skipInference``); with it, trtexec then times the
    engine at the profile's opt batch with the version's benchmarking flags and percentiles, and with
    ``export_prefix`` writes ``<prefix>.times.json``, ``.profile.json`` and ``.layers.json``. ``limits`` (builder
    limits) replaces ``workspace_mib``; ``compat`` adds the engine-compatibility flags (:mod:`.engine_compat`).
    """
    name, chw = profile.input_name, profile.chw
    settings = trt_build_settings(trt_major, precision, legacy=legacy)
    argv = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}", *settings["trtexec_flags"],
            f"--minShapes={_shape_spec(name, profile.min_batch, chw)}",
            f"--optShapes={_shape_spec(name, profile.opt_batch, chw)}",
            f"--maxShapes={_shape_spec(name, profile.max_batch, chw)}",
            # keeps per-layer names and formats in the engine, so --exportLayerInfo and the inspector say something
            "--profilingVerbosity=detailed"]
    if limits is not None:
        argv += limits.trtexec_args(trt_major)
    elif workspace_mib:
        argv.append(f"--memPoolSize=workspace:{int(workspace_mib)}M")
    if compat is not None:
        argv += compat.trtexec_args()
    if timing_cache:
        argv.append(f"--timingCacheFile={timing_cache}")
    if benchmark:
        argv += [f"--shapes={_shape_spec(name, profile.opt_batch, chw)}", *_benchmark_args(trt_major, export_prefix)]
    else:
        argv.append("--skipInference")
    return argv


def trtexec_benchmark_command(trt_major: int, engine: str, profile: EngineProfile, *, batch: int | None = None,
                              export_prefix: str | None = None, trtexec: str = "trtexec") -> list[str]:
    """The trtexec argv that times an existing ``engine`` (input and shapes: ``profile``) at ``batch`` (default the
    profile's opt batch), GPU compute apart from copies. The one timing recipe: ibit-bench, ``build_engine.sh`` and
    ``--precision auto`` all time engines with it."""
    batch = profile.opt_batch if batch is None else batch
    if not profile.min_batch <= batch <= profile.max_batch:
        raise ValueError(f"trtexec benchmark batch {batch} is outside the engine profile "
                         f"[{profile.min_batch}, {profile.max_batch}]")
    return [trtexec, f"--loadEngine={engine}", f"--shapes={_shape_spec(profile.input_name, batch, profile.chw)}",
            *_benchmark_args(trt_major, export_prefix)]


def build_record(info: dict[str, Any]) -> dict[str, Any]:
    """``{"build": {...}}``: what the manifest keeps about how an engine was built (builder limits, device class,
    GPU, build time, peak host/device memory, timing-cache outcome), from :func:`build_serialized_engine`'s
    description; plus ``engine_compat`` (:mod:`.engine_compat`) beside it, which the runtimes read."""
    keys = ("builder_limits", "gpu", "build_seconds", "build_memory", "timing_cache")
    record: dict[str, Any] = {"build": {k: info[k] for k in keys if k in info}}
    if "engine_compat" in info:
        record["engine_compat"] = info["engine_compat"]
    return record


def parse_onnx(trt: Any, network: Any, logger: Any, onnx_path: Path) -> None:
    """Parse ``onnx_path`` into ``network``; on failure raise EngineBuildError listing every parser error."""
    parser = trt.OnnxParser(network, logger)
    # parse_from_file resolves external-data files relative to the model, unlike parse(bytes)
    if parser.parse_from_file(str(onnx_path)):
        return
    lines = []
    for i in range(parser.num_errors):
        err = parser.get_error(i)
        where = ""
        try:
            if err.node() >= 0:
                where = f"node {err.node()} {err.node_name() or '?'} ({err.node_operator() or '?'}): "
        except AttributeError:  # older bindings lack node_name / node_operator
            pass
        lines.append(f"  [{err.code()}] {where}{err.desc()}")
    raise EngineBuildError(f"TensorRT's ONNX parser rejected {onnx_path} with {parser.num_errors} error(s):\n"
                           + "\n".join(lines or ["  (no error recorded)"]))


def _network_settings(trt_major: int, strongly_typed: bool, legacy_precision: str | None) -> tuple[bool, list[str]]:
    if legacy_precision is not None:
        if strongly_typed:
            raise ValueError("legacy_precision needs strongly_typed=False: builder precision flags apply to weakly "
                             "typed networks only")
        settings = trt_build_settings(trt_major, legacy_precision, legacy=True)
        return False, settings["builder_flags"]
    if not strongly_typed and trt_major >= 11:
        raise ValueError(f"TensorRT {trt_major} has no weakly typed networks: use strongly_typed=True")
    return strongly_typed, []


def build_serialized_engine(trt: Any, onnx_path: str | os.PathLike, profile: EngineProfile, *,
                            workspace_mib: int = DEFAULT_WORKSPACE_MIB, timing_cache: str | os.PathLike | None = None,
                            strongly_typed: bool = True, legacy_precision: str | None = None,
                            write_bytes: Callable[[Path, bytes], None] = atomic_write_bytes,
                            limits: BuilderLimits | None = None, gpu: GpuInfo | None = None,
                            refit: str | None = None,
                            compat: EngineCompat | None = None) -> tuple[bytes, dict[str, Any]]:
    """Build an engine with the TensorRT module ``trt``; return (serialized engine, build description).

    Builder -> network (STRONGLY_TYPED unless ``legacy_precision``) -> OnnxParser -> config (builder limits:
    ``limits``, else a workspace pool of ``workspace_mib``; timing cache; one optimization profile over the batch
    axis) -> build_serialized_network. The timing cache is keyed by TensorRT version and ``gpu`` (default: probed
    through cuda-python; :mod:`.timing_cache`): loaded when it matches, set aside with a warning when not, written
    back (with ``write_bytes``) after the build. The description records the limits, the build time and the peak
    host and device memory (:mod:`.build_memory`). ``refit``: build a refittable engine, ``"refittable"`` or
    ``"stripped"`` (weight-stripped), see :mod:`.refit`.
    ``compat`` (default: none) makes a version- and/or
    hardware-compatible engine (:mod:`.engine_compat`; refused on a Jetson for hardware compatibility).
    """
    onnx_path, input_name = Path(onnx_path), profile.input_name
    major, minor = parse_trt_version(trt.__version__)
    check_trt_major(major)
    typed, flag_names = _network_settings(major, strongly_typed, legacy_precision)
    flag_names = flag_names + refit_builder_flags(refit)
    logger = make_logger(trt)
    builder = create_with_gpu(trt.Builder, logger, "builder")
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED) if typed else 0
    network = builder.create_network(flags)
    parse_onnx(trt, network, logger, onnx_path)

    inputs = {network.get_input(i).name: network.get_input(i) for i in range(network.num_inputs)}
    if input_name not in inputs:
        raise EngineBuildError(f"{onnx_path} has no input named {input_name!r}; its inputs are {sorted(inputs)}")
    graph_shape = tuple(inputs[input_name].shape)
    chw = profile.chw
    if len(graph_shape) != 4 or any(int(g) >= 0 and int(g) != d for g, d in zip(graph_shape[1:], chw, strict=True)):
        raise EngineBuildError(f"input {input_name!r} of {onnx_path} has shape {graph_shape}; the profile asks for "
                               f"(batch, {', '.join(map(str, chw))})")

    limits = limits or BuilderLimits(workspace_mib=int(workspace_mib))
    gpu = gpu or probe_gpu()
    config = builder.create_builder_config()
    try:
        limits.apply(trt, config)
    except ValueError as exc:  # a limit this TensorRT cannot take: the caller's input, named
        raise ValueError(f"builder limits: {exc}") from exc
    compat = compat or EngineCompat()
    if (why := compat.refit_refusal(refit)) is not None:
        raise ValueError(why)
    try:
        compat.check(str(trt.__version__), jetson=versions.read_l4t_release() is not None,
                     compute_capability=gpu.compute_capability if gpu else None)
    except ValueError as exc:  # a compatibility this TensorRT or device cannot build: the caller's input, named
        raise ValueError(f"engine compatibility: {exc}") from exc
    compat.apply(trt, config)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer info for the inspector and trtexec
    for name in flag_names:
        config.set_flag(getattr(trt.BuilderFlag, name))
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(input_name, profile.shape(profile.min_batch), profile.shape(profile.opt_batch),
                          profile.shape(profile.max_batch))
    config.add_optimization_profile(trt_profile)

    key = cache_key(str(trt.__version__), gpu)
    cache_info: dict[str, Any] = {"path": None, "loaded": False}
    if timing_cache:
        cache_info = load_timing_cache(trt, config, Path(timing_cache), key)

    try:
        cudart = import_cudart()
    except ImportError:
        cudart = None
    start = time.perf_counter()
    with DeviceMemorySampler(cudart) as memory:
        serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path}"
                               + trt_errors(logger))
    if timing_cache:
        save_timing_cache(config, Path(timing_cache), key, write_bytes)
        cache_info["saved"] = True

    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    info = {
        "onnx": str(onnx_path), "tensorrt_version": str(trt.__version__), "trt_major": major, "trt_minor": minor,
        "strongly_typed": typed, "builder_flags": flag_names, "legacy_precision": legacy_precision, "refit_mode": refit,
        "input": {"name": input_name, "shape": ["batch", *chw]},
        "outputs": [{"name": o.name, "shape": [int(d) if int(d) >= 0 else "batch" for d in o.shape]} for o in outputs],
        "batch_range": profile.batch_range, "opt_batch": profile.opt_batch, "workspace_mib": limits.workspace_mib,
        "builder_limits": limits.record(), "gpu": gpu.record() if gpu else None,
        "engine_compat": compat.record(),
        "timing_cache": cache_info, "build_seconds": round(seconds, 3),
        "build_memory": {"host_peak_rss_mib": host_peak_rss_mib(), **memory.record()},
        "warnings": [msg for level, msg in logger.messages if level == 2][:20],
    }
    return bytes(serialized), info
