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

from ..export.pipeline import PRECISIONS, TARGETS, ExportFailed, ExportOptions, export_checkpoint
from ..export.replacing import describe_replaced
from ..locking import LockBusy
from ..package.options import TARGETS as PACKAGE_TARGETS
from .entry import cli_main


class EngineRequired(RuntimeError):
    """--require-engine was given and no engine could be built on this machine."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ibit-export", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("checkpoint", type=Path, help="checkpoint directory written by ibit-train")
    p.add_argument("--to", choices=TARGETS, default="onnx", help="target format (default: onnx)")
    p.add_argument("--precision", default="fp32", metavar="P[,P...]",
                   help=f"precision(s) of the artifacts, from {', '.join(PRECISIONS)}; comma-separated for several "
                        f"(the last one is the TensorRT engine's); with --to tensorrt, 'auto': all three, and the engine "
                        f"of the fastest that passes its checks (built here with TensorRT, else on the device). fp32 "
                        f"model.onnx is always written as the reference")
    p.add_argument("--out", type=Path, required=True, help="bundle directory to write")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (>= 17)")
    p.add_argument("--min-batch", type=int, default=1)
    p.add_argument("--opt-batch", type=int, default=8)
    p.add_argument("--max-batch", type=int, default=64)
    p.add_argument("--attention", default="dense", metavar="FORM",
                   help="bias-mode IBiT only: 'dense' (the folded (heads, T, T) bias, default) or "
                        "'flashbias[:RANK|:energy=E|:error=X]': the bias as rank-R factors inside a plain attention "
                        "call (default energy=0.995), gated against the dense model (--max-drop); see README")
    p.add_argument("--require-engine", action="store_true",
                   help="with --to tensorrt: fail (exit 3) unless an engine is built here")
    p.add_argument("--package", action="append", default=[], choices=PACKAGE_TARGETS, metavar="TARGET",
                   help=f"after the export, also write OUT/packages/TARGET for {', '.join(PACKAGE_TARGETS)} "
                        f"(repeatable; same as `ibit-deploy package`)")
    p.add_argument("--wait", action="store_true",
                   help="if another process is writing the bundle, wait for it (default: fail at once, exit 1)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a bundle in --out that was exported from another checkpoint (all its files and "
                        "bench results go); a re-export of the same checkpoint needs no flag")
    q = p.add_argument_group("quantization (fp16 / int8)")
    q.add_argument("--max-drop", type=float, default=1.0,
                   help="largest top-1 drop in percentage points vs fp32 (default 1.0; the manifest records it as a "
                        "fraction, 0.01)")
    q.add_argument("--auto", action="store_true", help="find a small set of layers to keep in float that meets "
                                                        "--max-drop (per-layer sensitivity)")
    q.add_argument("--data", default=None, help="dataset spec for calibration and the gate (default: the checkpoint's)")
    q.add_argument("--calib-method", choices=("minmax", "entropy", "percentile"), default=None)
    q.add_argument("--calib-count", type=int, default=None, help="calibration images (default 256)")
    q.add_argument("--eval-count", type=int, default=None, help="held-out images for the accuracy gate")
    q.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="ONNX node or PyTorch layer name pattern (fnmatch, or re:REGEX) to keep in float; repeatable; exclude wins over include and the defaults")
    q.add_argument("--include", action="append", default=[], metavar="PATTERN",
                   help="pattern to quantize even though the defaults keep it in float (repeatable)")
    return p


def options_from_args(args: argparse.Namespace) -> ExportOptions:
    if args.max_drop < 0:
        raise ValueError(f"--max-drop is a budget in top-1 points and must be >= 0, got {args.max_drop}")
    quantize = {"max_drop": args.max_drop / 100.0, "auto": args.auto}  # points on the command line, a fraction inside
    for key, value in (("data", args.data), ("method", args.calib_method), ("calib_count", args.calib_count),
                       ("eval_count", args.eval_count)):
        if value is not None:
            quantize[key] = value
    if args.exclude:
        quantize["exclude"] = args.exclude
    if args.include:
        quantize["include"] = args.include
    return ExportOptions(to=args.to, precision=args.precision, opset=args.opset, min_batch=args.min_batch,
                         opt_batch=args.opt_batch, max_batch=args.max_batch, require_engine=args.require_engine,
                         quantize=quantize, wait=args.wait, attention=args.attention,
                         overwrite=args.overwrite)


@cli_main("ibit-export")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from tqdm import tqdm

    stages = tqdm(desc="ibit-export", unit="stage", bar_format="{desc}: {n_fmt} stages {elapsed} | {postfix}",
                  disable=None)

    def progress(stage: str) -> None:
        stages.set_postfix_str(stage)
        stages.update(1)

    try:
        manifest = export_checkpoint(args.checkpoint, args.out, options_from_args(args), progress=progress)
    except (ExportFailed, LockBusy) as exc:
        stages.close()
        print(f"ibit-export: FAILED: {exc}", file=sys.stderr)
        return 1
    except (OSError, ValueError) as exc:  # missing/unreadable/unwritable files, bad values
        stages.close()
        print(f"ibit-export: error: {exc}", file=sys.stderr)
        return 2
    stages.close()
    replaced = manifest.get("export", {}).get("replaced")
    if replaced is not None:
        print(describe_replaced(replaced))
    for art in manifest["artifacts"]:
        gate = art.get("gate") or {}
        extra = (f"  gate: top-1 drop {gate['top1_drop']:.2%} (<= {gate['max_drop']:.2%}) passed"
                 if "top1_drop" in gate else "")
        print(f"  {art['kind']:<12} {art.get('precision', ''):<5} {args.out / art['path']}{extra}")
    fb = manifest.get("attention", {})
    if fb.get("form") == "flashbias":
        print(f"  flashbias {fb['policy']}: ranks {[layer['rank'] for layer in fb['layers']]}, max |bias error| "
              f"{fb['max_bias_error']:.3g}, logits vs dense: {fb['gate']['reason']}")
        if not fb["gate"]["real_images"]:
            print(f"ibit-export: WARNING: the FlashBias gate ran on {fb['gate']['images']}; its top-1 numbers are "
                  f"agreement with the dense model, not accuracy", file=sys.stderr)
    trt = manifest.get("tensorrt")
    if trt is not None:
        print(trt["message"])
        if args.require_engine and not trt.get("engine"):
            print("ibit-export: --require-engine: no TensorRT engine was built on this machine", file=sys.stderr)
            return 3
    tt = manifest.get("torch_tensorrt")
    if tt is not None:
        print(tt["message"])
        if args.require_engine and not tt.get("program"):
            print("ibit-export: --require-engine: no torch-tensorrt program was built on this machine", file=sys.stderr)
            return 3
    print(f"wrote {args.out / 'manifest.json'}")
    return _packages(args, manifest)


def _packages(args: argparse.Namespace, manifest: dict | None = None) -> int:
    """The packages the replaced bundle held (kept by the export) regenerated from the new bundle, then
    ``--package``: the same library call as ``ibit-deploy package``, into OUT/packages/TARGET."""
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
        code = run_package(args.out, target, args.out / "packages" / target, options, prog="ibit-export --package")
        if code:
            return code
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
