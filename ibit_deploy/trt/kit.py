#!/usr/bin/env python3
"""Build ``engine.plan`` from this bundle's ONNX on the device, check it against ONNX Runtime, record it.

This file is two things at once: the module ``ibit_deploy.trt.kit`` (the package's TensorRT rules, engine build,
engine run, engine verification and acceptance table: ``ibit-export`` runs this code) and, copied verbatim into every
bundle as ``build_engine.py``, the on-device kit. So it imports nothing from ibit_deploy: beside it in a bundle lie
verbatim copies of ``compare_metrics.py`` (the one logit comparison), ``locking.py`` (the bundle lock) and ``fileio.py``
(atomic writes, their temp names and hashing), which it imports as siblings there and as package modules here (see
``KIT_FILES``). Before it touches anything it applies the bundle checks ``runtime.load`` applies (every artifact path
inside the bundle, every sha256 as recorded: :func:`check_bundle_files`, which ``manifest.load_manifest`` also uses).

Run it on the machine that will run the engine (a Jetson, a desktop GPU): TensorRT engines are tied to the GPU
architecture and the TensorRT version that built them. Needs python3 and the ``tensorrt`` Python package (JetPack
ships it; on a desktop, NVIDIA's wheel); the output check also needs numpy, ``cuda-python`` and ``onnxruntime``, and
is skipped with a note when they are missing.

TensorRT 10 vs 11, as encoded below:
- One path works on both: a strongly typed network (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``), precision
  taken from the typed ONNX itself (``model.fp16.onnx`` carries fp16 tensors, ``model.int8.onnx`` symmetric Q/DQ).
  TensorRT 11 makes every network strongly typed (the flag is accepted and ignored; trtexec's ``--stronglyTyped``
  became a deprecated no-op, so it is passed on 10.x only).
- ``--legacy`` (10.x only): a weakly typed network with ``BuilderFlag.FP16`` / ``BuilderFlag.INT8`` (trtexec
  ``--fp16`` / ``--int8``). TensorRT 11 removed these flags, INT8 calibrators and precision constraints.
- ``--precision auto``: builds fp32, fp16 and int8 engines, checks each against ONNX Runtime (acceptance table and the
  bundle's accuracy budget), times each with trtexec (one recipe, batch 1 and the opt batch) and keeps the fastest
  that passes; every candidate is recorded in manifest.json (``engine_selection``). Exit 1 when none passes.
- trtexec benchmarking on 10.x needs ``--useCudaGraph --noDataTransfers --useSpinWait --separateProfileRun``; 11.x
  made that behaviour the default and deprecated the flags, so they are passed on 10.x only.

Exit codes: 0 done, 1 build or check failed, 2 bad arguments or bundle, 3 TensorRT or a GPU is not available.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import os
import re
import shlex
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

try:  # the package module ibit_deploy.trt.kit
    from ..compare_metrics import compare_logits
    from ..fileio import atomic_write_bytes, sha256_file
    from ..locking import directory_lock
    from . import precision_auto
    from .trtexec_tool import find_trtexec, parse_trtexec_output
except ImportError:  # build_engine.py in a bundle: the modules were copied beside it
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import precision_auto
    from compare_metrics import compare_logits
    from fileio import atomic_write_bytes, sha256_file
    from locking import directory_lock
    from trtexec_tool import find_trtexec, parse_trtexec_output

PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_ONNX = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
DEFAULT_ENGINE = "engine.plan"
DEFAULT_TIMING_CACHE = "timing.cache"
MANIFEST_FILE = "manifest.json"
DEFAULT_CALIBRATION = "calib.npz"
# What a bundle carries to build its engine on the device: bundle file name -> this package's module file it copies.
SCRIPT_NAME = "build_engine.py"
KIT_FILES = {SCRIPT_NAME: "trt/kit.py", "compare_metrics.py": "compare_metrics.py", "locking.py": "locking.py",
             "precision_auto.py": "trt/precision_auto.py", "trtexec_tool.py": "trt/trtexec_tool.py",
             "fileio.py": "fileio.py"}
# The TensorRT majors this kit knows the rules of: 10.x (JetPack 6 ships 10.3; desktop) and 11.x (desktop).
SUPPORTED_TRT_MAJORS = (10, 11)
DEFAULT_WORKSPACE_MIB = 1024
# trtexec 10.x defaults measure enqueue overhead, copies and blocking sync along with the GPU; 11.x defaults to these.
TRT10_BENCHMARK_FLAGS = ("--useCudaGraph", "--noDataTransfers", "--useSpinWait", "--separateProfileRun")
PERCENTILES = "50,90,99"
# The one engine acceptance table: top-1 agreement (compare_metrics "agreement", a fraction) with ONNX Runtime on the
# same ONNX that an engine of each precision must reach. ibit-export, this kit, runtime.load and ibit-bench all apply
# it through engine_acceptance / engine_accepted; the rule is also written into the manifest beside each check.
ENGINE_ACCEPTANCE = {"fp32": 0.99, "fp16": 0.98, "int8": 0.97}
ACCEPTANCE_METRIC = "agreement"
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclasses.dataclass(frozen=True)
class EngineProfile:
    """An engine's input and optimization profile: what travels together into trtexec, the builder and the runner."""

    input_name: str
    chw: tuple[int, int, int]
    min_batch: int
    opt_batch: int
    max_batch: int

    def __post_init__(self) -> None:
        check_batch_range(self.min_batch, self.opt_batch, self.max_batch)
        if len(self.chw) != 3 or any(isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.chw):
            raise ValueError(f"engine input (C, H, W) must be three positive integers, got {self.chw!r}")

    @property
    def batch_range(self) -> list[int]:
        return [self.min_batch, self.max_batch]

    def shape(self, batch: int) -> tuple[int, int, int, int]:
        return (batch, *self.chw)

    @classmethod
    def from_input_block(cls, inp: dict[str, Any]) -> EngineProfile:
        """The profile a bundle manifest's ``input`` block describes (name, shape, batch_range, opt_batch)."""
        shape = inp.get("shape") or []
        if len(shape) != 4:
            raise ValueError(f"manifest input.shape should be [batch, C, H, W], got {shape!r}")
        batch_range = inp.get("batch_range") or [1, None]
        if len(batch_range) != 2 or batch_range[1] is None:
            raise ValueError(f"manifest input.batch_range should be [min, max] with a finite max for a TensorRT "
                             f"optimization profile, got {batch_range!r}")
        lo, hi = int(batch_range[0]), int(batch_range[1])
        return cls(str(inp.get("name", "images")), tuple(int(d) for d in shape[1:]), lo,
                   int(inp.get("opt_batch", lo)), hi)


def engine_acceptance(precision: str) -> dict[str, Any]:
    """The acceptance rule for an engine of ``precision``, as written into the manifest beside its check."""
    check_precision(precision)
    return {"metric": ACCEPTANCE_METRIC, "min": ENGINE_ACCEPTANCE[precision],
            "against": "ONNX Runtime CPU on the same ONNX"}


def engine_accepted(precision: str, check: dict[str, Any]) -> bool | None:
    """Whether an engine's ``verification`` record meets the table's rule; None when it was not checked.

    Version-1 records (``top1_agreement``) are read too, so an engine a v1 manifest lists is judged by the same rule.
    """
    if not isinstance(check, dict) or "skipped" in check:
        return None
    if "error" in check:
        return False
    value = check.get(ACCEPTANCE_METRIC, check.get("top1_agreement"))
    if value is None:
        return None
    return float(value) >= ENGINE_ACCEPTANCE[precision]


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX or build the engine; the message carries TensorRT's own errors."""


class CudaUnavailable(RuntimeError):
    """No usable CUDA GPU or driver: nothing can be built or run here."""


# --------------------------------------------------------------------------------------------- version rules (pure)

def parse_trt_version(version: str) -> tuple[int, int]:
    """``"10.3.0.30"`` -> ``(10, 3)``."""
    match = re.match(r"\s*(\d+)\.(\d+)", str(version))
    if not match:
        raise ValueError(f"cannot parse TensorRT version {version!r}: expected 'MAJOR.MINOR[.PATCH[.BUILD]]'")
    return int(match.group(1)), int(match.group(2))


def check_trt_major(trt_major: int) -> int:
    """``trt_major`` if this kit knows its rules, else ValueError naming the supported versions."""
    if isinstance(trt_major, bool) or not isinstance(trt_major, int) or trt_major not in SUPPORTED_TRT_MAJORS:
        raise ValueError(f"TensorRT {trt_major}.x is not supported: this kit knows TensorRT {supported_versions()}")
    return trt_major


def supported_versions() -> str:
    """``"10.x and 11.x (JetPack 6 ships 10.3)"``: what messages (here and in build_engine.sh) say is supported."""
    return " and ".join(f"{m}.x" for m in SUPPORTED_TRT_MAJORS) + " (JetPack 6 ships 10.3)"


def check_batch_range(min_batch: int, opt_batch: int, max_batch: int) -> None:
    """Raise ValueError unless 1 <= min <= opt <= max (the optimization profile TensorRT accepts)."""
    values = {"min": min_batch, "opt": opt_batch, "max": max_batch}
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key} batch must be an integer, got {value!r}")
    if not 1 <= min_batch <= opt_batch <= max_batch:
        raise ValueError(f"batch range must satisfy 1 <= min <= opt <= max, got min={min_batch}, opt={opt_batch}, "
                         f"max={max_batch}")


def check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


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
                    export_prefix: str | None = None, trtexec: str = "trtexec") -> list[str]:
    """The trtexec argv that builds ``engine`` from ``onnx`` for TensorRT ``trt_major``.

    Without ``benchmark`` it stops after saving the engine (``--skipInference``); with it, trtexec then times the
    engine at the profile's opt batch with the version's benchmarking flags and percentiles, and with
    ``export_prefix`` writes ``<prefix>.times.json``, ``.profile.json`` and ``.layers.json``.
    """
    name, chw = profile.input_name, profile.chw
    settings = trt_build_settings(trt_major, precision, legacy=legacy)
    argv = [trtexec, f"--onnx={onnx}", f"--saveEngine={engine}", *settings["trtexec_flags"],
            f"--minShapes={_shape_spec(name, profile.min_batch, chw)}",
            f"--optShapes={_shape_spec(name, profile.opt_batch, chw)}",
            f"--maxShapes={_shape_spec(name, profile.max_batch, chw)}",
            # keeps per-layer names and formats in the engine, so --exportLayerInfo and the inspector say something
            "--profilingVerbosity=detailed"]
    if workspace_mib:
        argv.append(f"--memPoolSize=workspace:{int(workspace_mib)}M")
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


# --------------------------------------------------------------------------------------------- files and CUDA

def import_cudart() -> Any:
    """cuda-python's runtime module: ``cuda.bindings.runtime`` (12.6+) or the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6 (JetPack 6 era)
    return cudart


def cuda_check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(error, *values)`` tuple, raising RuntimeError named after the call on failure."""
    err, *values = result if isinstance(result, tuple) else (result,)
    code = int(getattr(err, "value", err))
    if code != 0:
        raise RuntimeError(f"{what} failed: CUDA error {code} ({getattr(err, 'name', err)})")
    return values[0] if len(values) == 1 else (tuple(values) or None)


def cuda_device_count() -> int | None:
    """Number of CUDA GPUs, 0 when the driver sees none, None when cuda-python is not installed (unknown)."""
    try:
        cudart = import_cudart()
    except ImportError:
        return None
    err, count = cudart.cudaGetDeviceCount()
    return int(count) if int(getattr(err, "value", err)) == 0 else 0


def cuda_device_name(device: int = 0) -> str | None:
    try:
        cudart = import_cudart()
        props = cuda_check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = props.name
        return (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)).strip()
    except Exception:  # a description only: never fail a build over it
        return None


# --------------------------------------------------------------------------------------------- TensorRT build

def make_logger(trt: Any) -> Any:
    """A TensorRT logger that prints warnings and errors and keeps them for the report and error messages."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[int, str]] = []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)  # 0 internal error, 1 error, 2 warning, 3 info, 4 verbose
            if level <= 2:
                self.messages.append((level, msg))
                print(f"[TensorRT] {'ERROR' if level <= 1 else 'WARNING'}: {msg}", file=sys.stderr)

    return _Logger()


def _errors(logger: Any) -> str:
    errors = [msg for level, msg in logger.messages if level <= 1]
    return ("; TensorRT said: " + " | ".join(errors[-5:])) if errors else ""


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
                            ) -> tuple[bytes, dict[str, Any]]:
    """Build an engine with the TensorRT module ``trt``; return (serialized engine, build description).

    Builder -> network (STRONGLY_TYPED unless ``legacy_precision``) -> OnnxParser -> config (workspace pool,
    timing cache, one optimization profile over the batch axis) -> build_serialized_network. The timing cache is
    loaded if the file exists and written back (with ``write_bytes``) after the build.
    """
    onnx_path, input_name = Path(onnx_path), profile.input_name
    major, minor = parse_trt_version(trt.__version__)
    check_trt_major(major)
    typed, flag_names = _network_settings(major, strongly_typed, legacy_precision)
    logger = make_logger(trt)
    builder = None
    try:
        builder = trt.Builder(logger)
    except Exception as exc:  # the bindings raise when the CUDA driver or GPU is missing
        raise CudaUnavailable(f"could not create a TensorRT builder (no usable CUDA GPU or driver?): {exc}") from exc
    if builder is None:
        raise CudaUnavailable("could not create a TensorRT builder (no usable CUDA GPU or driver?)" + _errors(logger))
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

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mib) << 20)
    config.profiling_verbosity = trt.ProfilingVerbosity.DETAILED  # layer info for the inspector and trtexec
    for name in flag_names:
        config.set_flag(getattr(trt.BuilderFlag, name))
    trt_profile = builder.create_optimization_profile()
    trt_profile.set_shape(input_name, profile.shape(profile.min_batch), profile.shape(profile.opt_batch),
                          profile.shape(profile.max_batch))
    config.add_optimization_profile(trt_profile)

    cache_info: dict[str, Any] = {"path": str(timing_cache) if timing_cache else None, "loaded": False}
    if timing_cache:
        cache_path = Path(timing_cache)
        blob = cache_path.read_bytes() if cache_path.is_file() else b""
        cache = config.create_timing_cache(blob)
        # ignore_mismatch=False: a cache from another GPU or TensorRT version is refused rather than misused
        if not config.set_timing_cache(cache, False):
            cache = config.create_timing_cache(b"")
            config.set_timing_cache(cache, False)
            cache_info["note"] = "existing cache did not match this GPU/TensorRT and was replaced"
        else:
            cache_info["loaded"] = bool(blob)

    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise EngineBuildError(f"TensorRT {trt.__version__} failed to build an engine from {onnx_path}"
                               + _errors(logger))
    if timing_cache:
        write_bytes(Path(timing_cache), bytes(config.get_timing_cache().serialize()))
        cache_info["saved"] = True

    outputs = [network.get_output(i) for i in range(network.num_outputs)]
    info = {
        "onnx": str(onnx_path), "tensorrt_version": str(trt.__version__), "trt_major": major, "trt_minor": minor,
        "strongly_typed": typed, "builder_flags": flag_names, "legacy_precision": legacy_precision,
        "input": {"name": input_name, "shape": ["batch", *chw]},
        "outputs": [{"name": o.name, "shape": [int(d) if int(d) >= 0 else "batch" for d in o.shape]} for o in outputs],
        "batch_range": profile.batch_range, "opt_batch": profile.opt_batch, "workspace_mib": int(workspace_mib),
        "timing_cache": cache_info, "build_seconds": round(seconds, 3),
        "warnings": [msg for level, msg in logger.messages if level == 2][:20],
    }
    return bytes(serialized), info


# --------------------------------------------------------------------------------------------- engine run

# Stage timing: events recorded on the stream around each stage of an enqueue, as (start, end) indices.
STAGE_EVENTS = {"h2d_ms": (0, 1), "compute_ms": (1, 2), "d2h_ms": (2, 3)}


class EngineSession:
    """One deserialized engine ready to run: the single engine-execution core of the kit and ``TrtRunner``.

    ``with EngineSession(trt, cudart, engine_bytes, "images") as s: s.enqueue(batch)``. Opening deserializes the
    engine, creates the execution context, finds the I/O tensors (exactly one input, ``input_name``), reads the
    optimization profile's batch range, allocates one device buffer per tensor at the profile's largest batch and binds
    it with ``set_tensor_address`` for the session's lifetime, and creates the stream. Each :meth:`enqueue` sets the
    input shape, copies in, ``execute_async_v3``, copies out, synchronizes. Closing frees the events, stream and
    buffers, then drops the context before the engine before the runtime. ``source`` names the engine file in error
    messages; None means bytes this process just built.
    """

    def __init__(self, trt: Any, cudart: Any, engine_bytes: bytes, input_name: str, *, device: int = 0,
                 source: str | None = None) -> None:
        self.trt, self.cudart = trt, cudart
        self.input_name, self.device, self.source = input_name, device, source
        self._engine_bytes = engine_bytes
        self.outputs: list[str] = []
        self.batch_range: tuple[int, int, int] | None = None  # profile (min, opt, max) batch, once open
        self._buffers: dict[str, Any] = {}
        self._capacity: dict[str, int] = {}
        self._events: list[Any] = []
        self._stream: Any = None
        self._context = self._engine = self._runtime = None

    def __enter__(self) -> EngineSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._context is not None

    def _where(self) -> str:
        return f"{self.source}: " if self.source else ""

    def open(self) -> EngineSession:
        """Deserialize, create the context, allocate and bind the buffers, create the stream (all freed on failure)."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def _open(self) -> None:
        import numpy as np

        trt, cudart = self.trt, self.cudart
        cuda_check(cudart.cudaSetDevice(self.device), "cudaSetDevice")
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self._engine_bytes)
        if self._engine is None:
            if self.source is None:
                raise EngineBuildError("TensorRT could not deserialize the engine it just built" + _errors(self._logger))
            raise EngineBuildError(f"{self.source}: TensorRT {trt.__version__} could not deserialize this engine. "
                                   f"Engines only load on the GPU architecture and TensorRT version that built them: "
                                   f"rebuild it here with the bundle's build_engine.sh" + _errors(self._logger))
        engine = self._engine
        self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [self.input_name]:
            raise ValueError(f"{self.source or 'engine'}: engine inputs are {inputs}, "
                             f"expected exactly [{self.input_name!r}]")
        self.input_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.input_name)))
        lo, opt, hi = (tuple(int(d) for d in shape) for shape in engine.get_tensor_profile_shape(self.input_name, 0))
        self.batch_range = (lo[0], opt[0], hi[0])
        # Allocate for the largest batch once; set_tensor_address binds every I/O tensor for the session's lifetime.
        self._context.set_input_shape(self.input_name, hi)
        sizes = {self.input_name: self.input_dtype.itemsize * int(np.prod(hi))}
        for name in self.outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            sizes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).itemsize * int(np.prod(shape))
        for name, nbytes in sizes.items():
            self._buffers[name] = cuda_check(cudart.cudaMalloc(max(nbytes, 1)), f"cudaMalloc ({name}, {nbytes} B)")
            self._capacity[name] = nbytes
            self._context.set_tensor_address(name, int(self._buffers[name]))
        self._stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def enqueue(self, host_batch: Any, events: bool = False) -> dict[str, Any]:
        """Run one NCHW batch within the profile: copy in, execute, copy out, synchronize; return the host outputs
        by tensor name. ``events=True`` records CUDA events between the stages for :meth:`stage_times`."""
        import numpy as np

        if not self.is_open:
            raise RuntimeError("engine session is not open; use `with EngineSession(...)` or call open() first")
        cudart, trt, engine = self.cudart, self.trt, self._engine
        host_in = np.ascontiguousarray(host_batch, dtype=self.input_dtype)
        lo, _, hi = self.batch_range
        if host_in.ndim < 1 or not lo <= host_in.shape[0] <= hi or host_in.nbytes > self._capacity[self.input_name]:
            raise ValueError(f"{self._where()}input shape {host_in.shape} is outside the engine profile "
                             f"(batch {lo} to {hi}, at most {self._capacity[self.input_name]} bytes)")
        self._context.set_input_shape(self.input_name, host_in.shape)
        host_out = {n: np.empty(tuple(self._context.get_tensor_shape(n)), dtype=trt.nptype(engine.get_tensor_dtype(n)))
                    for n in self.outputs}
        if events and not self._events:  # created on first use: plain runs never need them
            self._events = [cuda_check(cudart.cudaEventCreate(), "cudaEventCreate") for _ in range(4)]
        record = (lambda i: cuda_check(cudart.cudaEventRecord(self._events[i], self._stream), "cudaEventRecord")) \
            if events else (lambda i: None)
        record(0)
        cuda_check(cudart.cudaMemcpyAsync(self._buffers[self.input_name], host_in.ctypes.data, host_in.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
                   "cudaMemcpyAsync (input, host to device)")
        record(1)
        if not self._context.execute_async_v3(int(self._stream)):
            raise EngineBuildError(f"{self._where()}execute_async_v3 failed for input shape {host_in.shape}"
                                   + _errors(self._logger))
        record(2)
        for name, arr in host_out.items():
            cuda_check(cudart.cudaMemcpyAsync(arr.ctypes.data, self._buffers[name], arr.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream),
                       f"cudaMemcpyAsync ({name}, device to host)")
        record(3)
        cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return host_out

    def stage_times(self) -> dict[str, float]:
        """Milliseconds of each stage (``h2d_ms``, ``compute_ms``, ``d2h_ms``) of the last ``enqueue(events=True)``."""
        if not self._events:
            raise RuntimeError("no stage events recorded; call enqueue(batch, events=True) first")
        return {key: float(cuda_check(self.cudart.cudaEventElapsedTime(self._events[a], self._events[b]),
                                      "cudaEventElapsedTime")) for key, (a, b) in STAGE_EVENTS.items()}

    def close(self) -> None:
        """Free events, stream and buffers, then drop context before engine before runtime. Safe to call twice."""
        cudart = self.cudart
        for event in self._events:
            cudart.cudaEventDestroy(event)
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
        for ptr in self._buffers.values():
            cudart.cudaFree(ptr)
        self._events, self._stream, self._buffers, self._capacity = [], None, {}, {}
        self._context = None  # context before engine before runtime
        self._engine = None
        self._runtime = None


def run_engine(trt: Any, engine_bytes: bytes, batches: Sequence[Any], input_name: str = "images") -> list[Any]:
    """Run each float32 NCHW batch through the engine (one :class:`EngineSession`); return the first output per batch."""
    import numpy as np

    with EngineSession(trt, import_cudart(), engine_bytes, input_name) as session:
        return [session.enqueue(batch)[session.outputs[0]].astype(np.float32) for batch in batches]


# --------------------------------------------------------------------------------------------- output check

def verification_batches(bundle: Path, manifest: dict[str, Any], profile: EngineProfile,
                         samples: int) -> tuple[list[Any], str]:
    """Calibration images from ``calib.npz`` in chunks the profile accepts, else random inputs at min/opt/max."""
    batches, _, inputs = verification_set(bundle, manifest, profile, samples)
    return batches, inputs


def verification_set(bundle: Path, manifest: dict[str, Any], profile: EngineProfile,
                     samples: int) -> tuple[list[Any], Any, str]:
    """(batches, labels or None, description): ``calib.npz`` images (and its labels, when it has them) in chunks the
    profile accepts, else random inputs at min/opt/max without labels."""
    import numpy as np

    lo, hi = profile.min_batch, profile.max_batch
    calib = next((a["path"] for a in manifest.get("artifacts", []) if a.get("kind") == "calibration"),
                 DEFAULT_CALIBRATION)
    if (bundle / calib).is_file():
        with np.load(bundle / calib, allow_pickle=False) as data:
            images = np.asarray(data["images"][:samples], dtype=np.float32)
            labels = np.asarray(data["labels"][:samples]) if "labels" in data.files else None
        chunks = [images[i:i + hi] for i in range(0, len(images), hi)]
        chunks = [c for c in chunks if len(c) >= lo]
        if chunks:
            count = sum(len(c) for c in chunks)
            return chunks, None if labels is None else labels[:count], f"{count} images of {calib}"
    rng = np.random.default_rng(0)
    sizes = sorted({lo, profile.opt_batch, hi})
    return ([rng.standard_normal(profile.shape(n), dtype=np.float32) for n in sizes], None,
            f"random normal inputs, batches {sizes}")


def verify_engine(trt: Any, engine_bytes: bytes, onnx_path: Path, batches: Sequence[Any], *, input_name: str,
                  precision: str, inputs: str, run: Callable[..., list[Any]] | None = None,
                  labels: Any = None) -> dict[str, Any]:
    """Compare engine outputs with ONNX Runtime (CPU) on the same ONNX file, judged by the acceptance table.

    ``batches``: float32 NCHW arrays within the engine's profile (``inputs`` describes them for the record).
    ``run`` (default :func:`run_engine`) runs the engine; tests pass their own. ``labels`` (one per image) adds
    top-1 accuracies. Returns the compare_metrics record
    plus ``inputs``, ``reference``, ``acceptance`` (the rule) and ``passed``; ``{"skipped": why}`` without
    onnxruntime or numpy.
    """
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as exc:
        return {"skipped": f"onnxruntime/numpy not importable ({exc}); engine outputs were not checked"}
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reference = np.concatenate([session.run(None, {input_name: b})[0] for b in batches])
    engine_out = np.concatenate((run or run_engine)(trt, engine_bytes, batches, input_name))
    result = compare_logits(reference, engine_out, labels)  # with labels: top1 of both, top1_drop
    result.update(inputs=inputs, reference=f"onnxruntime {ort.__version__} CPU on {onnx_path.name}",
                  acceptance=engine_acceptance(precision))
    result["passed"] = bool(engine_accepted(precision, result))
    return result


def verification_summary(check: dict[str, Any], precision: str) -> str:
    """One line for a verification record: agreement against the table's rule, max |diff|, the verdict."""
    if "skipped" in check:
        return "skipped: " + check["skipped"]
    if "error" in check:
        return "FAILED: " + check["error"]
    diff = check.get("max_abs_diff")
    verdict = "passed" if engine_accepted(precision, check) else "FAILED"
    return (f"top-1 agreement {check.get('agreement', float('nan')):.4f} (needs >= {ENGINE_ACCEPTANCE[precision]}), "
            f"max |diff| {diff if diff is None else format(diff, '.3g')} on {check.get('inputs')} ({verdict})")


# --------------------------------------------------------------------------------------------- --precision auto

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
               max_drop: float | None = None, run: Callable[..., list[Any]] | None = None,
               progress: Callable[[str], None] = lambda msg: print(f"auto: {msg}", file=sys.stderr),
               ) -> dict[str, Any]:
    """``--precision auto``: build an engine of every precision the bundle has ONNX for, check each against ONNX
    Runtime on the bundle's images (acceptance table + :func:`accuracy_budget`), time each with the one trtexec
    recipe (:func:`trtexec_benchmark_command` at batch 1 and the profile's opt batch, run by ``trtexec_run``), and
    move the fastest that passes to ``engine``. Returns the selection record (precision_auto.run_auto); the other
    candidates' engines are deleted. ``run`` runs an engine for the check (default :func:`run_engine`)."""
    import shutil

    batches, labels, inputs = verification_set(bundle, manifest, profile, verify_samples)
    onnx = {p: bundle / bundle_onnx(manifest, p) for p in precision_auto.CANDIDATES}
    reference_top1 = None
    if labels is not None and onnx["fp32"].is_file():
        reference_top1 = onnx_top1(onnx["fp32"], batches, labels, profile.input_name)
    budget = accuracy_budget(manifest, reference_top1, max_drop)
    work = Path(tempfile.mkdtemp(prefix=".auto-", dir=engine.parent))

    def build(precision: str) -> str:
        if not onnx[precision].is_file():
            raise FileNotFoundError(f"the bundle has no {precision} ONNX ({onnx[precision].name})")
        data, _ = build_serialized_engine(trt, onnx[precision], profile, workspace_mib=workspace_mib,
                                          timing_cache=timing_cache)
        path = work / f"engine.{precision}.plan"
        atomic_write_bytes(path, data)
        return str(path)

    def verify(precision: str, path: str) -> dict[str, Any]:
        try:
            return verify_engine(trt, Path(path).read_bytes(), onnx[precision], batches, input_name=profile.input_name,
                                 precision=precision, inputs=inputs, run=run, labels=labels)
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
    return record


def register_selection(bundle: Path, record: dict[str, Any], entry: dict[str, Any] | None) -> dict[str, Any]:
    """Write the ``--precision auto`` record into manifest.json (``engine_selection``) and, when an engine was
    chosen, its artifact ``entry``, under the bundle lock."""
    with directory_lock(bundle, "build_engine.py"):
        manifest = load_bundle_manifest(bundle)
        manifest["engine_selection"] = record
        if entry is not None:
            manifest["artifacts"] = [*(a for a in manifest.get("artifacts", []) if a.get("path") != entry["path"]),
                                     entry]
        atomic_write_bytes(bundle / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return manifest


# --------------------------------------------------------------------------------------------- bundle and CLI

def load_bundle_manifest(bundle: Path) -> dict[str, Any]:
    path = bundle / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{bundle} has no {MANIFEST_FILE}: not a complete ibit-deploy bundle")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path} is not a valid bundle manifest (expected UTF-8 JSON): {exc}") from exc
    if not isinstance(manifest, dict):
        raise ValueError(f"{path} is not a valid bundle manifest (expected a JSON object)")
    return manifest


def check_bundle_files(bundle: str | os.PathLike, manifest: dict[str, Any], *, verify: bool = True,
                       skip: Sequence[str] = ()) -> None:
    """The bundle checks every reader applies: each artifact has a string path and sha256, the path stays inside the
    bundle, and (``verify``) the file exists with that sha256. ``skip``: paths not hashed (a file about to be
    rewritten). Raises ValueError (or FileNotFoundError for a missing file) naming the file.
    """
    bundle = Path(bundle)
    path, root = bundle / MANIFEST_FILE, bundle.resolve()
    artifacts = manifest.get("artifacts")
    if not isinstance(artifacts, list):
        raise ValueError(f"{path}: 'artifacts' must be a list, got {type(artifacts).__name__}")
    for art in artifacts:
        rel = art.get("path") if isinstance(art, dict) else None
        if not isinstance(rel, str) or not isinstance(art.get("sha256"), str):
            raise ValueError(f"{path}: every artifact needs a string 'path' and 'sha256', got {art!r}")
        if not rel or Path(rel).is_absolute() or not (bundle / rel).resolve().is_relative_to(root):
            raise ValueError(f"{path}: artifact path {rel!r} points outside the bundle {bundle}; refusing it")
    if not verify:
        return
    for art in artifacts:
        if art["path"] in skip:
            continue
        file = bundle / art["path"]
        if not file.is_file():
            raise FileNotFoundError(f"{path} lists {art['path']}, which is missing from {bundle}")
        digest = sha256_file(file)
        if digest != art["sha256"]:
            raise ValueError(f"{file} was altered after export: sha256 {digest[:12]}... does not match the "
                             f"manifest's {art['sha256'][:12]}...")


def bundle_onnx(manifest: dict[str, Any], precision: str) -> str:
    """The bundle-relative ONNX file of ``precision``: the manifest's entry, else the conventional name."""
    for art in manifest.get("artifacts", []):
        if art.get("kind") == "onnx" and art.get("precision") == precision:
            return art["path"]
    return DEFAULT_ONNX[precision]


def register_engine(bundle: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Put ``entry`` into manifest.json (replacing the entry for its path) under the bundle lock; return the manifest.

    The manifest is read again under the lock, so results another writer added since this script started are kept.
    """
    with directory_lock(bundle, "build_engine.py"):
        manifest = load_bundle_manifest(bundle)
        arts = [a for a in manifest.get("artifacts", []) if a.get("path") != entry["path"]]
        manifest["artifacts"] = [*arts, entry]
        atomic_write_bytes(bundle / MANIFEST_FILE, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return manifest


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="build_engine.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a TensorRT engine (engine.plan) from this ibit-deploy bundle's ONNX on this device, check "
                    "it against ONNX Runtime and record it in manifest.json.",
        epilog="Shapes, names and the batch range default to manifest.json. Exit codes: 0 ok, 1 build/check failed, "
               "2 bad arguments, 3 TensorRT or GPU unavailable.")
    p.add_argument("--bundle", type=Path, default=Path(__file__).resolve().parent,
                   help="bundle directory (default: the directory of this script)")
    p.add_argument("--precision", choices=(*PRECISIONS, AUTO),
                   help="engine precision (default: the one ibit-export chose); auto: build fp32, fp16 and int8, "
                        "check each against ONNX Runtime, time each with trtexec, keep the fastest that passes")
    p.add_argument("--max-drop", type=float, metavar="POINTS",
                   help="with --precision auto: top-1 points an engine may lose against the FP32 ONNX on calib.npz's "
                        "labels (default: the tightest quantization gate in manifest.json)")
    p.add_argument("--onnx", type=Path, help="ONNX file to build (default: the bundle's file for the precision)")
    p.add_argument("--engine", type=Path, help=f"engine file to write (default: BUNDLE/{DEFAULT_ENGINE})")
    p.add_argument("--min-batch", type=int)
    p.add_argument("--opt-batch", type=int)
    p.add_argument("--max-batch", type=int)
    p.add_argument("--workspace-mib", type=int, default=DEFAULT_WORKSPACE_MIB, help="builder workspace pool (MiB)")
    p.add_argument("--timing-cache", type=Path, help=f"timing cache file (default: BUNDLE/{DEFAULT_TIMING_CACHE})")
    p.add_argument("--no-timing-cache", action="store_true")
    p.add_argument("--legacy", action="store_true",
                   help="TensorRT 10.x only: weakly typed network with BuilderFlag.FP16/INT8 (removed in 11)")
    p.add_argument("--skip-build", action="store_true",
                   help="use an existing engine (e.g. built by trtexec in build_engine.sh): check and record it only")
    p.add_argument("--tensorrt-version", help="with --skip-build: the TensorRT version that built the engine")
    p.add_argument("--no-verify", action="store_true", help="do not compare engine outputs with ONNX Runtime")
    p.add_argument("--verify-samples", type=int, default=64, help="calibration images to compare (default 64)")
    p.add_argument("--report", type=Path, help="JSON report (default: the engine path with .json)")
    p.add_argument("--no-manifest", action="store_true", help="do not add the engine to manifest.json")
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec command and exit")
    p.add_argument("--trt-major", type=int, help="TensorRT major version for --print-trtexec (default: installed)")
    return p


def _resolve(args: argparse.Namespace, p: argparse.ArgumentParser) -> dict[str, Any]:
    """Fill defaults from the manifest and validate everything before TensorRT is imported."""
    bundle = args.bundle.resolve()
    engine = (args.engine or bundle / DEFAULT_ENGINE).resolve()
    try:
        manifest = load_bundle_manifest(bundle)
        # runtime.load's checks, before anything is read, built or printed; the engine is this run's output (or
        # trtexec's, with --skip-build), so its old hash does not apply
        check_bundle_files(bundle, manifest, skip=[engine.relative_to(bundle).as_posix()]
                           if engine.is_relative_to(bundle) else [])
    except (OSError, ValueError) as exc:
        p.error(str(exc))
    inp = dict(manifest.get("input", {}))
    script = next((a for a in manifest.get("artifacts", []) if a.get("path") == SCRIPT_NAME), {})
    precision = args.precision or script.get("precision") or "fp32"
    lo, hi = (inp.get("batch_range") or [1, None])[:2]
    lo = args.min_batch if args.min_batch is not None else lo
    hi = args.max_batch if args.max_batch is not None else hi
    inp.update(batch_range=[lo, hi], opt_batch=args.opt_batch if args.opt_batch is not None else inp.get("opt_batch", lo))
    if hi is None:
        p.error("manifest input.batch_range has no maximum: pass --max-batch (TensorRT needs a finite profile)")
    try:
        profile = EngineProfile.from_input_block(inp)
    except (ValueError, TypeError) as exc:
        p.error(str(exc))
    if precision != AUTO and precision not in PRECISIONS:
        p.error(f"manifest.json gives {SCRIPT_NAME} the precision {precision!r}; expected one of {PRECISIONS}")
    onnx_for = "fp32" if precision == AUTO else onnx_precision_for(precision, args.legacy)
    onnx = args.onnx or bundle / bundle_onnx(manifest, onnx_for)
    if not args.skip_build and not onnx.is_file():
        p.error(f"ONNX file not found: {onnx} (needed for the {precision} engine"
                f"{' with --legacy' if args.legacy else ''}; does the bundle contain it?)")
    if args.skip_build and not engine.is_file():
        p.error(f"--skip-build given but the engine file does not exist: {engine}")
    if args.verify_samples < 1:
        p.error(f"--verify-samples must be >= 1, got {args.verify_samples}")
    if precision == AUTO:
        clash = [flag for flag, on in (("--legacy", args.legacy), ("--skip-build", args.skip_build),
                                       ("--onnx", args.onnx), ("--print-trtexec", args.print_trtexec),
                                       ("--no-verify", args.no_verify), ("--no-manifest", args.no_manifest)) if on]
        if clash:
            p.error(f"--precision auto builds, checks and records every candidate itself; drop {', '.join(clash)}")
    if args.max_drop is not None and precision != AUTO:
        p.error("--max-drop applies to --precision auto only (a single-precision build is judged by the acceptance "
                "table)")
    if args.max_drop is not None and not 0 <= args.max_drop <= 100:
        p.error(f"--max-drop is in top-1 points, 0..100; got {args.max_drop}")
    cache = None if args.no_timing_cache else (args.timing_cache or bundle / DEFAULT_TIMING_CACHE)
    return {"bundle": bundle, "manifest": manifest, "precision": precision, "onnx": Path(onnx), "engine": engine,
            "profile": profile, "timing_cache": cache, "report": args.report or engine.with_suffix(".json")}


def engine_entry(rel: str, precision: str, profile: EngineProfile, *, sha256: str, built_from: str,
                 tensorrt: str | None, verification: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The manifest entry of an engine: its file, profile, the check and, beside it, the acceptance rule applied."""
    accepted = engine_accepted(precision, verification)
    gate: dict[str, Any] = {"passed": accepted is not False, "checked": accepted is not None}
    if accepted is False:
        gate["reason"] = verification_summary(verification, precision)
    return {"path": rel, "sha256": sha256, "kind": "engine", "precision": precision, "tensorrt": tensorrt,
            "built_from": built_from, "batch_range": profile.batch_range, "opt_batch": profile.opt_batch,
            "acceptance": engine_acceptance(precision), "verification": verification, "gate": gate, **extra}


def _supported_version(trt: Any) -> str | None:
    """None when the installed TensorRT is one this kit knows; else the message saying which it supports."""
    try:
        check_trt_major(parse_trt_version(trt.__version__)[0])
    except ValueError as exc:
        return f"build_engine.py: the installed TensorRT ({trt.__version__}) cannot be used: {exc}"
    return None


def _main_auto(args: argparse.Namespace, r: dict[str, Any], trt: Any, trt_error: str,
               trtexec_run: Callable[[list[str]], str] | None, engine_runner: Callable[..., list[Any]] | None) -> int:
    """``--precision auto``: exit 0 an engine was chosen, 1 every candidate failed (nothing recorded as passed),
    3 TensorRT, trtexec or a GPU is missing."""
    if trt is None:
        print(f"build_engine.py: {trt_error}; --precision auto builds with TensorRT's Python API.", file=sys.stderr)
        return 3
    if (message := _supported_version(trt)) is not None:
        print(message, file=sys.stderr)
        return 3
    missing = []
    if engine_runner is None:
        try:
            import_cudart()
        except ImportError:
            missing.append("cuda-python (pip install cuda-python) to run the engines")
    try:
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        missing.append("numpy and onnxruntime to check them")
    if missing:  # every candidate would go unchecked: a requirement, not a failed selection
        print(f"build_engine.py: --precision auto needs {'; '.join(missing)}", file=sys.stderr)
        return 3
    trtexec = "trtexec"
    if trtexec_run is None:
        exe = find_trtexec()
        if exe is None:
            print("build_engine.py: --precision auto times every candidate with trtexec, which was not found "
                  "($TRTEXEC, /usr/src/tensorrt/bin/trtexec, PATH); it ships with TensorRT (JetPack, NVIDIA's "
                  "tar/deb packages), not with the Python wheel.", file=sys.stderr)
            return 3
        trtexec, trtexec_run = str(exe), run_trtexec_stdout
    profile: EngineProfile = r["profile"]
    try:
        record = build_auto(trt, r["bundle"], r["manifest"], profile, r["engine"],
                            trt_major=parse_trt_version(trt.__version__)[0], trtexec_run=trtexec_run, trtexec=trtexec,
                            workspace_mib=args.workspace_mib, timing_cache=r["timing_cache"],
                            verify_samples=args.verify_samples,
                            max_drop=None if args.max_drop is None else args.max_drop / 100, run=engine_runner)
    except CudaUnavailable as exc:
        print(f"build_engine.py: {exc}", file=sys.stderr)
        return 3
    record["tensorrt_version"], record["device"] = str(trt.__version__), cuda_device_name()
    entry = None
    if record["chosen"]:
        chosen = next(c for c in record["candidates"] if c["precision"] == record["chosen"])
        try:
            rel = r["engine"].relative_to(r["bundle"]).as_posix()
        except ValueError:
            rel = None
        if rel:
            entry = engine_entry(rel, record["chosen"], profile, sha256=sha256_file(r["engine"]),
                                 built_from=bundle_onnx(r["manifest"], record["chosen"]),
                                 tensorrt=record["tensorrt_version"], verification=chosen["accuracy"],
                                 device=record["device"], selected_by="--precision auto")
    register_selection(r["bundle"], record, entry)
    atomic_write_bytes(r["report"], (precision_auto.dumps(record) + "\n").encode("utf-8"))
    print(precision_auto.format_table(record))
    print(f"engine: {r['engine'] if record['chosen'] else 'none shipped'}; report: {r['report']}")
    return precision_auto.exit_status(record)


def main(argv: Sequence[str] | None = None, *, trtexec_run: Callable[[list[str]], str] | None = None,
         engine_runner: Callable[..., list[Any]] | None = None) -> int:
    """The CLI. Seams for ``--precision auto`` (tests answer through them): ``trtexec_run`` runs one trtexec argv
    and returns its stdout (default: the trtexec found here), ``engine_runner`` runs an engine for its check
    (default :func:`run_engine`)."""
    p = _parser()
    args = p.parse_args(argv)
    r = _resolve(args, p)
    profile: EngineProfile = r["profile"]

    trt, trt_error = None, ""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or the PyPI stub failing to fetch the real wheel
        trt_error = f"the TensorRT Python package is not importable ({exc})"
    if args.print_trtexec:
        major = args.trt_major or (parse_trt_version(trt.__version__)[0] if trt else None)
        if major is None:
            p.error("--print-trtexec needs --trt-major when TensorRT is not installed")
        try:
            cmd = trtexec_command(major, str(r["onnx"]), str(r["engine"]), r["precision"], profile,
                                  timing_cache=str(r["timing_cache"]) if r["timing_cache"] else None,
                                  legacy=args.legacy, workspace_mib=args.workspace_mib)
        except ValueError as exc:
            p.error(str(exc))
        print(shlex.join(cmd))
        return 0

    if r["precision"] == AUTO:
        return _main_auto(args, r, trt, trt_error, trtexec_run, engine_runner)
    if trt is not None and not args.skip_build and (message := _supported_version(trt)) is not None:
        print(message, file=sys.stderr)
        return 3

    report: dict[str, Any] = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "precision": r["precision"], "engine": str(r["engine"])}
    if args.skip_build:
        engine_bytes = r["engine"].read_bytes()
        report.update(built_by="external (trtexec)", tensorrt_version=args.tensorrt_version)
    else:
        if trt is None:
            print(f"build_engine.py: {trt_error}. On a Jetson it comes with JetPack (python3-libnvinfer); on a "
                  f"desktop install NVIDIA's tensorrt wheel. Or build with trtexec: build_engine.sh.", file=sys.stderr)
            return 3
        try:
            engine_bytes, info = build_serialized_engine(
                trt, r["onnx"], profile, workspace_mib=args.workspace_mib, timing_cache=r["timing_cache"],
                strongly_typed=not args.legacy, legacy_precision=r["precision"] if args.legacy else None)
        except CudaUnavailable as exc:
            print(f"build_engine.py: {exc}", file=sys.stderr)
            return 3
        except ValueError as exc:
            p.error(str(exc))
        except EngineBuildError as exc:
            print(f"build_engine.py: {exc}", file=sys.stderr)
            return 1
        atomic_write_bytes(r["engine"], engine_bytes)
        report.update(info, built_by="build_engine.py (TensorRT Python API)")
    report.update(engine_sha256=sha256_file(r["engine"]), engine_bytes=r["engine"].stat().st_size,
                  onnx=str(r["onnx"]), device=cuda_device_name(),
                  tensorrt_version=str(trt.__version__) if trt else report.get("tensorrt_version"))

    if args.no_verify:
        report["verification"] = {"skipped": "--no-verify"}
    elif trt is None:
        report["verification"] = {"skipped": f"{trt_error}; engine outputs were not checked"}
    else:
        try:
            batches, inputs = verification_batches(r["bundle"], r["manifest"], profile, args.verify_samples)
            report["verification"] = verify_engine(trt, engine_bytes, r["onnx"], batches,
                                                   input_name=profile.input_name, precision=r["precision"],
                                                   inputs=inputs)
        except EngineBuildError as exc:  # TensorRT could not load or run the engine: that is a failed check
            report["verification"] = {"passed": False, "error": str(exc)}
        except (ImportError, RuntimeError) as exc:  # no cuda-python, no GPU, CUDA errors: nothing was checked
            report["verification"] = {"skipped": f"engine could not be run here: {exc}"}
    report["acceptance"] = engine_acceptance(r["precision"])
    atomic_write_bytes(r["report"], (json.dumps(report, indent=2) + "\n").encode("utf-8"))

    if not args.no_manifest:
        try:
            rel = r["engine"].relative_to(r["bundle"]).as_posix()
        except ValueError:
            rel = None
            print(f"build_engine.py: {r['engine']} is outside the bundle; manifest.json not updated", file=sys.stderr)
        if rel:
            register_engine(r["bundle"], engine_entry(
                rel, r["precision"], profile, sha256=report["engine_sha256"], built_from=r["onnx"].name,
                tensorrt=report["tensorrt_version"], verification=report["verification"], device=report["device"]))

    check = report["verification"]
    print(f"engine: {r['engine']} ({report['engine_bytes']} bytes, {r['precision']}); check: "
          f"{verification_summary(check, r['precision'])}; report: {r['report']}")
    return 1 if engine_accepted(r["precision"], check) is False else 0


if __name__ == "__main__":
    sys.exit(main())
