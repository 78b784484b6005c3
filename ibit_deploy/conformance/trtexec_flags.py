"""Check trtexec command lines against the flags each TensorRT major version documents (``trtexec_flags_table``).

A flag the version does not have (``--fp16`` on 11.x), a deprecated one (``--useCudaGraph`` on 11.x warns and does
nothing), a value on a switch or none on a valued option, and bad values of ``--profilingVerbosity``,
``--memPoolSize``, ``--percentile`` and the shape options are problems. :func:`project_commands` lists every
command line ibit-deploy generates today (the Python builders and the rendered ``build_engine.sh``).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator, Sequence
from typing import Any

from .trtexec_flags_table import TABLE

_SHAPES = {"--shapes", "--minShapes", "--optShapes", "--maxShapes"}
_SHAPE_RE = re.compile(r"^[^:,]+:\d+(x\d+)*$")
_MEMPOOL_RE = re.compile(r"^(\w+):(\d+(?:\.\d+)?)([KMG]?)$")


def supported_majors() -> list[int]:
    return sorted(int(k) for k in TABLE["versions"])


def check_trtexec_argv(argv: Sequence[str], major: int) -> list[str]:
    """Problems with ``argv`` (executable first) for trtexec of TensorRT ``major``; [] when it conforms."""
    key = str(major)
    if key not in TABLE["versions"]:
        raise ValueError(f"no trtexec flag table for TensorRT {major}.x; known: {supported_majors()}")
    version = TABLE["versions"][key]
    flags, valued, deprecated = set(version["flags"]), set(version["take_value"]), version["deprecated"]
    problems = []
    seen: set[str] = set()
    for arg in argv[1:]:
        name, has_value, value = arg.partition("=")
        if not name.startswith("--"):
            problems.append(f"{arg!r}: not a --flag")
            continue
        if name not in flags:
            others = [k for k, v in TABLE["versions"].items() if name in v["flags"]]
            problems.append(f"{name}: not a trtexec {major}.x flag" + (f" (exists in {', '.join(others)}.x)"
                                                                           if others else ""))
            continue
        if name in deprecated:
            problems.append(f"{name}: deprecated in trtexec {major}.x ({deprecated[name]})")
        if name in seen and name != "--plugins":
            problems.append(f"{name}: given twice")
        seen.add(name)
        if name in valued and not (has_value and value):
            problems.append(f"{name}: needs a value ({name}=...)")
        elif name not in valued and has_value and value.lower() not in ("true", "false", "0", "1"):
            problems.append(f"{name}: a switch, given the value {value!r}")
        problems += _check_value(name, value) if has_value else []
    return problems


def _check_value(name: str, value: str) -> list[str]:
    rules: dict[str, Any] = TABLE["values"]
    if "${" in value:  # a shell variable in build_engine.sh: filled in on the device
        return []
    if name == "--profilingVerbosity" and value not in rules[name]["accepted"]:
        return [f"{name}={value}: expected one of {rules[name]['accepted']}"]
    if name == "--memPoolSize":
        bad = [p for p in value.split(",") if not (m := _MEMPOOL_RE.match(p)) or m.group(1) not in
               rules[name]["pools"]]
        return [f"{name}={value}: expected <pool>:<size>[K|M|G] with pool in {rules[name]['pools']}"] if bad else []
    if name == "--percentile":
        try:
            ok = all(0 <= float(p) <= 100 for p in value.split(","))
        except ValueError:
            ok = False
        return [] if ok else [f"{name}={value}: expected comma-separated percentiles in [0, 100]"]
    if name in _SHAPES and not all(_SHAPE_RE.match(s) for s in value.split(",")):
        return [f"{name}={value}: expected name:NxCxHxW[,name:...]"]
    return []


def script_commands(script: str) -> dict[str, list[str]]:
    """The trtexec argv of each ``name() { ... }`` function in a rendered build_engine.sh (line continuations
    joined, bash quoting removed; ``${VAR}`` references kept as text)."""
    out = {}
    for match in re.finditer(r"^(\w+)\(\) \{\n(.*?)\n\}", script, re.S | re.M):
        body = match.group(2).replace("\\\n", " ").strip()
        if body.startswith('"${TRTEXEC}"'):  # the rendered trtexec lines; other functions are hand-written bash
            out[match.group(1)] = shlex.split(body)
    return out


def project_commands() -> Iterator[tuple[str, int, list[str]]]:
    """(label, TensorRT major, argv) for every trtexec command line ibit-deploy generates today.

    All of them come from :mod:`ibit_deploy.devicekit.build` (``trtexec_command`` for builds, ``trtexec_benchmark_command``
    for the one timing recipe ibit-bench, ``--precision auto`` and ``build_engine.sh`` use) and the rendered
    ``build_engine.sh`` (:func:`ibit_deploy.export.device_bundle.render_build_script`).
    """
    from ..devicekit.build import SUPPORTED_TRT_MAJORS, trtexec_benchmark_command, trtexec_command
    from ..devicekit.build_limits import BuilderLimits, tactic_source_names
    from ..devicekit.engine_compat import EngineCompat
    from ..devicekit.layout import DEFAULT_ONNX, PRECISIONS
    from ..devicekit.profile import EngineProfile
    from ..export.device_bundle import render_build_script

    profile = EngineProfile("images", (3, 224, 224), 1, 8, 32)
    for major in SUPPORTED_TRT_MAJORS:
        for precision in PRECISIONS:
            for legacy in (False, True) if major == 10 else (False,):
                for benchmark in (False, True):
                    argv = trtexec_command(major, "model.onnx", "engine.plan", precision, profile, legacy=legacy,
                                           timing_cache="timing.cache", benchmark=benchmark,
                                           export_prefix="out/bench" if benchmark else None)
                    yield (f"trtexec_command({major}, {precision}, legacy={legacy}, benchmark={benchmark})", major,
                           argv)
        small = BuilderLimits(512, optimization_level=2, aux_streams=0,
                              tactic_sources=tactic_source_names(f"{major}.0")[-2:], device_class="orin-8gb")
        yield f"trtexec_command({major}, builder limits)", major, trtexec_command(
            major, "model.onnx", "engine.plan", "fp16", profile, timing_cache="timing.cache", limits=small)
        yield f"trtexec_command({major}, --engine-compat version+hardware)", major, trtexec_command(
            major, "model.onnx", "engine.plan", "fp16", profile, compat=EngineCompat("version+hardware"))
        yield f"trtexec_command({major}, --exclude-lean-runtime)", major, trtexec_command(
            major, "model.onnx", "engine.plan", "fp16", profile, compat=EngineCompat("version", True))
        yield f"trtexec_benchmark_command({major})", major, trtexec_benchmark_command(
            major, "engine.plan", profile, export_prefix="out/bench")
        for batch in sorted({1, profile.opt_batch}):  # --precision auto's recipe: batch 1 and the opt batch
            yield f"precision auto recipe ({major}, batch {batch})", major, trtexec_benchmark_command(
                major, "engine.fp16.plan", profile, batch=batch)
    manifest = {"model": {"name": "ibit"}, "input": {"name": "images", "shape": [1, 3, 224, 224],
                                                     "batch_range": [1, 32], "opt_batch": 8},
                "artifacts": [{"path": name, "kind": "onnx", "precision": p} for p, name in DEFAULT_ONNX.items()]}
    for precision in PRECISIONS:
        for name, argv in script_commands(render_build_script(manifest, precision)).items():
            yield f"build_engine.sh ({precision}) {name}", int(re.search(r"_(\d+)", name).group(1)), argv
