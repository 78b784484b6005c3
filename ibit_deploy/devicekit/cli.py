"""The device kit's command line (``python3 build_engine.py`` in a bundle): build ``engine.plan`` from the bundle's
ONNX on the device, check it against ONNX Runtime, record it in manifest.json.

Run it on the machine that will run the engine (a Jetson, a desktop GPU): TensorRT engines are tied to the GPU
architecture and the TensorRT version that built them. Needs python3 and the ``tensorrt`` Python package (JetPack
ships it; on a desktop, NVIDIA's wheel); the output check also needs numpy, ``cuda-python`` and ``onnxruntime``, and
is skipped with a note when they are missing. Before it reads, builds or prints anything it applies the bundle checks
every reader applies (:func:`.manifest.check_bundle_files`); the launcher has already checked every kit file.

- ``--precision auto``: builds fp32, fp16 and int8 engines, checks each against ONNX Runtime (acceptance table and the
  bundle's accuracy budget), times each with trtexec (one recipe, batch 1 and the opt batch) and keeps the fastest
  that passes; every candidate is recorded in manifest.json (``engine_selection``). Exit 1 when none passes.

Exit codes: 0 done, 1 build or check failed, 2 bad arguments or bundle, 3 TensorRT or a GPU is not available.
"""

from __future__ import annotations

import argparse
import datetime
import json
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import attention_form, precision_auto, versions
from .acceptance import engine_acceptance, engine_accepted, verification_summary
from .auto_build import AUTO, build_auto, run_trtexec_stdout
from .build import (
    build_record,
    build_serialized_engine,
    onnx_precision_for,
    parse_trt_version,
    trtexec_command,
)
from .build_limits import add_limit_arguments, limits_from_args, probe_gpu
from .engine_compat import add_compat_arguments, compat_from_args, refusal, runtime_options
from .exit_codes import BAD_INPUT, CHECK_FAILED, DONE, REQUIREMENT_UNMET
from .fileio import atomic_write_bytes, sha256_file
from .layout import DEFAULT_ENGINE, DEFAULT_TIMING_CACHE, LAUNCHER, MANIFEST_FILE, PRECISIONS
from .manifest import check_bundle_files, load_manifest, onnx_for, put_artifact
from .numbers import BATCH, COUNT, POINTS, Range, argtype
from .profile import EngineProfile
from .refit_kit import main_refit
from .session import CudaUnavailable, EngineBuildError, cuda_device_name, import_cudart
from .trtexec_tool import find_trtexec
from .verify import engine_entry, verification_batches, verify_engine


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="build_engine.py", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Build a TensorRT engine (engine.plan) from this ibit-deploy bundle's ONNX on this device, check "
                    "it against ONNX Runtime and record it in manifest.json.",
        epilog="Shapes, names and the batch range default to manifest.json. Exit codes: 0 ok, 1 build/check failed, "
               "2 bad arguments, 3 TensorRT or GPU unavailable.")
    # the bundle first, as in every ibit-deploy command; --bundle still works (the bundle's build_engine.sh of
    # earlier exports passes it)
    p.add_argument("bundle", type=Path, nargs="?", default=None,
                   help="bundle directory (default: the directory of build_engine.py)")
    p.add_argument("--bundle", dest="bundle_flag", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--precision", choices=(*PRECISIONS, AUTO),
                   help="engine precision (default: the one ibit-export chose); auto: build fp32, fp16 and int8, "
                        "check each against ONNX Runtime, time each with trtexec, keep the fastest that passes")
    p.add_argument("--max-drop", type=argtype(POINTS, "--max-drop"), metavar="POINTS",
                   help="with --precision auto: top-1 points an engine may lose against the FP32 ONNX on calib.npz's "
                        "labels (default: the tightest quantization gate in manifest.json)")
    p.add_argument("--onnx", type=Path,
                   help="ONNX file to build (default: the bundle's file for the precision; for a bundle exported with "
                        "--attention onnx-attention, its ONNX Attention-op form where this TensorRT parses it (>= "
                        "10.14), else or when TensorRT rejects it the MatMul form)")
    p.add_argument("--engine", type=Path, help=f"engine file to write (default: BUNDLE/{DEFAULT_ENGINE})")
    for flag in ("--min-batch", "--opt-batch", "--max-batch"):
        p.add_argument(flag, type=argtype(BATCH, flag))
    add_limit_arguments(p)
    add_compat_arguments(p)
    p.add_argument("--lean-runtime", type=Path, metavar="LIBRARY",
                   help="with --exclude-lean-runtime: this TensorRT's libnvinfer_lean.so, to check the engine with")
    p.add_argument("--timing-cache", type=Path, help=f"timing cache file (default: BUNDLE/{DEFAULT_TIMING_CACHE})")
    p.add_argument("--no-timing-cache", action="store_true")
    p.add_argument("--legacy", action="store_true",
                   help="TensorRT 10.x only: weakly typed network with BuilderFlag.FP16/INT8 (removed in 11)")
    p.add_argument("--skip-build", action="store_true",
                   help="use an existing engine (e.g. built by trtexec in build_engine.sh): check and record it only")
    p.add_argument("--tensorrt-version", help="with --skip-build: the TensorRT version that built the engine")
    p.add_argument("--built-from", type=Path, metavar="ONNX",
                   help="with --skip-build: the bundle's ONNX file the engine was built from (build_engine.sh passes "
                        "the form trtexec built); recorded with its attention form, checked on the MatMul form")
    p.add_argument("--attention-op-error", metavar="TEXT",
                   help="with --skip-build --built-from the MatMul form: why the builder failed on the ONNX "
                        "Attention-op form first (recorded as the fallback's reason)")
    p.add_argument("--no-verify", action="store_true", help="do not compare engine outputs with ONNX Runtime")
    p.add_argument("--verify-samples", type=argtype(COUNT, "--verify-samples"), default=64,
                   help="calibration images to compare (default 64)")
    p.add_argument("--report", type=Path, help="JSON report (default: the engine path with .json)")
    p.add_argument("--no-manifest", action="store_true", help="do not add the engine to manifest.json")
    p.add_argument("--print-trtexec", action="store_true", help="print the equivalent trtexec command and exit")
    p.add_argument("--trt-major", type=argtype(Range(1, 99, integer=True), "--trt-major"),
                   help="TensorRT major version for --print-trtexec (default: installed)")
    p.add_argument("--refittable", action="store_true",
                   help="build a refittable engine (BuilderFlag.REFIT; default when ibit-export --refittable made "
                        "the bundle) so a retrained checkpoint's weights can be refitted into it (--refit)")
    p.add_argument("--refit", action="store_true",
                   help="refit the bundle's refittable engine from its ONNX (after `ibit-deploy refit`, or a "
                        "weight-stripped engine before first use), check it like a built one, swap it in")
    return p
def _resolve(args: argparse.Namespace, p: argparse.ArgumentParser) -> dict[str, Any]:
    """Fill defaults from the manifest and validate everything before TensorRT is imported."""
    bundle = args.bundle.resolve()
    engine = (args.engine or bundle / DEFAULT_ENGINE).resolve()
    try:
        manifest = load_manifest(bundle, verify=False)
        # runtime.load's checks, before anything is read, built or printed; the engine is this run's output (or
        # trtexec's, with --skip-build), so its old hash does not apply
        check_bundle_files(bundle, manifest, skip=[engine.relative_to(bundle).as_posix()]
                           if engine.is_relative_to(bundle) else [])
    except (OSError, ValueError) as exc:  # a bad bundle, not a usage error: one line, exit 2
        print(f"{p.prog}: error: {exc}", file=sys.stderr)
        raise SystemExit(BAD_INPUT) from None
    inp = dict(manifest.get("input", {}))
    script = next((a for a in manifest.get("artifacts", []) if a.get("path") == LAUNCHER), {})
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
        p.error(f"manifest.json gives {LAUNCHER} the precision {precision!r}; expected one of {PRECISIONS}")
    onnx_precision = "fp32" if precision == AUTO else onnx_precision_for(precision, args.legacy)
    try:
        onnx = args.onnx or bundle / onnx_for(manifest, onnx_precision, where=bundle / "manifest.json")
    except ValueError as exc:
        p.error(str(exc))
    if not args.skip_build and not onnx.is_file():
        p.error(f"ONNX file not found: {onnx} (needed for the {precision} engine"
                f"{' with --legacy' if args.legacy else ''}; does the bundle contain it?)")
    if args.skip_build and not engine.is_file():
        p.error(f"--skip-build given but the engine file does not exist: {engine}")
    built_from = _built_from(args, p, bundle)
    if precision == AUTO:
        clash = [flag for flag, on in (("--legacy", args.legacy), ("--skip-build", args.skip_build),
                                       ("--onnx", args.onnx), ("--print-trtexec", args.print_trtexec),
                                       ("--no-verify", args.no_verify), ("--no-manifest", args.no_manifest)) if on]
        if clash:
            p.error(f"--precision auto builds, checks and records every candidate itself; drop {', '.join(clash)}")
    if args.max_drop is not None and precision != AUTO:
        p.error("--max-drop applies to --precision auto only (a single-precision build is judged by the acceptance "
                "table)")
    cache = None if args.no_timing_cache else (args.timing_cache or bundle / DEFAULT_TIMING_CACHE)
    gpu = probe_gpu()
    try:
        limits = limits_from_args(args, gpu)
        compat = compat_from_args(args, manifest.get("export"), str(bundle / MANIFEST_FILE))
    except ValueError as exc:
        p.error(str(exc))
    refit_mode = "refittable" if args.refittable or (manifest.get("export") or {}).get("refittable") else None
    if (why := compat.refit_refusal(refit_mode)) is not None:  # --refit: refit_kit asks it of the engine's record
        p.error(why)
    if args.lean_runtime is not None and not compat.exclude_lean_runtime:
        p.error("--lean-runtime goes with --exclude-lean-runtime (an engine that carries its lean runtime needs none)")
    if compat.exclude_lean_runtime and precision == AUTO and args.lean_runtime is None:
        p.error("--precision auto --exclude-lean-runtime checks every candidate by running it: pass --lean-runtime "
                "PATH (this TensorRT's libnvinfer_lean.so)")
    if args.lean_runtime is not None and not args.lean_runtime.is_file():
        p.error(f"--lean-runtime: file not found: {args.lean_runtime} (expected TensorRT's libnvinfer_lean.so)")
    # refit_mode above: a refittable engine when asked, or when the bundle was exported --refittable (never
    # stripped on the device)
    return {"refit_mode": refit_mode, "gpu": gpu, "limits": limits, "compat": compat, "bundle": bundle, "manifest": manifest, "precision": precision, "onnx": Path(onnx), "engine": engine,
            "profile": profile, "timing_cache": cache, "report": args.report or engine.with_suffix(".json"),
            # --onnx names the file; otherwise the kit picks the attention form (attention_form.choose_onnx)
            "onnx_precision": onnx_precision, "pick_form": args.onnx is None, "built_from": built_from}


def _built_from(args: argparse.Namespace, p: argparse.ArgumentParser, bundle: Path) -> Path | None:
    """``--built-from`` resolved (a file inside the bundle), after the checks of the flags that go with it."""
    if args.attention_op_error is not None and args.built_from is None:
        p.error("--attention-op-error goes with --built-from (the MatMul-form file built after the failure)")
    if args.built_from is None:
        return None
    if not args.skip_build or args.onnx is not None:
        p.error("--built-from records the file an external build (trtexec) used: it needs --skip-build and "
                "replaces --onnx")
    if args.tensorrt_version is not None:
        try:
            versions.parse_trt_version(args.tensorrt_version)
        except ValueError as exc:
            p.error(f"--tensorrt-version: {exc}")
    path = (args.built_from if args.built_from.is_absolute() else bundle / args.built_from).resolve()
    if not path.is_file() or not path.is_relative_to(bundle):
        p.error(f"--built-from {args.built_from}: expected an ONNX file of the bundle {bundle}")
    return path
def _supported_version(trt: Any) -> str | None:
    """None when the installed TensorRT is one this kit knows (its row of the version matrix is printed on stderr);
    else the message saying which versions it supports."""
    try:
        found = versions.detect(str(trt.__version__), versions.read_l4t_release())
    except ValueError as exc:
        return f"build_engine.py: the installed TensorRT ({trt.__version__}) cannot be used: {exc}"
    print(f"build_engine.py: {versions.describe(found)}", file=sys.stderr)
    return None


def _main_auto(args: argparse.Namespace, r: dict[str, Any], trt: Any, trt_error: str,
               trtexec_run: Callable[[list[str]], str] | None, engine_runner: Callable[..., list[Any]] | None) -> int:
    """``--precision auto``: exit 0 an engine was chosen, 1 every candidate failed (nothing recorded as passed),
    3 TensorRT, trtexec or a GPU is missing."""
    if trt is None:
        print(f"build_engine.py: {trt_error}; --precision auto builds with TensorRT's Python API.", file=sys.stderr)
        return REQUIREMENT_UNMET
    if (message := _supported_version(trt)) is not None:
        print(message, file=sys.stderr)
        return REQUIREMENT_UNMET
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
        return REQUIREMENT_UNMET
    trtexec = "trtexec"
    if trtexec_run is None:
        exe = find_trtexec()
        if exe is None:
            print("build_engine.py: --precision auto times every candidate with trtexec, which was not found "
                  "($TRTEXEC, /usr/src/tensorrt/bin/trtexec, PATH); it ships with TensorRT (JetPack, NVIDIA's "
                  "tar/deb packages), not with the Python wheel.", file=sys.stderr)
            return REQUIREMENT_UNMET
        trtexec, trtexec_run = str(exe), run_trtexec_stdout
    profile: EngineProfile = r["profile"]
    try:
        record = build_auto(trt, r["bundle"], r["manifest"], profile, r["engine"],
                            trt_major=parse_trt_version(trt.__version__)[0], trtexec_run=trtexec_run, trtexec=trtexec,
                            limits=r["limits"], gpu=r["gpu"], timing_cache=r["timing_cache"],
                            verify_samples=args.verify_samples, compat=r["compat"],
                            lean_runtime=str(args.lean_runtime) if args.lean_runtime else None,
                            max_drop=None if args.max_drop is None else args.max_drop / 100, run=engine_runner,
                            jetson=versions.read_l4t_release() is not None)
    except CudaUnavailable as exc:
        print(f"build_engine.py: {exc}", file=sys.stderr)
        return REQUIREMENT_UNMET
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
                                 built_from=record.get("built_from", {}).get(record["chosen"])
                                 or onnx_for(r["manifest"], record["chosen"]),
                                 tensorrt=record["tensorrt_version"], verification=chosen["accuracy"],
                                 device=record["device"], selected_by="--precision auto",
                                 **record.get("builds", {}).get(record["chosen"], {}))
    put_artifact(r["bundle"], entry, holder="build_engine.py", engine_selection=record)
    atomic_write_bytes(r["report"], (precision_auto.dumps(record) + "\n").encode("utf-8"))
    print(precision_auto.format_table(record))
    print(f"engine: {r['engine'] if record['chosen'] else 'none shipped'}; report: {r['report']}")
    return precision_auto.exit_status(record)


def main(argv: Sequence[str] | None = None, *, bundle: Path | None = None,
         trtexec_run: Callable[[list[str]], str] | None = None,
         engine_runner: Callable[..., list[Any]] | None = None) -> int:
    """The CLI. ``bundle``: the default of ``--bundle`` (the launcher passes its own directory; without it,
    ``--bundle`` is required). Seams for ``--precision auto`` (tests answer through them): ``trtexec_run`` runs one trtexec argv
    and returns its stdout (default: the trtexec found here), ``engine_runner`` runs an engine for its check
    (default :func:`run_engine`)."""
    p = _parser()
    args = p.parse_args(argv)
    if args.bundle_flag is not None and args.bundle is not None and args.bundle_flag != args.bundle:
        p.error(f"two bundles given: {args.bundle} and --bundle {args.bundle_flag}")
    args.bundle = args.bundle or args.bundle_flag or bundle
    if args.bundle is None:
        p.error("give the bundle directory (python -m ibit_deploy.devicekit.cli BUNDLE)")
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
                                  legacy=args.legacy, limits=r["limits"], compat=r["compat"])
        except ValueError as exc:
            p.error(str(exc))
        print(shlex.join(cmd))
        return DONE

    if args.refit:
        if trt is not None and (message := _supported_version(trt)) is not None:
            print(message, file=sys.stderr)
            return REQUIREMENT_UNMET
        return main_refit(args, r, trt, trt_error, engine_runner)
    if r["precision"] == AUTO:
        return _main_auto(args, r, trt, trt_error, trtexec_run, engine_runner)
    if trt is not None and not args.skip_build and (message := _supported_version(trt)) is not None:
        print(message, file=sys.stderr)
        return REQUIREMENT_UNMET

    report: dict[str, Any] = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "precision": r["precision"], "engine": str(r["engine"])}
    if args.skip_build:
        engine_bytes = r["engine"].read_bytes()
        # what the caller says trtexec was told (--engine-compat with --skip-build): recorded for the runtimes
        report.update(built_by="external (trtexec)", tensorrt_version=args.tensorrt_version,
                      engine_compat=r["compat"].record())
        if r["built_from"] is not None:  # the file trtexec built (build_engine.sh's choice of attention form)
            r["onnx"] = r["built_from"]
            r["onnx_reference"], form = attention_form.external_record(
                r["bundle"], r["manifest"], r["onnx_precision"], args.tensorrt_version, r["built_from"],
                args.attention_op_error, versions.read_l4t_release() is not None)
            if form:
                report.update(form, verified_against=r["onnx_reference"].name)
    else:
        if trt is None:
            print(f"build_engine.py: {trt_error}. On a Jetson it comes with JetPack (python3-libnvinfer); on a "
                  f"desktop install NVIDIA's tensorrt wheel. Or build with trtexec: build_engine.sh.", file=sys.stderr)
            return REQUIREMENT_UNMET
        def build(onnx: Path) -> tuple[bytes, dict[str, Any]]:
            return build_serialized_engine(
                trt, onnx, profile, limits=r["limits"], gpu=r["gpu"], timing_cache=r["timing_cache"],
                strongly_typed=not args.legacy, legacy_precision=r["precision"] if args.legacy else None,
                refit=r["refit_mode"], compat=r["compat"])

        try:
            if r["pick_form"]:  # the ONNX Attention-op form where this TensorRT parses it (attention_form.py)
                choice = attention_form.choose_onnx(r["bundle"], r["manifest"], r["onnx_precision"],
                                                    str(trt.__version__), versions.read_l4t_release() is not None)
                (engine_bytes, info), r["onnx"], form = attention_form.build_with_fallback(choice, build)
                # checked against ONNX Runtime on the MatMul form: equal to the Attention-op form (gated at export)
                # and runnable by any onnxruntime the device has (the Attention op needs one that knows opset 23)
                r["onnx_reference"] = choice.fallback or r["onnx"]
                if form:  # the bundle has both forms: say which one the engine is built from
                    report.update(form, verified_against=r["onnx_reference"].name)
            else:
                engine_bytes, info = build(r["onnx"])
        except CudaUnavailable as exc:
            print(f"build_engine.py: {exc}", file=sys.stderr)
            return REQUIREMENT_UNMET
        except ValueError as exc:
            p.error(str(exc))
        except EngineBuildError as exc:
            print(f"build_engine.py: {exc}", file=sys.stderr)
            return CHECK_FAILED
        atomic_write_bytes(r["engine"], engine_bytes)
        report.update(info, built_by="build_engine.py (TensorRT Python API)")
    report.update(engine_sha256=sha256_file(r["engine"]), engine_bytes=r["engine"].stat().st_size,
                  onnx=str(r["onnx"]), device=cuda_device_name(),
                  tensorrt_version=str(trt.__version__) if trt else report.get("tensorrt_version"))

    lean = str(args.lean_runtime) if args.lean_runtime else None
    if args.no_verify:
        report["verification"] = {"skipped": "--no-verify"}
    elif trt is not None and (why := refusal(report["tensorrt_version"], r["compat"], str(trt.__version__),
                                             lean_runtime=lean, engine=str(r["engine"]))) is not None:
        report["verification"] = {"skipped": f"engine outputs were not checked: {why}"}
    elif trt is None:
        report["verification"] = {"skipped": f"{trt_error}; engine outputs were not checked"}
    else:
        try:
            batches, inputs = verification_batches(r["bundle"], r["manifest"], profile, args.verify_samples)
            report["verification"] = verify_engine(trt, engine_bytes, r.get("onnx_reference", r["onnx"]), batches,
                                                   input_name=profile.input_name, precision=r["precision"],
                                                   inputs=inputs, runtime_options=runtime_options(r["compat"], lean))
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
            put_artifact(r["bundle"], engine_entry(
                rel, r["precision"], profile, sha256=report["engine_sha256"], built_from=r["onnx"].name,
                tensorrt=report["tensorrt_version"], verification=report["verification"], device=report["device"],
                **{k: report[k] for k in attention_form.RECORD_KEYS if k in report},
                **build_record(report), **({"refit_mode": report["refit_mode"]} if report.get("refit_mode") else {})),
                holder="build_engine.py")

    check = report["verification"]
    print(f"engine: {r['engine']} ({report['engine_bytes']} bytes, {r['precision']}); check: "
          f"{verification_summary(check, r['precision'])}; report: {r['report']}")
    return CHECK_FAILED if engine_accepted(r["precision"], check) is False else DONE


if __name__ == "__main__":
    sys.exit(main())
