"""Engines that survive an upgrade: THE rule for ``--engine-compat none|version|hardware|version+hardware``.

One place owns the choices, the builder settings of each (:meth:`EngineCompat.apply` on a TensorRT builder config,
:meth:`~EngineCompat.trtexec_args` for trtexec), what the manifest keeps (:meth:`~EngineCompat.record`, the engine
entry's ``engine_compat``), how a runtime must open such an engine (:func:`runtime_options`) and which installed
TensorRT may run an engine built with version X (:func:`refusal`, used by ``runtime.load`` and the kit; the C++
runner's ``engine_compat.h`` applies the same rule and its test checks it against this one).

What TensorRT documents (NVIDIA, "Version Compatibility" / "Engine Compatibility", TensorRT 10.16 and 11.1 docs;
``Runtime.load_runtime``'s docstring in the 10.3 .. 11.4 bindings):
- By default an engine runs only on the TensorRT version that built it (and the GPU model it was built on). This
  kit compares major.minor.patch (the build number is left out).
- ``BuilderFlag.VERSION_COMPATIBLE`` (8.6+) adds a copy of the lean runtime to the plan; the engine then runs on the
  TensorRT that built it and on later versions ("engines built with TensorRT 8 work with TensorRT 9 and 10",
  "engines built with TensorRT 10 work with TensorRT 11"), never on older ones. Deserializing it runs code from the
  plan, so the runtime must be told the plan is trusted: ``IRuntime.engine_host_code_allowed = True`` (this kit
  sets it only for engines whose manifest entry says version-compatible; the bundle's sha256 check comes first).
  Version-compatible engines may be slower.
- ``BuilderFlag.EXCLUDE_LEAN_RUNTIME`` leaves the lean runtime out of the plan; the engine is then run by the lean
  runtime library of the TensorRT version that built it (``libnvinfer_lean.so``), loaded with
  ``IRuntime.load_runtime(path)``: the caller must supply that file (``lean_runtime=``, ``--lean-runtime``).
- ``HardwareCompatibilityLevel.AMPERE_PLUS`` (``IBuilderConfig.hardware_compatibility_level``): the engine runs on
  any Ampere or newer GPU (compute capability >= 8.0), built on one; it may be slower (48 KiB shared memory, no
  cuDNN/cuBLAS tactics). Not supported on JetPack, so the kit refuses it on a Jetson (:mod:`.versions`,
  feature ``hardware_compatible``).
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from . import versions

NONE, VERSION, HARDWARE = "none", "version", "hardware"
CHOICES = (NONE, VERSION, HARDWARE, f"{VERSION}+{HARDWARE}")
LEAN_EMBEDDED, LEAN_EXCLUDED = "embedded", "excluded"
HARDWARE_LEVEL = "AMPERE_PLUS"  # trt.HardwareCompatibilityLevel member
HARDWARE_TRTEXEC = "ampere+"  # trtexec --hardwareCompatibilityLevel value
MIN_HARDWARE_CC = (8, 0)  # Ampere
_VERSION_RE = re.compile(r"\s*(\d+)\.(\d+)(?:\.(\d+))?")


def parse_version(text: str) -> tuple[int, ...]:
    """``"10.3.0.30"`` -> ``(10, 3, 0)``, ``"10.3"`` -> ``(10, 3)``; ValueError naming the text otherwise."""
    match = _VERSION_RE.match(str(text))
    if not match:
        raise ValueError(f"cannot parse TensorRT version {text!r}: expected 'MAJOR.MINOR[.PATCH[.BUILD]]'")
    return tuple(int(g) for g in match.groups() if g is not None)


@dataclasses.dataclass(frozen=True)
class EngineCompat:
    """How compatible an engine is built: ``choice`` (one of :data:`CHOICES`) and, for version-compatible engines,
    whether the lean runtime is left out of the plan."""

    choice: str = NONE
    exclude_lean_runtime: bool = False

    @property
    def version(self) -> bool:
        return VERSION in self.choice.split("+")

    @property
    def hardware(self) -> bool:
        return HARDWARE in self.choice.split("+")

    def check(self, trt_version: str | None = None, *, jetson: bool = False,
              compute_capability: tuple[int, int] | None = None) -> EngineCompat:
        """ValueError naming the value and what was expected; with ``trt_version`` (and ``jetson``, the build GPU's
        ``compute_capability`` when known) also what this TensorRT and device allow."""
        if self.choice not in CHOICES:
            raise ValueError(f"--engine-compat must be one of {', '.join(CHOICES)}, got {self.choice!r}")
        if self.exclude_lean_runtime and not self.version:
            raise ValueError("--exclude-lean-runtime applies to version-compatible engines only (--engine-compat "
                             f"version or version+hardware), got --engine-compat {self.choice}")
        if trt_version is not None:
            if self.version:
                versions.require("version_compatible", str(trt_version), jetson)
            if self.hardware:
                versions.require("hardware_compatible", str(trt_version), jetson)
        if self.hardware and compute_capability is not None and tuple(compute_capability) < MIN_HARDWARE_CC:
            raise ValueError(f"--engine-compat {self.choice}: hardware-compatible (Ampere+) engines are built on an "
                             f"Ampere or newer GPU (compute capability >= 8.0); this GPU has "
                             f"{compute_capability[0]}.{compute_capability[1]}")
        return self

    def refit_refusal(self, refit: str | None) -> str | None:
        """Why an engine cannot be both refittable (``refit``: a refit mode, None for a plain engine) and built with
        these settings, None when it can. A version-compatible engine is run by its lean runtime, which NVIDIA
        documents cannot refit or serialize an engine (TensorRT's version-compatibility notes, and NVIDIA's
        technical blog "TensorRT hardware/version compatibility"), so the two are refused together."""
        if refit and self.version:
            return (f"a refittable engine (--refittable / --strip-weights / --refit) cannot be version-compatible "
                    f"(--engine-compat {self.choice}): the lean runtime that runs a version-compatible engine cannot "
                    f"refit it; choose one (hardware compatibility alone may be combined with refit)")
        return None

    def apply(self, trt: Any, config: Any) -> None:
        """Set the builder flags and the hardware compatibility level on TensorRT builder ``config``."""
        if self.version:
            config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
            if self.exclude_lean_runtime:
                config.set_flag(trt.BuilderFlag.EXCLUDE_LEAN_RUNTIME)
        if self.hardware:
            config.hardware_compatibility_level = getattr(trt.HardwareCompatibilityLevel, HARDWARE_LEVEL)

    def trtexec_args(self) -> list[str]:
        """The same settings as trtexec flags (present in trtexec 10.x and 11.x)."""
        args = []
        if self.version:
            args.append("--versionCompatible")
            if self.exclude_lean_runtime:
                args.append("--excludeLeanRuntime")
        if self.hardware:
            args.append(f"--hardwareCompatibilityLevel={HARDWARE_TRTEXEC}")
        return args

    def record(self) -> dict[str, Any]:
        """The engine entry's ``engine_compat``: the choice, the lean runtime (version-compatible engines) and the
        hardware compatibility level."""
        return {"choice": self.choice,
                "lean_runtime": (LEAN_EXCLUDED if self.exclude_lean_runtime else LEAN_EMBEDDED) if self.version
                else None,
                "hardware_compatibility_level": HARDWARE_LEVEL if self.hardware else None}

    @classmethod
    def from_record(cls, record: Any, where: str = "engine entry") -> EngineCompat:
        """The settings a manifest's ``engine_compat`` records (absent: ``none``, what engines always were);
        ValueError naming ``where`` and the value for anything else."""
        if record is None:
            return cls()
        if not isinstance(record, dict) or record.get("choice") not in CHOICES:
            raise ValueError(f"{where}: engine_compat must be an object with 'choice' one of {', '.join(CHOICES)}, "
                             f"got {record!r}")
        lean = record.get("lean_runtime")
        if lean not in (None, LEAN_EMBEDDED, LEAN_EXCLUDED):
            raise ValueError(f"{where}: engine_compat.lean_runtime must be {LEAN_EMBEDDED!r}, {LEAN_EXCLUDED!r} or "
                             f"null, got {lean!r}")
        compat = cls(record["choice"], lean == LEAN_EXCLUDED)
        if compat.exclude_lean_runtime and not compat.version:  # check() would blame flags nobody passed
            raise ValueError(f"{where}: engine_compat.lean_runtime {LEAN_EXCLUDED!r} belongs to a version-compatible "
                             f"engine (choice 'version' or 'version+hardware'), got choice {compat.choice!r}")
        return compat.check()


def recorded_version(value: Any, where: str = "engine entry") -> str | None:
    """The TensorRT version an engine entry records (its ``tensorrt``), None when absent (TensorRT's own check then
    decides); ValueError naming ``where`` and the value for anything but a 'MAJOR.MINOR[.PATCH[.BUILD]]' string."""
    if value is None:
        return None
    if not isinstance(value, str) or not _VERSION_RE.match(value):
        raise ValueError(f"{where}: tensorrt must be the version that built the engine, 'MAJOR.MINOR[.PATCH[.BUILD]]' "
                         f"(a string), got {value!r}")
    return value


def refusal(built: str | None, compat: EngineCompat, installed: str, *, jetson: bool = False,
            compute_capability: tuple[int, int] | None = None, lean_runtime: str | None = None,
            engine: str = "the engine") -> str | None:
    """Why TensorRT ``installed`` must not run ``engine``, built with TensorRT ``built`` under ``compat``, naming
    both versions; None when it may (or when ``built`` is unknown: TensorRT's own check then decides).

    - not version-compatible: the same major.minor.patch only;
    - version-compatible: the building version or a later one (never an older one); with the lean runtime left
      out, also the lean runtime library of the building version (``lean_runtime``);
    - hardware-compatible: not on a Jetson, and on a GPU of compute capability >= 8.0 (when known).
    """
    if built is None:
        return None
    have, made = parse_version(installed), parse_version(built)
    if compat.version:
        if have[:3] < made[:3]:
            return (f"{engine} is version-compatible and was built with TensorRT {built}; the installed TensorRT "
                    f"{installed} is older, and such engines run only on the TensorRT that built them or a later "
                    f"one: rebuild it here (build_engine.py) or install TensorRT >= {built}")
        if compat.exclude_lean_runtime and not lean_runtime:
            return (f"{engine} was built with TensorRT {built} without its lean runtime (--exclude-lean-runtime); "
                    f"TensorRT {installed} runs it only through the lean runtime library of TensorRT {built} "
                    f"(libnvinfer_lean.so): pass its path (lean_runtime=, --lean-runtime)")
    else:
        n = min(3, len(have), len(made))
        if have[:n] != made[:n]:
            return (f"{engine} was built with TensorRT {built}; the installed TensorRT is {installed}. An engine built "
                    f"without --engine-compat version runs only on the TensorRT version that built it: rebuild it "
                    f"here (build_engine.py), or build it with --engine-compat version to survive upgrades")
    if compat.hardware:
        if jetson:
            return (f"{engine} is hardware-compatible (Ampere+), built with TensorRT {built}; TensorRT {installed} "
                    f"on a Jetson does not run hardware-compatible engines (JetPack does not support them): rebuild "
                    f"it on this Jetson with --engine-compat none or version")
        if compute_capability is not None and tuple(compute_capability) < MIN_HARDWARE_CC:
            return (f"{engine} is hardware-compatible (Ampere+, built with TensorRT {built}); this GPU has compute "
                    f"capability {compute_capability[0]}.{compute_capability[1]} (< 8.0), so TensorRT {installed} "
                    f"cannot run it here")
    return None


def runtime_options(compat: EngineCompat, lean_runtime: str | None = None) -> dict[str, Any]:
    """How :class:`~.session.EngineSession` opens an engine of ``compat``: ``host_code_allowed`` for a plan that
    carries its lean runtime (TensorRT runs code from the plan), ``lean_runtime`` (the library to load) for one
    that does not. Empty for every other engine."""
    if not compat.version:
        return {}
    if compat.exclude_lean_runtime:
        return {"lean_runtime": str(lean_runtime)} if lean_runtime else {}
    return {"host_code_allowed": True}


def add_compat_arguments(parser: Any) -> None:
    """``--engine-compat`` and ``--exclude-lean-runtime``, shared by ``build_engine.py`` and ``ibit-export``."""
    g = parser.add_argument_group("engines that survive an upgrade (devicekit/engine_compat.py)")
    g.add_argument("--engine-compat", choices=CHOICES, default=None,
                   help="none (default): the engine runs on this TensorRT version and GPU model only; version: also on "
                        "later TensorRT versions (lean runtime in the plan); hardware: on any Ampere+ GPU (not on a "
                        "Jetson); version+hardware: both. Compatible engines may be slower")
    g.add_argument("--exclude-lean-runtime", action="store_true",
                   help="with --engine-compat version: leave the lean runtime out of the plan (smaller); running it "
                        "then needs the building TensorRT's libnvinfer_lean.so (lean_runtime=, --lean-runtime)")


def compat_from_args(args: Any, export: Any = None, where: str = "manifest.json") -> EngineCompat:
    """The :class:`EngineCompat` of the parsed flags; ValueError naming a bad combination.

    Without either flag, the choice the bundle was exported with (``export``: the manifest's ``export`` block, its
    ``engine_compat`` record) holds, so ``ibit-export --engine-compat version`` without a GPU gives the engine the
    device builds the same compatibility; a flag given on the device overrides it. ``where``: the manifest's path,
    named in the error for a bad record."""
    if args.engine_compat is None and not args.exclude_lean_runtime and isinstance(export, dict):
        return EngineCompat.from_record(export.get("engine_compat"), f"{where} export block")
    return EngineCompat(args.engine_compat or NONE, bool(args.exclude_lean_runtime)).check()
