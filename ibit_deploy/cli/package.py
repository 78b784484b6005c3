"""``ibit-deploy package``: bundle -> a directory DeepStream, Triton or jetson-inference consumes as it is.

    ibit-deploy package BUNDLE --for deepstream       --out ds/      [--precision fp16] [--batch-size 1]
    ibit-deploy package BUNDLE --for triton           --out models/  [--triton-platform auto|tensorrt_plan|onnxruntime_onnx]
    ibit-deploy package BUNDLE --for jetson-inference --out jetson/

Exit codes: 0 written; 1 a written file failed its check (parity with the bundle, config schema); 2 bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import errors
from ..package import PACKAGE_MANIFEST, TARGETS, PackageOptions, package_bundle
from ..package.options import RANGES, TRITON_PLATFORMS
from .args import add_bundle, add_number, add_precision
from .entry import cli_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ibit-deploy package", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bundle(p)
    p.add_argument("--for", dest="target", choices=TARGETS, required=True, help="application to package for")
    p.add_argument("--out", type=Path, required=True, help="package directory to write")
    add_precision(p, default="fp32", metavar="P", help="fp32, fp16 or int8 (jetson-inference: fp32/fp16)")
    p.add_argument("--name", default=None, help="model name (Triton model directory); default: the bundle's model")
    add_number(p, "--batch-size", RANGES["batch_size"], default=1,
               help="nvinfer batch-size (frames per batch; default 1)")
    add_number(p, "--threshold", RANGES["classifier_threshold"], default=0.0,
               help="nvinfer classifier-threshold on the top class probability, 0 to 1 (default 0: always label)")
    p.add_argument("--triton-platform", choices=TRITON_PLATFORMS, default="auto",
                   help="auto: the bundle's TensorRT engine if it has one of this precision, else ONNX")
    add_number(p, "--max-queue-delay-us", RANGES["max_queue_delay_us"], default=100,
               help="Triton dynamic batching queue delay")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out directory")
    p.add_argument("--allow-failed", action="store_true",
                   help="package an artifact that FAILED its gate at export (a warning says so; package.json records "
                        "it)")
    return p


def options_from_args(args: argparse.Namespace) -> PackageOptions:
    return PackageOptions(precision=args.precision, name=args.name, batch_size=args.batch_size,
                          classifier_threshold=args.threshold, triton_platform=args.triton_platform,
                          max_queue_delay_us=args.max_queue_delay_us, overwrite=args.overwrite,
                          allow_failed=args.allow_failed)


def run_package(bundle: str | Path, target: str, out: Path, options: PackageOptions) -> None:
    """Package and print what was written (shared with ``ibit-export --package``). Raises what ``package_bundle``
    raises: PackageError (bad input, exit 2), PackageCheckFailed (a written file failed its check, exit 1)."""
    manifest = package_bundle(Path(bundle), target, out, options)
    for entry in manifest["files"]:
        print(f"  {entry['role']:<22} {out / entry['path']}")
    fold = manifest.get("model", {}).get("fold")
    print(f"  preprocessing: {manifest['preprocessing']['target']}"
          + (" (bundle normalisation folded into the first layer)" if fold else ""))
    parity = manifest.get("parity")
    if parity:
        print(f"  parity with the bundle: max |diff| {parity['max_abs_diff']:.3g} ({parity['compared']})")
    for note in manifest.get("notes", []):
        print(f"  note: {note}")
    for command in manifest.get("commands", []):
        print(f"  run: {command}")
    print(f"wrote {out / PACKAGE_MANIFEST}")


@cli_main("ibit-deploy package")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_package(args.bundle, args.target, args.out, options_from_args(args))
    return errors.DONE


if __name__ == "__main__":
    raise SystemExit(main())
