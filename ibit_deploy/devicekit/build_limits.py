"""Builder limits that let an engine build fit a small device, and their defaults per device class.

:class:`BuilderLimits` holds the memory-pool (workspace) limit, the builder optimization level, the number of
auxiliary streams and the tactic sources; :meth:`BuilderLimits.apply` sets them on a TensorRT builder config (each
gated by the version matrix, :mod:`.versions`), :meth:`~BuilderLimits.trtexec_args` gives trtexec's spelling and
:meth:`~BuilderLimits.record` what the manifest keeps. :data:`DEVICE_CLASSES` is THE rule that picks the defaults from
what cuda-python reports (:func:`probe_gpu`: name, total memory, compute capability, integrated or not); the first
row that matches wins.

The defaults are this kit's choices, not measurements: less workspace, a lower optimization level (fewer tactics
timed: a shorter build that may give a slower engine) and no auxiliary streams (each stream needs its own
activation memory) on an 8 GB Orin; TensorRT's own defaults elsewhere except the workspace. Untested on a GPU.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from . import versions
from .numbers import MEBIBYTES, Range, argtype

DEFAULT_WORKSPACE_MIB = 1024
OPTIMIZATION_LEVELS = range(0, 6)  # TensorRT: 0 (fastest build) .. 5, default 3
OPTIMIZATION_LEVEL = Range(0, 5, integer=True)  # the same rule at parse time
AUX_STREAMS = Range(0, 64, integer=True)  # 0: none; more streams than any GPU runs concurrently is a typo


@dataclasses.dataclass(frozen=True)
class GpuInfo:
    """What the kit needs to know about the GPU it builds on."""

    name: str
    total_mib: int
    compute_capability: tuple[int, int]
    integrated: bool

    def record(self) -> dict[str, Any]:
        return {"name": self.name, "total_mib": self.total_mib,
                "compute_capability": f"{self.compute_capability[0]}.{self.compute_capability[1]}",
                "integrated": self.integrated}


@dataclasses.dataclass(frozen=True)
class DeviceClass:
    """A row of the device-class rule: the GPUs it matches and the builder defaults it gets."""

    key: str
    title: str
    workspace_mib: int
    optimization_level: int | None = None  # None: TensorRT's default
    aux_streams: int | None = None  # None: TensorRT's heuristic
    integrated: bool | None = None  # match: None = either
    compute_capabilities: tuple[tuple[int, int], ...] = ()  # match: empty = any
    max_total_mib: int | None = None  # match: at most this much memory

    def matches(self, gpu: GpuInfo) -> bool:
        return ((self.integrated is None or gpu.integrated == self.integrated)
                and (not self.compute_capabilities or gpu.compute_capability in self.compute_capabilities)
                and (self.max_total_mib is None or gpu.total_mib <= self.max_total_mib))


DEVICE_CLASSES: tuple[DeviceClass, ...] = (
    # Orin is compute capability 8.7; the 8 GB modules (Orin Nano 8 GB, Orin NX 8 GB) report a little under 8 GiB.
    DeviceClass("orin-8gb", "Jetson Orin with <= 8 GB (Orin Nano, Orin NX 8 GB)", 512, 2, 0,
                integrated=True, compute_capabilities=((8, 7),), max_total_mib=8192),
    DeviceClass("orin", "Jetson Orin NX 16 GB / AGX Orin", 1024, None, 0, integrated=True,
                compute_capabilities=((8, 7),)),
    # Thor: compute capability 10.1 with CUDA 12.x toolkits, renumbered 11.0 from CUDA 13.
    DeviceClass("thor", "Jetson Thor", 2048, integrated=True, compute_capabilities=((10, 1), (11, 0))),
    DeviceClass("desktop", "desktop / server GPU (or not detected)", DEFAULT_WORKSPACE_MIB),
)


def device_class(gpu: GpuInfo | None) -> DeviceClass:
    """The first row of :data:`DEVICE_CLASSES` matching ``gpu`` (no GPU information: the last, general row)."""
    if gpu is not None:
        for row in DEVICE_CLASSES:
            if row.matches(gpu):
                return row
    return DEVICE_CLASSES[-1]


def device_class_by_key(key: str) -> DeviceClass:
    for row in DEVICE_CLASSES:
        if row.key == key:
            return row
    raise ValueError(f"unknown device class {key!r}; expected one of {[r.key for r in DEVICE_CLASSES]}")


def probe_gpu(device: int = 0) -> GpuInfo | None:
    """Name, total memory, compute capability and integrated-ness of GPU ``device`` through cuda-python; None
    when cuda-python or a GPU is missing (the defaults then come from the general row). Untested on a GPU."""
    from .session import cuda_check, import_cudart

    try:
        cudart = import_cudart()
        props = cuda_check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = props.name
        name = (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)).strip()
        return GpuInfo(name, int(props.totalGlobalMem) >> 20, (int(props.major), int(props.minor)),
                       bool(props.integrated))
    except Exception:  # no cuda-python, no GPU, or a stand-in without these fields: defaults, never a failure
        return None


def tactic_source_names(trt_version: str) -> tuple[str, ...]:
    """The ``trt.TacticSource`` names the kit may pass with TensorRT ``trt_version`` (from the version matrix)."""
    names = tuple(versions.feature("tactic_sources").bindings[2:])  # EDGE_MASK_CONVOLUTIONS, JIT_CONVOLUTIONS
    if versions.has("library_tactics", trt_version):
        names = tuple(versions.feature("library_tactics").bindings) + names
    return tuple(n.split(".", 1)[1] for n in names)


@dataclasses.dataclass(frozen=True)
class BuilderLimits:
    """The limits one build runs under. ``None`` leaves TensorRT's default."""

    workspace_mib: int = DEFAULT_WORKSPACE_MIB
    optimization_level: int | None = None
    aux_streams: int | None = None
    tactic_sources: tuple[str, ...] | None = None
    device_class: str | None = None

    def check(self, trt_version: str | None = None) -> BuilderLimits:
        """ValueError naming the value and what was expected (and, with ``trt_version``, what that version has)."""
        if isinstance(self.workspace_mib, bool) or not isinstance(self.workspace_mib, int) or self.workspace_mib < 1:
            raise ValueError(f"workspace limit must be a positive number of MiB, got {self.workspace_mib!r}")
        if self.optimization_level is not None and self.optimization_level not in OPTIMIZATION_LEVELS:
            raise ValueError(f"builder optimization level must be 0..5 (TensorRT's default 3), got "
                             f"{self.optimization_level!r}")
        if self.aux_streams is not None and (not isinstance(self.aux_streams, int) or self.aux_streams < 0):
            raise ValueError(f"auxiliary streams must be >= 0, got {self.aux_streams!r}")
        if self.tactic_sources is not None and trt_version is not None:
            allowed = tactic_source_names(trt_version)
            bad = [s for s in self.tactic_sources if s not in allowed]
            if bad:
                raise ValueError(f"tactic source(s) {', '.join(bad)} not available with TensorRT {trt_version}; "
                                 f"it has {', '.join(allowed)} (devicekit/versions.py)")
        return self

    def apply(self, trt: Any, config: Any) -> None:
        """Set the limits on TensorRT builder ``config``."""
        version = str(trt.__version__)
        self.check(version)
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(self.workspace_mib) << 20)
        if self.optimization_level is not None:
            versions.require("builder_optimization_level", version)
            config.builder_optimization_level = int(self.optimization_level)
        if self.aux_streams is not None:
            versions.require("aux_streams", version)
            config.max_aux_streams = int(self.aux_streams)
        if self.tactic_sources is not None:
            versions.require("tactic_sources", version)
            mask = 0
            for name in self.tactic_sources:
                mask |= 1 << int(getattr(trt.TacticSource, name))
            config.set_tactic_sources(mask)

    def trtexec_args(self, trt_major: int) -> list[str]:
        """The same limits as trtexec flags (``--tacticSources`` lists every source of the version, + or -)."""
        args = [f"--memPoolSize=workspace:{int(self.workspace_mib)}M"]
        if self.optimization_level is not None:
            args.append(f"--builderOptimizationLevel={int(self.optimization_level)}")
        if self.aux_streams is not None:
            args.append(f"--maxAuxStreams={int(self.aux_streams)}")
        if self.tactic_sources is not None:
            every = tactic_source_names(f"{trt_major}.0")
            args.append("--tacticSources=" + ",".join(("+" if s in self.tactic_sources else "-") + s for s in every))
        return args

    def record(self) -> dict[str, Any]:
        """What the manifest keeps (None: TensorRT's default was left)."""
        return {"workspace_mib": self.workspace_mib, "optimization_level": self.optimization_level,
                "aux_streams": self.aux_streams,
                "tactic_sources": list(self.tactic_sources) if self.tactic_sources is not None else None,
                "device_class": self.device_class}


def resolve_limits(gpu: GpuInfo | None, *, device_class_key: str | None = None, workspace_mib: int | None = None,
                   optimization_level: int | None = None, aux_streams: int | None = None,
                   tactic_sources: tuple[str, ...] | None = None) -> BuilderLimits:
    """The limits of a build: the device class's defaults (``device_class_key`` forces a row), each overridden by
    the value given."""
    row = device_class_by_key(device_class_key) if device_class_key else device_class(gpu)
    return BuilderLimits(
        workspace_mib=row.workspace_mib if workspace_mib is None else workspace_mib,
        optimization_level=row.optimization_level if optimization_level is None else optimization_level,
        aux_streams=row.aux_streams if aux_streams is None else aux_streams,
        tactic_sources=tactic_sources, device_class=row.key).check()


def parse_tactic_sources(text: str) -> tuple[str, ...] | None:
    """``"jit_convolutions,edge_mask_convolutions"`` -> names; ``"default"`` -> None (TensorRT's set)."""
    if text.strip().lower() == "default":
        return None
    names = tuple(part.strip().upper() for part in text.split(",") if part.strip())
    if not names:
        raise ValueError(f"--tactic-sources: expected a comma list of TacticSource names or 'default', got {text!r}")
    return names


def add_limit_arguments(parser: Any) -> None:
    """The builder-limit flags, shared by ``build_engine.py`` and ``ibit-export`` (defaults: the device class)."""
    g = parser.add_argument_group("builder limits (default: the device class detected, devicekit/build_limits.py)")
    g.add_argument("--workspace-mib", type=argtype(MEBIBYTES, "--workspace-mib"), default=None,
                   help="builder memory-pool (workspace) limit in MiB")
    g.add_argument("--builder-optimization-level", type=argtype(OPTIMIZATION_LEVEL, "--builder-optimization-level"),
                   default=None, metavar="0..5",
                   help="TensorRT builder optimization level (lower: shorter build, maybe slower engine)")
    g.add_argument("--aux-streams", type=argtype(AUX_STREAMS, "--aux-streams"), default=None, metavar="N",
                   help="auxiliary streams TensorRT may use (0: none, least memory)")
    g.add_argument("--tactic-sources", default=None, metavar="LIST",
                   help="TacticSource names to enable, comma-separated (e.g. jit_convolutions,edge_mask_convolutions;"
                        " cublas/cublas_lt/cudnn on TensorRT 10 only), or 'default'")
    g.add_argument("--device-class", choices=[r.key for r in DEVICE_CLASSES], default=None,
                   help="take the defaults of this device class instead of the detected one")


def limits_from_args(args: Any, gpu: GpuInfo | None) -> BuilderLimits:
    """:func:`resolve_limits` from the parsed flags; ValueError naming the bad value."""
    sources = parse_tactic_sources(args.tactic_sources) if args.tactic_sources is not None else None
    return resolve_limits(gpu, device_class_key=args.device_class, workspace_mib=args.workspace_mib,
                          optimization_level=args.builder_optimization_level, aux_streams=args.aux_streams,
                          tactic_sources=sources)
