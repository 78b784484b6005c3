"""``write_device_scripts``: the files a bundle carries to build its TensorRT engine on the device.

Engines are tied to the GPU and TensorRT version that build them, so a Jetson engine is built on the Jetson. The
bundle gets:

- ``build_engine.sh`` (bash): finds trtexec (``$TRTEXEC``, ``/usr/src/tensorrt/bin/trtexec``, ``PATH``), reads the
  TensorRT major version from its banner (or ``python3 -c 'import tensorrt'``), runs the trtexec command for that
  version (rendered here by ``trtexec_command``, with the shapes baked in), falls back to ``build_engine.py``
  without trtexec, then lets ``build_engine.py --skip-build`` check the engine and record it in manifest.json.
- ``devicekit/*.py``: a verbatim copy of the whole package :mod:`ibit_deploy.devicekit` (the bundle format and the
  device kit: :func:`ibit_deploy.devicekit.layout.kit_sources`), so the device runs the very code ibit-export runs,
  with no ibit_deploy installed; each file is listed in the manifest with its sha256 (kind ``kit``).
- ``build_engine.py``: :mod:`ibit_deploy.devicekit.launcher`, which checks every kit file's sha256 with hashlib
  BEFORE importing any of them, then runs :mod:`ibit_deploy.devicekit.cli`.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from ..devicekit import versions
from ..devicekit.acceptance import artifact_verdict
from ..devicekit.attention_form import FEATURE as ATTENTION_OP_FEATURE
from ..devicekit.auto_build import AUTO
from ..devicekit.build import (
    DEFAULT_WORKSPACE_MIB,
    SUPPORTED_TRT_MAJORS,
    onnx_precision_for,
    supported_versions,
    trtexec_benchmark_command,
    trtexec_command,
)
from ..devicekit.engine_compat import EngineCompat
from ..devicekit.fileio import atomic_path
from ..devicekit.layout import (
    DEFAULT_ENGINE,
    KIT_KIND,
    LAUNCHER,
    LAUNCHER_KIND,
    PRECISIONS,
    check_precision,
    kit_sources,
)
from ..devicekit.manifest import artifact_entry, attention_op_artifact, onnx_for
from ..devicekit.profile import EngineProfile, InputSpec
from ..trt.shell_template import TEMPLATE as SHELL_TEMPLATE
from ..version import __version__

SHELL_SCRIPT = "build_engine.sh"
PYTHON_SCRIPT = LAUNCHER
# Shell variables the rendered trtexec lines may reference; everything else in them is baked-in text.
_SHELL_REF = re.compile(r"\$\{[A-Z_]+\}")


def profile_from_manifest(manifest: dict[str, Any]) -> EngineProfile:
    """The engine profile of the manifest's ``input`` block (finite max batch required), validated."""
    return InputSpec.from_manifest(manifest).profile()


def _bash_word(arg: str) -> str:
    """Double-quote ``arg`` for bash, keeping ``${NAME}`` references live; refuse anything else bash would expand."""
    literal = _SHELL_REF.sub("", arg)
    if any(ch in literal for ch in '$"\\`\n'):
        raise ValueError(f"cannot bake {arg!r} into {SHELL_SCRIPT}: it contains shell metacharacters")
    return f'"{arg}"'


def _bash_command(argv: list[str]) -> str:
    return " \\\n        ".join(_bash_word(a) for a in argv)


def _attention_op_file(manifest: dict[str, Any], precision: str) -> str:
    """The bundle file of ``precision``'s ONNX Attention-op form the script may build from ("" when there is none or
    its gate failed: the kit never builds from such a twin)."""
    twin = attention_op_artifact(manifest, precision)
    if twin is None or artifact_verdict(twin, manifest).failed:
        return ""
    return str(twin["path"])


def _version_test(feature: versions.Feature) -> str:
    """A bash test of ``$major``/``$minor`` that holds where TensorRT has ``feature`` (its row in versions.py)."""
    (a, b), tests = feature.since, []
    tests.append(f"(( major > {a} || (major == {a} && minor >= {b}) ))")
    if feature.until is not None:
        c, d = feature.until
        tests.append(f"(( major < {c} || (major == {c} && minor < {d}) ))")
    if not feature.jetson:  # the kit does not offer it on a Jetson (Jetson Linux writes this file)
        tests.append(f'[[ ! -e "{versions.TEGRA_RELEASE}" ]]')
    return " && ".join(tests)


def render_build_script(manifest: dict[str, Any], precision: str, *,
                        workspace_mib: int = DEFAULT_WORKSPACE_MIB) -> str:
    """The text of ``build_engine.sh`` for ``precision``, with shapes and trtexec lines for TensorRT 10 and 11.

    ``precision`` ``"auto"``: the script hands over to ``build_engine.py --precision auto`` (the fp32 trtexec lines
    are rendered but unused)."""
    shown = precision
    if precision == AUTO:
        precision = "fp32"
    check_precision(precision)
    profile = profile_from_manifest(manifest)
    # the compatibility chosen at export (manifest export.engine_compat), so that the record build_engine.py
    # --skip-build makes of a trtexec engine (it reads the same block) is what trtexec was told
    compat = EngineCompat.from_record((manifest.get("export") or {}).get("engine_compat"), "manifest export block")
    build = {"onnx": "${SOURCE}", "engine": "${ENGINE}", "precision": precision, "profile": profile,
             "timing_cache": "${TIMING_CACHE}", "workspace_mib": workspace_mib, "trtexec": "${TRTEXEC}",
             "compat": compat}
    bench = {"profile": profile, "export_prefix": "${BENCH_DIR}/${PRECISION}", "trtexec": "${TRTEXEC}"}
    fields = {
        "VERSION": __version__,
        "MODEL": " ".join(str(manifest.get("model", {}).get("name", "a model")).split()),
        "PRECISION": shown,
        "SUPPORTED_MAJORS": "|".join(str(m) for m in SUPPORTED_TRT_MAJORS),
        "SUPPORTED_TEXT": supported_versions(),
        "ONNX": onnx_for(manifest, onnx_precision_for(precision)),
        "LEGACY_ONNX": onnx_for(manifest, onnx_precision_for(precision, legacy=True)),
        "ATTN_ONNX": _attention_op_file(manifest, onnx_precision_for(precision)),
        "LEGACY_ATTN_ONNX": _attention_op_file(manifest, onnx_precision_for(precision, legacy=True)),
        "ATTN_FEATURE": ATTENTION_OP_FEATURE,
        "ATTN_SPAN": versions.feature(ATTENTION_OP_FEATURE).span(),
        "ATTN_TEST": _version_test(versions.feature(ATTENTION_OP_FEATURE)),
        "BUILD_10": _bash_command(trtexec_command(10, **build)),
        "BUILD_10_LEGACY": _bash_command(trtexec_command(10, legacy=True, **build)),
        "BUILD_11": _bash_command(trtexec_command(11, **build)),
        "BENCH_10": _bash_command(trtexec_benchmark_command(10, "${ENGINE}", **bench)),
        "BENCH_11": _bash_command(trtexec_benchmark_command(11, "${ENGINE}", **bench)),
    }
    for key in ("ONNX", "LEGACY_ONNX", "ATTN_ONNX", "LEGACY_ATTN_ONNX"):
        _bash_word(fields[key])  # bundle-relative file names are baked into double-quoted strings too
    text = SHELL_TEMPLATE
    for key, value in fields.items():
        text = text.replace(f"@{key}@", value)
    leftover = re.findall(r"@[A-Z_0-9]+@", text)
    if leftover:
        raise AssertionError(f"{SHELL_SCRIPT} template fields left unfilled: {sorted(set(leftover))}")
    return text


def _write_executable(path: Path, data: bytes) -> None:
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
        tmp.chmod(0o755)  # before the rename, so the published file is executable from its first instant


def write_device_scripts(bundle_dir: str | os.PathLike, manifest: dict[str, Any], precision: str, *,
                         workspace_mib: int = DEFAULT_WORKSPACE_MIB) -> list[dict[str, Any]]:
    """Write ``build_engine.sh`` and the kit (``build_engine.py`` and its modules) into the bundle; return their
    manifest artifact entries.

    Call it after the bundle's ONNX files are in place and before the manifest is written; add the returned
    entries with ``set_artifact`` (``build_engine.py`` reads its default precision from its own entry).
    """
    bundle = Path(bundle_dir)
    if precision == AUTO:  # every candidate precision is built on the device
        needed = set(PRECISIONS)
    else:
        check_precision(precision)
        needed = {onnx_precision_for(precision, legacy) for legacy in (False, True)}
    for onnx in sorted({onnx_for(manifest, p) for p in needed}):
        if not (bundle / onnx).is_file():
            raise FileNotFoundError(f"{bundle / onnx} is missing: the {precision} device scripts build from it "
                                    f"(write the bundle's ONNX files before the device scripts)")
    _write_executable(bundle / SHELL_SCRIPT, render_build_script(manifest, precision, workspace_mib=workspace_mib)
                      .encode("utf-8"))
    for name, source in kit_sources().items():
        _write_executable(bundle / name, source.read_bytes())
    common = {"runs_on": "device", "produces": DEFAULT_ENGINE}
    return [
        artifact_entry(bundle, SHELL_SCRIPT, "script", precision,
                       requires="bash; trtexec (TensorRT >= 10) or python3 with tensorrt", **common),
        artifact_entry(bundle, PYTHON_SCRIPT, LAUNCHER_KIND, precision,
                       requires="python3 with tensorrt; numpy, cuda-python, onnxruntime to check outputs", **common),
        *(artifact_entry(bundle, name, KIT_KIND, requires="python3", imported_by=PYTHON_SCRIPT)
          for name in kit_sources() if name != PYTHON_SCRIPT),
    ]
