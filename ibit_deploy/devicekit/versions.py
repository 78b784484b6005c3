"""THE version matrix: JetPack -> TensorRT -> CUDA -> the TensorRT features this kit may use there. One table.

``PLATFORMS`` are the rows (what ships where), ``FEATURES`` the TensorRT capabilities the kit uses, each with the
TensorRT versions that have it and the binding names that carry it (tests/conformance/test_version_matrix.py checks
every feature's availability against NVIDIA's real Python bindings of every version the conformance suite runs).
:func:`detect` finds the row of the installed TensorRT (and, on a Jetson, ``/etc/nv_tegra_release``), and
:func:`describe` is the line ``build_engine.py`` prints. A TensorRT major outside :data:`SUPPORTED_TRT_MAJORS` is
refused by :func:`check_trt_major` with the message it always had.

Sources (read 2026; cite these when a row changes):
- JetPack 6.1 / 6.2 = TensorRT 10.3, CUDA 12.6: Torch-TensorRT's JetPack guide
  (https://docs.pytorch.org/TensorRT/getting_started/jetpack.html, "JetPack 6.2 ... CUDA 12.6, TensorRT 10.3";
  the 6.1 page says the same).
- JetPack 7.0 (Jetson Linux 38.2) / 7.1 (38.4) = TensorRT 10.13, CUDA 13.0, Thor only: NVIDIA's JetPack 7.0 / 7.1
  archive pages (https://developer.nvidia.com/embedded/jetpack/downloads/archive-7.0, -7.1: Jetson Linux 38.x, Thor),
  TensorRT Edge-LLM's support matrix (https://nvidia.github.io/TensorRT-Edge-LLM/0.11.1/user_guide/getting_started/
  support-matrix.html: Thor, JetPack 7.0 / 7.1, CUDA 13.0), and reports from the device: SAM3-TensorRT PR #24
  (R38.2.2, CUDA 13.0, TensorRT 10.13.3), roboflow/inference PR #1935 (JetPack 7.1, L4T R38.4.0, TensorRT 10.13).
- JetPack 7.2.0 (Jetson Linux 39.2) = TensorRT 10.16, CUDA 13.2, Orin and Thor: OE4T/meta-tegra PR #2224 ("JetPack
  7.2 / L4T R39.2.0 ... Both Orin and Thor ... CUDA 13.2 ... TensorRT 10.16"), Edge-LLM's matrix (JetPack 7.2.x,
  CUDA 13.2, Orin and Thor). 7.2.1 (L4T 39.2.1) keeps 10.16 (a third-party Orin guide: "JetPack 7.2.1 / Jetson
  Linux 39.2.1, CUDA 13.2, TensorRT 10.16.2"); the row matches L4T R39.2 with TensorRT 10.16.
- JetPack 7.2.2+ = TensorRT 11.4.1 on Jetson AGX Orin and Thor: "Migrating TensorRT from 10.x to 11.x on
  Jetson/JetPack" (https://docs.nvidia.com/deeplearning/tensorrt/11.4.1/api/migration/tensorrt-10x-to-11x-jetson.html:
  "TensorRT 11.4.1 supports NVIDIA JetPack 7.2.2 or later on Jetson AGX Orin and Jetson Thor ... Jetson Orin on
  JetPack 6.x is not supported"); the 11.5.0 page: 11.5 does not support JetPack, Jetson stays on 11.4.1.
- TensorRT 10.14 added ``IAttention`` (``INetworkDefinition.add_attention``) and the ONNX parser's ``Attention`` op:
  TensorRT 10.14.1 release notes (https://docs.nvidia.com/deeplearning/tensorrt/latest/getting-started/
  release-notes-10/10.14.1.html) and onnx-tensorrt's "10.14 GA Parser Update" ("Added support for the Attention
  operator"; release_10.14-GA, 2025-11-06, as mirrored at https://sourceforge.net/projects/tensorrt-backend-onnx.mirror/
  files/release_10.14-GA); 10.14 also added ``SerializationFlag.INCLUDE_REFIT``. The kit builds the ONNX
  Attention-op form from 10.14 on (devicekit/attention_form.py).
- TensorRT 11 removed BuilderFlag.FP16/INT8, weakly typed networks and the cuBLAS/cuDNN tactic sources: the
  10.x -> 11.x migration guides (Python, trtexec) and the real 11.4 bindings (no ``TacticSource.CUBLAS``).
- Version-compatible engines (BuilderFlag.VERSION_COMPATIBLE, the lean runtime) exist since 8.6 and run on newer
  runtimes of the same major (10 -> 11 also: TensorRT 11.4.1 support matrix, "Engine Portability").
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

TEGRA_RELEASE = Path("/etc/nv_tegra_release")  # Jetson Linux writes "# R36 (release), REVISION: 4.3, ..." here
_TEGRA_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?")


@dataclasses.dataclass(frozen=True)
class Platform:
    """One row: where TensorRT ``tensorrt`` (``"10.3"``; ``"10.x"`` on desktops) runs with CUDA ``cuda``."""

    name: str
    devices: str
    tensorrt: str
    cuda: str
    l4t: tuple[str, ...] = ()  # Jetson Linux releases ("R36.4") of the row; empty for desktops
    note: str = ""

    @property
    def jetson(self) -> bool:
        return bool(self.l4t)


PLATFORMS: tuple[Platform, ...] = (
    Platform("JetPack 6.1 / 6.2", "Orin Nano, Orin NX, AGX Orin", "10.3", "12.6", ("R36.4",)),
    Platform("JetPack 7.0 / 7.1", "Thor", "10.13", "13.0", ("R38.2", "R38.4")),
    Platform("JetPack 7.2.0 / 7.2.1", "Orin, Thor", "10.16", "13.2", ("R39.2",)),
    Platform("JetPack 7.2.2 and later", "AGX Orin, Thor", "11.4", "13.2", ("R39.2",),
             note="TensorRT 11.4.1 (the SBSA build); TensorRT 11.5+ does not support JetPack"),
    Platform("desktop / server", "discrete GPUs (x86-64, SBSA)", "10.x", "12.x or 13.x"),
    Platform("desktop / server", "discrete GPUs (x86-64, SBSA)", "11.x", "12.x or 13.x"),
)
SUPPORTED_TRT_MAJORS = tuple(sorted({int(p.tensorrt.split(".")[0]) for p in PLATFORMS}))


@dataclasses.dataclass(frozen=True)
class Feature:
    """A TensorRT capability the kit may use: from ``since`` up to (not including) ``until``; ``bindings`` are the
    Python names that carry it (checked against the real bindings), ``trtexec`` its trtexec flags."""

    key: str
    title: str
    since: tuple[int, int]
    until: tuple[int, int] | None = None
    bindings: tuple[str, ...] = ()
    trtexec: tuple[str, ...] = ()
    jetson: bool = True

    def available(self, version: tuple[int, int], jetson: bool = False) -> bool:
        """True when TensorRT ``version`` has it (and, on a Jetson, the kit offers it there)."""
        if jetson and not self.jetson:
            return False
        return self.since <= version and (self.until is None or version < self.until)

    def span(self) -> str:
        """``">= 10.14"``, ``"10.x only"``: the versions in words."""
        if self.until is None:
            return f">= {self.since[0]}.{self.since[1]}"
        if self.until == (self.since[0] + 1, 0) and self.since[1] == 0:
            return f"{self.since[0]}.x only"
        return f"{self.since[0]}.{self.since[1]} to < {self.until[0]}.{self.until[1]}"


FEATURES: tuple[Feature, ...] = (
    Feature("strongly_typed", "strongly typed networks", (10, 0),
            bindings=("NetworkDefinitionCreationFlag.STRONGLY_TYPED",), trtexec=("--stronglyTyped",)),
    Feature("legacy_precision", "legacy precision flags (weakly typed + FP16/INT8)", (10, 0), (11, 0),
            bindings=("BuilderFlag.FP16", "BuilderFlag.INT8"), trtexec=("--fp16", "--int8")),
    Feature("memory_pool_limit", "memory-pool (workspace) limit", (10, 0),
            bindings=("IBuilderConfig.set_memory_pool_limit", "MemoryPoolType.WORKSPACE"),
            trtexec=("--memPoolSize",)),
    Feature("builder_optimization_level", "builder optimization level", (10, 0),
            bindings=("IBuilderConfig.builder_optimization_level",), trtexec=("--builderOptimizationLevel",)),
    Feature("aux_streams", "auxiliary streams", (10, 0),
            bindings=("IBuilderConfig.max_aux_streams",), trtexec=("--maxAuxStreams",)),
    Feature("tactic_sources", "tactic sources", (10, 0),
            bindings=("IBuilderConfig.set_tactic_sources", "IBuilderConfig.get_tactic_sources",
                      "TacticSource.EDGE_MASK_CONVOLUTIONS", "TacticSource.JIT_CONVOLUTIONS"),
            trtexec=("--tacticSources",)),
    Feature("library_tactics", "cuBLAS / cuBLASLt / cuDNN tactic sources", (10, 0), (11, 0),
            bindings=("TacticSource.CUBLAS", "TacticSource.CUBLAS_LT", "TacticSource.CUDNN")),
    Feature("timing_cache", "timing cache", (10, 0),
            bindings=("IBuilderConfig.create_timing_cache", "IBuilderConfig.set_timing_cache",
                      "ITimingCache.serialize"), trtexec=("--timingCacheFile",)),
    Feature("version_compatible", "version-compatible engines (lean runtime)", (10, 0),
            bindings=("BuilderFlag.VERSION_COMPATIBLE", "BuilderFlag.EXCLUDE_LEAN_RUNTIME",
                      "Runtime.engine_host_code_allowed", "Runtime.load_runtime"),
            trtexec=("--versionCompatible", "--excludeLeanRuntime")),
    # The kit builds an engine on the Jetson it runs on; hardware compatibility targets desktop GPU families, so
    # the kit does not offer it on a Jetson (a choice of this kit, not a TensorRT statement).
    Feature("hardware_compatible", "hardware-compatible engines (Ampere+)", (10, 0), jetson=False,
            bindings=("IBuilderConfig.hardware_compatibility_level", "HardwareCompatibilityLevel.AMPERE_PLUS"),
            trtexec=("--hardwareCompatibilityLevel",)),
    Feature("refit", "refittable engines", (10, 0),
            bindings=("BuilderFlag.REFIT", "Refitter.refit_cuda_engine"), trtexec=("--refit",)),
    Feature("weight_stripping", "weight-stripped engines", (10, 0),
            bindings=("BuilderFlag.STRIP_PLAN", "BuilderFlag.REFIT_IDENTICAL"), trtexec=("--stripWeights",)),
    Feature("include_refit", "refittable weight-stripped serialization", (10, 14),
            bindings=("SerializationFlag.INCLUDE_REFIT",)),
    Feature("attention_layer", "IAttention layer", (10, 14), bindings=("INetworkDefinition.add_attention",)),
    Feature("onnx_attention_op", "ONNX Attention op (opset 23) in the parser", (10, 14)),
)
_FEATURES = {f.key: f for f in FEATURES}


def parse_trt_version(version: str) -> tuple[int, int]:
    """``"10.3.0.30"`` -> ``(10, 3)``."""
    match = re.match(r"\s*(\d+)\.(\d+)", str(version))
    if not match:
        raise ValueError(f"cannot parse TensorRT version {version!r}: expected 'MAJOR.MINOR[.PATCH[.BUILD]]'")
    return int(match.group(1)), int(match.group(2))


def supported_versions() -> str:
    """``"10.x and 11.x (JetPack 6 ships 10.3)"``: what messages (here and in build_engine.sh) say is supported."""
    return " and ".join(f"{m}.x" for m in SUPPORTED_TRT_MAJORS) + " (JetPack 6 ships 10.3)"


def check_trt_major(trt_major: int) -> int:
    """``trt_major`` if this kit knows its rules, else ValueError naming the supported versions."""
    if isinstance(trt_major, bool) or not isinstance(trt_major, int) or trt_major not in SUPPORTED_TRT_MAJORS:
        raise ValueError(f"TensorRT {trt_major}.x is not supported: this kit knows TensorRT {supported_versions()}")
    return trt_major


def feature(key: str) -> Feature:
    """The feature ``key``; KeyError naming the known keys."""
    if key not in _FEATURES:
        raise KeyError(f"unknown TensorRT feature {key!r}; known: {sorted(_FEATURES)}")
    return _FEATURES[key]


def has(key: str, trt_version: str | tuple[int, int], jetson: bool = False) -> bool:
    """May the kit use feature ``key`` with TensorRT ``trt_version`` (on a Jetson when ``jetson``)?"""
    version = parse_trt_version(trt_version) if isinstance(trt_version, str) else tuple(trt_version)
    return feature(key).available(version, jetson)


def require(key: str, trt_version: str, jetson: bool = False) -> None:
    """ValueError naming the feature, the installed version and the versions that have it, when it is missing."""
    if not has(key, trt_version, jetson):
        f = feature(key)
        where = " on a Jetson" if jetson and not f.jetson else ""
        raise ValueError(f"{f.title} cannot be used with TensorRT {trt_version}{where}: the kit uses it with "
                         f"TensorRT {f.span()}{'' if f.jetson else ' on desktop GPUs'} (devicekit/versions.py)")


def read_l4t_release(path: Path | None = None) -> str | None:
    """``"R36.4.3"`` from Jetson Linux's release file (default :data:`TEGRA_RELEASE`); None off a Jetson (no file)
    or when it cannot be read."""
    try:
        head = (path or TEGRA_RELEASE).read_text(encoding="utf-8", errors="replace")[:512]
    except OSError:
        return None
    match = _TEGRA_RE.search(head)
    if not match:
        return None
    major, minor, patch = match.groups()
    return f"R{major}.{minor}" + (f".{patch}" if patch is not None else "")


def _version_matches(row: str, version: tuple[int, int]) -> bool:
    major, _, minor = row.partition(".")
    return int(major) == version[0] and (minor == "x" or int(minor) == version[1])


@dataclasses.dataclass(frozen=True)
class Detected:
    """The installed TensorRT, the Jetson Linux release (None off a Jetson) and the matching row (None: no row)."""

    tensorrt: str
    l4t: str | None
    row: Platform | None

    @property
    def jetson(self) -> bool:
        return self.l4t is not None

    def features(self) -> dict[str, bool]:
        """Every feature key -> whether the kit may use it here."""
        version = parse_trt_version(self.tensorrt)
        return {f.key: f.available(version, self.jetson) for f in FEATURES}


def detect(trt_version: str, l4t: str | None = None) -> Detected:
    """The row of TensorRT ``trt_version`` on Jetson Linux ``l4t`` (None: not a Jetson). ValueError (the kit's usual
    message) for a major outside the table; a supported major with no row (e.g. TensorRT 10.7 on a Jetson) gives
    ``row=None``, and its features still follow its version."""
    version = parse_trt_version(trt_version)
    check_trt_major(version[0])
    for row in PLATFORMS:
        if not _version_matches(row.tensorrt, version):
            continue
        if l4t is None and not row.jetson:
            return Detected(str(trt_version), None, row)
        if l4t is not None and any(l4t == p or l4t.startswith(p + ".") for p in row.l4t):
            return Detected(str(trt_version), l4t, row)
    return Detected(str(trt_version), l4t, None)


def describe(found: Detected) -> str:
    """One line: the row the kit detected and the features it may use (what ``build_engine.py`` prints)."""
    if found.row is not None:
        where = f"{found.row.name} ({found.row.devices}; CUDA {found.row.cuda})"
    elif found.jetson:
        where = "a Jetson release that is not in the version matrix (devicekit/versions.py)"
    else:
        where = "no row of the version matrix"
    l4t = f", Jetson Linux {found.l4t}" if found.l4t else ""
    flags = found.features()
    used = ", ".join(f.title for f in FEATURES if flags[f.key])
    missing = ", ".join(f"{f.title} ({f.span()}{'' if f.jetson else ', desktop'})" for f in FEATURES
                        if not flags[f.key])
    return (f"TensorRT {found.tensorrt}{l4t}: {where}. May use: {used}."
            + (f" Not here: {missing}." if missing else ""))


def _cell(f: Feature, row: Platform) -> str:
    major, _, minor = row.tensorrt.partition(".")
    if minor != "x":
        return "yes" if f.available((int(major), int(minor)), row.jetson) else "no"
    lo, hi = (int(major), 0), (int(major), 10**6)  # a desktop row stands for every minor of its major
    if not f.available(hi) and not f.available(lo):
        return "no"
    return "yes" if f.available(lo) else f"{f.since[0]}.{f.since[1]}+"


def matrix_markdown() -> str:
    """The version matrix as two Markdown tables (rows; features per row). The README carries this text verbatim."""
    lines = ["| platform | devices | TensorRT | CUDA | note |", "| --- | --- | --- | --- | --- |"]
    lines += [f"| {r.name} | {r.devices} | {r.tensorrt} | {r.cuda} | {r.note} |" for r in PLATFORMS]
    heads = [f"{r.name.replace('desktop / server', 'desktop')} ({r.tensorrt})" for r in PLATFORMS]
    lines += ["", "| feature (trtexec flag) | " + " | ".join(heads) + " |", "| --- " * (1 + len(PLATFORMS)) + "|"]
    for f in FEATURES:
        name = f.title + (f" (`{f.trtexec[0]}`)" if f.trtexec else "")
        lines.append(f"| {name} | " + " | ".join(_cell(f, r) for r in PLATFORMS) + " |")
    return "\n".join(lines)
