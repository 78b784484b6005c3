"""``ibit-bench BUNDLE``: accuracy and latency of every backend of a bundle; a thin wrapper over ``run_benchmark``.

Examples::

    ibit-bench runs/mnist/bundle                                   # every available backend, batches 1,8,32
    ibit-bench bundle --backends torch-ref,ort-cpu --batches 1,16 --limit 500 --seconds 2 --threads 2
    ibit-bench bundle --backends tensorrt,ort-cuda --precision fp16,int8 --jetson --trtexec --out bench/orin
    ibit-bench bundle --backends ort-cpu --end-to-end digits/ --batches 1,8   # image file -> label, by stage

Exit status (ibit_deploy/errors.py): 0 something was measured and every backend ran or was skipped with a reason,
1 some backend failed (the report says which), 2 bad arguments or an unusable bundle, or batch sizes outside the
bundle's range (nothing measured, no report written), 3 nothing measured because every backend was unavailable here,
70 unexpected error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from .. import errors
from ..bench.harness import DEFAULT_BACKENDS, PRECISIONS, SPLITS, BenchOptions, measured_anything, run_benchmark
from ..bench.latency import BUDGET_RANGES
from ..bench.report import markdown_table
from ..devicekit.numbers import COUNT, THREADS
from ..runtime.load import ORT_GRAPHS
from .args import (
    add_backends,
    add_bundle,
    add_device,
    add_number,
    add_precision,
    add_quiet,
    comma_ints,
    comma_list,
)
from .entry import cli_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ibit-bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bundle(p)
    add_backends(p, default=list(DEFAULT_BACKENDS),
                 help=f"comma-separated: torch-ref, torch-folded, ort-cpu, ort-cuda, ort-trt, tensorrt "
                      f"(default: {','.join(DEFAULT_BACKENDS)})")
    add_precision(p, type=comma_list, default=None, old=("--precisions",),
                  help=f"artifact precisions to run, from {','.join(PRECISIONS)} (default: all in the bundle)")
    p.add_argument("--batches", type=comma_ints, default=[1, 8, 32], help="batch sizes of the latency sweep (1,8,32)")
    p.add_argument("--data", default=None, help="dataset spec (default: the one the manifest records)")
    p.add_argument("--split", default="val", choices=SPLITS, help="dataset split (val)")
    add_number(p, "--limit", COUNT, default=None, help="evaluate a stratified subset of N images")
    add_number(p, "--warmup", BUDGET_RANGES["warmup"], default=10, help="untimed calls before each timed series (10)")
    budget = p.add_mutually_exclusive_group()
    add_number(budget, "--iters", BUDGET_RANGES["iters"], default=None, help="timed calls per batch size (default 50)")
    add_number(budget, "--seconds", BUDGET_RANGES["seconds"], default=None,
               help="time each batch size for S seconds instead (at most 3600)")
    add_number(p, "--threads", THREADS, default=0, help="intra-op threads for PyTorch and ORT (0: default)")
    add_device(p, default="cpu", choices=("cpu", "cuda"), help="device of the torch backends (cpu)",
               old=("--torch-device",))
    p.add_argument("--jetson", action="store_true", help="Jetson protocol: power with tegrastats, mode and clocks")
    p.add_argument("--jetson-clocks", action="store_true",
                   help="run `sudo -n jetson_clocks` first (changes the board's clocks until reboot)")
    p.add_argument("--trtexec", action="store_true", help="also time TensorRT engines with trtexec")
    p.add_argument("--end-to-end", metavar="DIR", default=None,
                   help="also time image file -> label by stage (read, decode, preprocess, h2d, inference, d2h, "
                        "postprocess) on the image files of DIR, at batch 1 and --batches, for each runtime backend")
    p.add_argument("--cpp-runner", metavar="BINARY", default=None,
                   help="with --end-to-end: also time the C++ ONNX Runtime runner (export/cpp's ort_runner) on the same "
                        "files and batch sizes, one row per precision")
    p.add_argument("--ort-graph", choices=ORT_GRAPHS, default="fused",
                   help="ort-cpu/ort-cuda: run the bundle's fused graph (model*.ort.onnx) where it has one (fused, "
                        "the default) or always the plain ONNX file (plain)")
    p.add_argument("--out", default=None, help="report directory (default: BUNDLE/bench)")
    p.add_argument("--allow-failed", action="store_true",
                   help="also run artifacts that FAILED their gate at export (a warning says so; by default they are "
                        "listed as not run, with the reason)")
    add_quiet(p)
    return p


@cli_main("ibit-bench")
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = BenchOptions(
        backends=args.backends, precisions=args.precision, batches=args.batches, data=args.data, split=args.split,
        limit=args.limit, warmup=args.warmup, iters=args.iters, seconds=args.seconds, threads=args.threads,
        torch_device=args.device, jetson=args.jetson, jetson_clocks=args.jetson_clocks, trtexec=args.trtexec,
        progress=not args.quiet, allow_failed=args.allow_failed, end_to_end=args.end_to_end,
        cpp_runner=args.cpp_runner, ort_graph=args.ort_graph,
    )
    try:
        report = run_benchmark(args.bundle, options, out_dir=args.out)
    except KeyboardInterrupt:
        print("ibit-bench: interrupted; a complete earlier report stays as it was, else the partial one is written, "
              "marked \"interrupted\"", file=sys.stderr)
        return errors.INTERRUPTED
    print(markdown_table(report))
    if args.jetson and not report["jetson"]["available"]:
        print(f"note: Jetson mode unavailable: {report['jetson']['reason']}", file=sys.stderr)
    out = args.out or f"{args.bundle}/bench"
    print(f"report: {out}/report.json ({report['status']})", file=sys.stderr)
    if not measured_anything(report):
        if all(r["status"] == "skipped" for r in report["runs"]):
            raise errors.RequirementUnmet("nothing was measured: every backend was skipped (see the reasons above)")
        raise errors.CheckFailed("nothing was measured: no run timed any batch size")
    return errors.DONE if report["complete"] else errors.CHECK_FAILED


if __name__ == "__main__":
    sys.exit(main())
