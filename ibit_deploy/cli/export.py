"""``ibit-export``: checkpoint -> bundle (folded ONNX, FP16/INT8 variants, TensorRT engine or on-device build kit).

Exit codes (ibit_deploy/errors.py): 0 exported (for --to tensorrt without a GPU here: the on-device bundle is the
product); 1 an accuracy gate, a parity check or an engine check failed, or TensorRT rejected the network (the manifest
marks it), or another process is writing --out (--wait waits instead); 2 bad input, or --out holds something this
export may not replace (another checkpoint's bundle without --overwrite, a directory that is not a bundle); 3
--require-engine (tensorrt or torch-tensorrt) and no engine; 70 unexpected error.

The bundle is built beside --out and swapped in whole: a failed or killed export leaves the previous bundle as it
was. Bench results of a replaced bundle are kept when what they measured is byte-identical, else dropped (it says).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import errors
from ..calibration.recipe import COUNT as CALIB_COUNT
from ..devicekit.build_limits import add_limit_arguments, parse_tactic_sources
from ..devicekit.engine_compat import add_compat_arguments
from ..devicekit.numbers import BATCH, COUNT, POINTS, Range, argtype
from ..export.onnx_export import MIN_OPSET, max_opset
from ..export.pipeline import PRECISIONS, TARGETS, ExportOptions, export_checkpoint
from ..export.replacing import describe_replaced
from ..package.options import TARGETS as PACKAGE_TARGETS
from .args import add_number, add_precision, add_quiet, comma_list
from .entry import cli_main


def _package_targets(text: str) -> list[str]:
    """``--package deepstream,triton``: the package targets, each checked."""
    targets = comma_list(text)
    unknown = [t for t in targets if t not in PACKAGE_TARGETS]
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown package target(s) {', '.join(unknown)}; choose from "
                                         f"{', '.join(PACKAGE_TARGETS)}")
    return targets


def _opset(text: str) -> int:
    """``--opset``: an integer from MIN_OPSET to the highest opset the exporter here supports (asked when given)."""
    return int(argtype(Range(MIN_OPSET, max_opset(), integer=True), "--opset")(text))


_opset.rule = Range(MIN_OPSET, integer=True)  # type: ignore[attr-defined]  # the upper end is asked when parsed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ibit-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="checkpoint directory written by ibit-train")
    p.add_argument("--to", choices=TARGETS, default="onnx", help="target format (default: onnx)")
    add_precision(p, default="fp32",
                  help=f"precision(s) of the artifacts, from {', '.join(PRECISIONS)}; comma-separated for several "
                        f"(the last one is the TensorRT engine's); with --to tensorrt, 'auto': all three, and the engine "
                        f"of the fastest that passes its checks (built here with TensorRT, else on the device). fp32 "
                       f"model.onnx is always written as the reference")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--opset", type=_opset, default=18, help="ONNX opset (>= 17)")
    for flag, default in (("--min-batch", 1), ("--opt-batch", 8), ("--max-batch", 64)):
        add_number(p, flag, BATCH, default=default)
    p.add_argument("--attention", default="dense", metavar="FORM",
                   help="bias-mode IBiT only: 'dense' (the folded (heads, T, T) bias, default), "
                        "'flashbias[:RANK|:energy=E|:error=X]': the bias as rank-R factors inside a plain attention "
                        "call (default energy=0.995), gated against the dense model (--max-drop), or "
                        "'onnx-attention': dense, plus model.attn.onnx with each attention as one exact ONNX "
                        "Attention op (opset 23, the bias as attn_mask; model.fp16.attn.onnx too with fp16) that "
                        "engine builds use where TensorRT >= 10.14 parses it (model.onnx elsewhere). Mask-mode IBiT has no softmax and keeps its own "
                        "form (dense only); see README")
    p.add_argument("--no-ort-fusions", dest="ort_fusions", action="store_false",
                   help="write no model*.ort.onnx (ONNX Runtime's fused twins of the ONNX files, gated against them; "
                        "ort-cpu/ort-cuda run them where present)")
    p.add_argument("--refittable", action="store_true",
                   help="with --to tensorrt: a refittable engine (BuilderFlag.REFIT), so `ibit-deploy refit BUNDLE "
                        "CHECKPOINT` can put a retrained checkpoint's weights into it on the device in seconds")
    p.add_argument("--strip-weights", action="store_true",
                   help="with --refittable: ship the engine built here without its weights (STRIP_PLAN); the "
                        "device refits it from the bundle's ONNX before first use (build_engine.py --refit)")
    p.add_argument("--require-engine", action="store_true",
                   help="with --to tensorrt: fail (exit 3) unless an engine is built here")
    p.add_argument("--package", type=_package_targets, action="extend", default=[], metavar="TARGET[,TARGET...]",
                   help=f"after the export, also write OUT/packages/TARGET for {', '.join(PACKAGE_TARGETS)} "
                        f"(comma-separated; same as `ibit-deploy package`)")
    p.add_argument("--wait", action="store_true",
                   help="if another process is writing the bundle, wait for it (default: fail at once, exit 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a bundle in --out that was exported from another checkpoint (all its files and "
                        "bench results go); a re-export of the same checkpoint needs no flag")
    add_quiet(p)
    add_limit_arguments(p)  # --to tensorrt: the engine built here (the on-device kit detects its own device class)
    add_compat_arguments(p)
    q = p.add_argument_group("quantization (fp16 / int8)")
    add_number(q, "--max-drop", POINTS, default=1.0,
                   help="largest top-1 drop in percentage points vs fp32 (default 1.0; the manifest records it as a "
                        "fraction, 0.01)")
    q.add_argument("--auto", action="store_true", help="find a small set of layers to keep in float that meets "
                                                        "--max-drop (per-layer sensitivity)")
    q.add_argument("--data", default=None, help="dataset spec for calibration and the gate (default: the checkpoint's)")
    q.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default=None)
    add_number(q, "--calib-count", CALIB_COUNT, default=None, help="calibration images (default 256)")
    add_number(q, "--eval-count", COUNT, default=None, help="held-out images for the accuracy gate")
    q.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="ONNX node or PyTorch layer name pattern (fnmatch, or re:REGEX) to keep in float; repeatable; exclude wins over include and the defaults")
    q.add_argument("--include", action="append", default=[], metavar="PATTERN",
                   help="pattern to quantize even though the defaults keep it in float (repeatable)")
    return p


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    quantize = {"max_drop": args.max_drop / 100.0, "auto": args.auto}  # points on the command line, a fraction inside
    for key, value in (("data", args.data), ("method", args.calib_method), ("calib_count", args.calib_count),
                       ("eval_count", args.eval_count)):
        if value is not None:
            quantize[key] = value
    if args.exclude:
        quantize["exclude"] = args.exclude
    if args.include:
        quantize["include"] = args.include
    limits = {key: value for key, value in (
        ("workspace_mib", args.workspace_mib), ("optimization_level", args.builder_optimization_level),
        ("aux_streams", args.aux_streams), ("device_class_key", args.device_class),
        ("tactic_sources", parse_tactic_sources(args.tactic_sources) if args.tactic_sources else None))
        if value is not None}
    return ExportOptions(to=args.to, precision=args.precision, opset=args.opset, min_batch=args.min_batch,
                         opt_batch=args.opt_batch, max_batch=args.max_batch, require_engine=args.require_engine,
                         quantize=quantize, wait=args.wait, attention=args.attention,
                         overwrite=args.overwrite, builder_limits=limits, ort_fusions=args.ort_fusions,
                         refittable=args.refittable, strip_weights=args.strip_weights,
                         engine_compat=args.engine_compat or "none", exclude_lean_runtime=args.exclude_lean_runtime)


@cli_main("ibit-export")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    stages = tqdm(desc="ibit-export", unit="stage", bar_format="{desc}: {n_fmt} stages {elapsed} | {postfix}",
                  disable=True if args.quiet else None)

    def progress(stage: str) -> None:
        stages.set_postfix_str(stage)
        stages.update(1)

    with stages:  # closed before the wrapper prints why the export stopped
        manifest = export_checkpoint(args.checkpoint, args.out, options_from_args(args), progress=progress)
    replaced = manifest.get("export", {}).get("replaced")
    if replaced is not None:
        print(describe_replaced(replaced))
    for art in manifest["artifacts"]:
        gate = art.get("gate") or {}
        extra = (f"  gate: top-1 drop {gate['top1_drop']:.2%} (<= {gate['max_drop']:.2%}) passed"
                 if "top1_drop" in gate else "")
        print(f"  {art['kind']:<12} {art.get('precision', ''):<5} {args.out / art['path']}{extra}")
        if art["kind"] == "calibration":
            _say_calibration_count(art, args)
    fb = manifest.get("attention", {})
    if fb.get("form") == "flashbias":
        print(f"  flashbias {fb['policy']}: ranks {[layer['rank'] for layer in fb['layers']]}, max |bias error| "
              f"{fb['max_bias_error']:.3g}, logits vs dense: {fb['gate']['reason']}")
        if not fb["gate"]["real_images"]:
            print(f"ibit-export: WARNING: the FlashBias gate ran on {fb['gate']['images']}; its top-1 numbers are "
                  f"agreement with the dense model, not accuracy", file=sys.stderr)
    if fb.get("form") == "onnx-attention":
        op = fb["attention_op"]
        print(f"  onnx-attention: {op['path']} ({op['cores']} Attention ops, opset {op['opset']}) vs model.onnx: "
              f"{op['reason']}")
        if "fp16" in op:
            print(f"  onnx-attention fp16: {op['fp16']['path']}: {op['fp16']['reason']}")
    trt = manifest.get("tensorrt")
    if trt is not None:
        print(trt["message"])
        if args.require_engine and not trt.get("engine"):
            raise errors.RequirementUnmet("--require-engine: no TensorRT engine was built on this machine")
    tt = manifest.get("torch_tensorrt")
    if tt is not None:
        print(tt["message"])
        if args.require_engine and not tt.get("program"):
            raise errors.RequirementUnmet("--require-engine: no torch-tensorrt program was built on this machine")
    print(f"wrote {args.out / 'manifest.json'}")
    _packages(args, manifest)
    return errors.DONE


def _say_calibration_count(entry: dict, args: argparse.Namespace) -> None:
    """Say so when the calibration set is smaller than the count asked for (the split holds fewer images)."""
    from ..calibration import count_note

    note = count_note(entry, "--calib-count" if args.calib_count is not None else "calibration count")
    if note:
        print(f"ibit-export: note: {note}", file=sys.stderr)


def _packages(args: argparse.Namespace, manifest: dict | None = None) -> None:
    """The packages the replaced bundle held (kept by the export) regenerated from the new bundle, then
    ``--package``: the same library call as ``ibit-deploy package``, into OUT/packages/TARGET; a failed package
    check raises (exit 1)."""
    from ..package import PackageError, PackageOptions
    from ..package.core import repackage
    from ..package.options import precision_for
    from .package import run_package

    asked = {f"packages/{target}" for target in args.package or ()}
    for rel in ((manifest or {}).get("export", {}).get("replaced") or {}).get("packages", []):
        if rel in asked:
            continue  # --package writes it again below
        try:
            repackage(args.out, args.out / rel)
            print(f"  regenerated the package {args.out / rel} from the new bundle")
        except (PackageError, OSError, ValueError) as exc:
            print(f"ibit-export: kept the package {args.out / rel} as it was (made from the previous bundle): it "
                  f"could not be regenerated: {exc}", file=sys.stderr)
    for target in dict.fromkeys(args.package):
        options = PackageOptions(precision=precision_for(target, options_from_args(args).precisions), overwrite=True)
        run_package(args.out, target, args.out / "packages" / target, options)


if __name__ == "__main__":
    raise SystemExit(main())
