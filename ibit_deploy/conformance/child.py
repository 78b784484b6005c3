"""Entry point of one conformance subprocess: ``python -m ibit_deploy.conformance.child --out result.json ...``.

Runs with the real ``tensorrt_bindings`` of one TensorRT version on ``PYTHONPATH`` and the C stub on
``LD_LIBRARY_PATH`` (``bindings.run_conformance`` sets both up). Installs the checked stand-in module as
``tensorrt`` (and an unchecked cuda-python stand-in), runs each code path, writes uses and findings as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..devicekit.versions import FEATURES
from . import cudart_double
from .binding_standins import Recorder, ScenarioError, StandInTensorRT
from .paths import CONFORMANCE_TARGETS, DRIVERS, Target, resolve_entry
from .static_scan import scan_names

_CONFORMANCE_DIR = Path(__file__).resolve().parent


def _where(exc: BaseException, root: Path) -> str:
    """file:line of the deepest traceback frame in the project (outside this checker)."""
    best = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        path = Path(frame.filename).resolve()
        if path.parent == _CONFORMANCE_DIR:
            continue
        try:
            best = f"{path.relative_to(root).as_posix()}:{frame.lineno}"
        except ValueError:
            continue
    return best


def run_target(target: Target, module: StandInTensorRT, recorder: Recorder, major: int, work: Path,
               root: Path) -> dict[str, Any]:
    """Run one code path; its status is ok, expected (the exception ``expect`` names), raised or harness_error."""
    before = len(recorder.findings)
    module.set_scenario({})  # each code path starts from the documented-type defaults
    result: dict[str, Any] = {"target": target.name, "entry": target.entry, "covers": target.covers}
    try:
        value = DRIVERS[target.driver](resolve_entry(target.entry), module, work)
        result.update(status="ok", returned=repr(value)[:300])
    except ScenarioError as exc:
        result.update(status="harness_error", error=str(exc))
    except BaseException as exc:  # SystemExit from argparse included: it is the code path's outcome
        name = type(exc).__name__
        status = "expected" if target.expect.get(major) == name else "raised"
        result.update(status=status, error=f"{name}: {exc}"[:600], where=_where(exc, root))
        if status == "raised" and len(recorder.findings) == before:
            recorder.findings.append({"kind": "raised", "name": target.name, "site": result["where"],
                                      "detail": result["error"]})
    result["findings"] = recorder.findings[before:]
    return result


def present(real: Any, dotted: str) -> bool:
    """Does the real bindings module have ``Class.attr`` (or a top-level ``name``)?"""
    obj = real
    for part in dotted.split("."):
        if not hasattr(obj, part):
            return False
        obj = getattr(obj, part)
    return True


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m ibit_deploy.conformance.child")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--root", type=Path, default=Path.cwd(), help="paths in findings are relative to this")
    p.add_argument("--target", action="append", default=[], help="a CONFORMANCE_TARGETS name (default: all)")
    p.add_argument("--planted", action="append", default=[], help="FILE.py:FUNCTION called as fn(trt, work)")
    p.add_argument("--scan", type=Path, action="append", default=[], help="package directory for the name scan")
    args = p.parse_args(argv)
    try:
        import tensorrt_bindings as real
    except Exception as exc:
        args.out.write_text(json.dumps({"error": f"the real bindings did not import: {type(exc).__name__}: {exc}"}))
        return 3
    root = args.root.resolve()
    recorder = Recorder(root=root)
    module = StandInTensorRT(real, recorder)
    sys.modules["tensorrt"] = module
    cudart_double.install()
    major = int(str(real.__version__).split(".")[0])

    targets = [t for t in CONFORMANCE_TARGETS if not args.target or t.name in args.target]
    targets += [Target(f"planted:{Path(e.rpartition(':')[0]).name}:{e.rpartition(':')[2]}", e, "planted", "planted")
                for e in args.planted]
    results = []
    with tempfile.TemporaryDirectory(prefix="trt-conformance-") as tmp:
        for i, target in enumerate(targets):
            work = Path(tmp) / str(i)
            work.mkdir()
            results.append(run_target(target, module, recorder, major, work, root))
    scan = [finding for d in args.scan for finding in scan_names(d, real, root)]
    report = {"tensorrt": str(real.__version__), "major": major, "targets": results,
              "uses": {name: sorted(sites) for name, sites in sorted(recorder.uses.items())},
              "findings": recorder.findings, "notes": recorder.notes, "static_scan": scan,
              # the version matrix's binding names as this version has them (tests/conformance/test_version_matrix.py)
              "feature_names": {name: present(real, name) for f in FEATURES for name in f.bindings}}
    args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
