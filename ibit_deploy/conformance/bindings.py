"""Fetch the real TensorRT Python bindings, build the C stub they link against, run conformance subprocesses.

The ``tensorrt-cu12-bindings`` wheels are ordinary PyPI wheels (the builder libraries are not: those need a GPU
and NVIDIA's download host). Their ``tensorrt.so`` links libnvinfer / libnvonnxparser / libnvinfer_plugin and uses
only the few C entry points in :data:`STUB_SYMBOLS`; a C file defining them (each returning null) compiled into
those sonames lets the real bindings import without a GPU (../shared/docs/METHODS.md section 7). Creating a
Builder or Runtime then fails ("factory function returned nullptr"), which is why the code paths run against
stand-ins generated from these real classes (``binding_standins``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..devicekit.fileio import read_json
from ..devicekit.staging import new_staging, publish_new

PACKAGE = "tensorrt-cu12-bindings"
# TensorRT version -> the bindings wheel version, one per row of the version matrix (devicekit/versions.py):
# 10.3 JetPack 6, 10.13 JetPack 7.0/7.1, 10.14 the first with IAttention, 10.16 JetPack 7.2.0, 11.4 JetPack 7.2.2+
# and desktops (PyPI has no 11.4.1 bindings; 11.4.0.106 is the newest 11.4 wheel, same minor API).
VERSIONS = {"10.3": "10.3.0", "10.13": "10.13.3.9", "10.14": "10.14.1.48.post1", "10.16": "10.16.1.11",
            "11.4": "11.4.0.106"}
LIBRARIES = ("nvinfer", "nvonnxparser", "nvinfer_plugin")
# The C entry points tensorrt.so imports from those libraries (nm -D --undefined-only on both wheels).
STUB_SYMBOLS = ("createInferBuilder_INTERNAL", "createInferRuntime_INTERNAL", "createInferRefitter_INTERNAL",
                "createNvOnnxParser_INTERNAL", "createNvOnnxParserRefitter_INTERNAL", "getNvOnnxParserVersion",
                "getPluginRegistry", "getBuilderPluginRegistry", "initLibNvInferPlugins")
# Undefined symbols of tensorrt.so that the C library and the Python interpreter provide.
_PROVIDED_PREFIXES = ("Py", "_Py", "dl", "__")
CACHE_ENV = "IBIT_TRT_CONFORMANCE_CACHE"
PIP_TIMEOUT_S = 300


class BindingsUnavailable(RuntimeError):
    """The bindings or the stub could not be prepared here (no network to PyPI, no C compiler, ...)."""


def check_version(version: str) -> str:
    """``version`` if the conformance suite knows it, else ValueError naming the versions it supports."""
    if version not in VERSIONS:
        raise ValueError(f"TensorRT {version!r} is not a version the conformance suite knows; supported: "
                         f"{', '.join(VERSIONS)} ({PACKAGE} {', '.join(VERSIONS.values())})")
    return version


def cache_dir() -> Path:
    """``$IBIT_TRT_CONFORMANCE_CACHE``, else ``~/.cache/ibit-deploy/trt-conformance``."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "ibit-deploy" / "trt-conformance")


def ensure_bindings(version: str, cache: Path | None = None) -> Path:
    """The directory holding ``tensorrt_bindings`` of ``version`` (pip-installed there once, then reused)."""
    check_version(version)
    target = (cache or cache_dir()) / f"bindings-{VERSIONS[version]}"
    if (target / "tensorrt_bindings" / "tensorrt.so").is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = new_staging(target)
    cmd = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--only-binary=:all:", "--target",
           str(tmp), f"{PACKAGE}=={VERSIONS[version]}"]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise BindingsUnavailable(f"pip could not fetch {PACKAGE}=={VERSIONS[version]}: {exc}") from exc
    if proc.returncode != 0 or not (tmp / "tensorrt_bindings" / "tensorrt.so").is_file():
        shutil.rmtree(tmp, ignore_errors=True)
        tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
        raise BindingsUnavailable(f"pip could not fetch {PACKAGE}=={VERSIONS[version]} for Python "
                                  f"{sys.version_info.major}.{sys.version_info.minor} (exit {proc.returncode}): {tail}")
    publish_new(tmp, target)  # False: another process finished first, and its copy is kept
    return target


def undefined_library_symbols(extension: Path) -> list[str] | None:
    """Undefined dynamic symbols of ``extension`` not provided by libc or Python (None without ``nm``)."""
    nm = shutil.which("nm")
    if nm is None:
        return None
    out = subprocess.run([nm, "-D", "--undefined-only", str(extension)], capture_output=True, text=True,
                         check=False).stdout
    # "U" only: weak references ("w", e.g. the transactional-memory hooks) may stay unresolved
    names = [line.split()[-1] for line in out.splitlines() if line.split()[:1] == ["U"]]
    return sorted(n for n in names if "@" not in n and not n.startswith(_PROVIDED_PREFIXES))


def ensure_stub(major: int, extension: Path | None = None, cache: Path | None = None) -> Path:
    """A directory with lib{nvinfer,nvonnxparser,nvinfer_plugin}.so.<major> defining STUB_SYMBOLS (cached)."""
    needed = undefined_library_symbols(extension) if extension is not None else None
    if needed is not None and (unknown := sorted(set(needed) - set(STUB_SYMBOLS))):
        raise BindingsUnavailable(f"{extension} needs library symbols the stub does not define: {unknown}")
    out = (cache or cache_dir()) / f"stub-{major}"
    if all((out / f"lib{lib}.so.{major}").is_file() for lib in LIBRARIES):
        return out
    compiler = shutil.which(os.environ.get("CC", "cc")) or shutil.which("gcc")
    if compiler is None:
        raise BindingsUnavailable("no C compiler (cc/gcc) to build the TensorRT library stub")
    out.mkdir(parents=True, exist_ok=True)
    source = out / "trt_stub.c"
    # Every entry point returns 0 / NULL: the factories then report failure, which the bindings turn into an error.
    source.write_text("".join(f"void *{name}(void) {{ return 0; }}\n" for name in STUB_SYMBOLS), encoding="utf-8")
    for lib in LIBRARIES:
        soname = f"lib{lib}.so.{major}"
        tmp = out / f".{soname}.tmp"
        proc = subprocess.run([compiler, "-shared", "-fPIC", "-o", str(tmp), str(source), f"-Wl,-soname,{soname}"],
                              capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise BindingsUnavailable(f"{compiler} could not build {soname}: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, out / soname)
    return out


def prepare(version: str, cache: Path | None = None) -> dict[str, Path]:
    """Bindings and stub directories for ``version``; BindingsUnavailable says why when they cannot be had."""
    bindings = ensure_bindings(version, cache)
    stub = ensure_stub(int(version.split(".")[0]), bindings / "tensorrt_bindings" / "tensorrt.so", cache)
    return {"bindings": bindings, "stub": stub}


def run_conformance(version: str, *, targets: Sequence[str] = (), planted: Sequence[str] = (),
                    scan: Sequence[Path] = (), root: Path | None = None, cache: Path | None = None,
                    timeout: float = 600.0) -> dict[str, Any]:
    """Run code paths against the real ``version`` bindings in a fresh subprocess; the child's JSON report.

    ``targets`` are CONFORMANCE_TARGETS names (none given and no ``planted``: all of them); ``planted`` are
    ``file.py:function`` entries called as ``fn(trt, work)``; ``scan`` directories get the static name scan.
    """
    dirs = prepare(version, cache)
    env = dict(os.environ)
    env["LD_LIBRARY_PATH"] = os.pathsep.join(filter(None, [str(dirs["stub"]), env.get("LD_LIBRARY_PATH")]))
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(dirs["bindings"]), env.get("PYTHONPATH")]))
    root = (root or Path(__file__).resolve().parents[2]).resolve()
    with tempfile.TemporaryDirectory(prefix="trt-conformance-") as tmp:
        out = Path(tmp) / "report.json"
        cmd = [sys.executable, "-m", "ibit_deploy.conformance.child", "--out", str(out), "--root", str(root)]
        cmd += [a for t in targets for a in ("--target", t)] + [a for e in planted for a in ("--planted", e)]
        cmd += [a for d in scan for a in ("--scan", str(d))]
        if not targets and planted:
            cmd += ["--target", "__none__"]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, check=False)
        if not out.is_file():
            raise RuntimeError(f"conformance subprocess for TensorRT {version} failed (exit {proc.returncode}):\n"
                               + "\n".join((proc.stderr or proc.stdout).splitlines()[-20:]))
        report = read_json(out, "conformance report")
    if "error" in report:
        raise BindingsUnavailable(f"TensorRT {version}: {report['error']}")
    report["version_key"] = version
    report["log_tail"] = "\n".join((proc.stdout + proc.stderr).splitlines()[-30:])
    return report
