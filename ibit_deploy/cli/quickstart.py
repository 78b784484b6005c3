"""``ibit-deploy quickstart``: train a small IBiT on bundled MNIST, fold, export FP32/FP16/INT8 + TensorRT bundle,
benchmark every artifact against PyTorch and print the table. Re-running resumes or reuses the trained model."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .. import errors
from ..devicekit.numbers import COUNT, SEED, THREADS
from .args import add_backends, add_number, add_precision, add_quiet, comma_ints
from .entry import cli_main


def build_parser() -> argparse.ArgumentParser:
    from ..quickstart import QuickstartConfig, default_out

    defaults = QuickstartConfig()
    parser = argparse.ArgumentParser(prog="ibit-deploy quickstart", description=__doc__)
    parser.add_argument("--out", default=default_out(), help=f"output directory (default {defaults.out})")
    parser.add_argument("--data", default=defaults.data, help="dataset spec (default: the bundled mnist5k)")
    add_number(parser, "--epochs", COUNT, default=defaults.epochs)
    add_precision(parser, default=defaults.precisions, old=("--precisions",),
                  help=f"artifact precisions, comma-separated (default {defaults.precisions})")
    add_backends(parser, default=defaults.backends, type=None,
                 help=f"benchmark backends, comma-separated (default {defaults.backends})")
    parser.add_argument("--batches", type=comma_ints, default=comma_ints(defaults.batches),
                        help=f"benchmark batch sizes, comma-separated (default {defaults.batches})")
    add_number(parser, "--seed", SEED, default=defaults.seed)
    add_number(parser, "--threads", THREADS, default=defaults.threads, help="CPU threads (default 0: all cores)")
    add_quiet(parser)
    return parser


@cli_main("ibit-deploy quickstart")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..devicekit.fileio import atomic_write_text
    from ..quickstart import TOP1_TARGET, QuickstartConfig, quickstart

    config = QuickstartConfig(out=args.out, data=args.data, epochs=args.epochs, precisions=args.precision,
                              backends=args.backends, batches=",".join(map(str, args.batches)), seed=args.seed,
                              threads=args.threads, progress=not args.quiet)
    summary = quickstart(config)  # an ExportFailed (no bundle written; a failed gate does not get here): exit 1
    print(Path(summary["report_markdown"]).read_text())
    print(summary["tensorrt"])
    verdict = "meets" if summary["top1_target_met"] else "DOES NOT meet"
    print(f"validation top-1 {summary['val_top1']:.2%} ({verdict} the {TOP1_TARGET:.0%} target); "
          f"checkpoint {summary['checkpoint']}, bundle {summary['bundle']}, report {summary['report']}")
    from .compare import OWN_DATA_EXAMPLE

    print(f"which model to ship for your own data (IBiT vs ViT/DeiT, ConViT, a CNN; accuracy by data fraction vs "
          f"latency): {OWN_DATA_EXAMPLE}")
    if not summary["gates_passed"]:
        print(f"ibit-deploy quickstart: FAILED: {summary['gate_failed']}", file=sys.stderr)
    atomic_write_text(Path(args.out, "quickstart.json"), json.dumps(summary, indent=2, default=str))
    return exit_code(summary)


def exit_code(summary: dict) -> int:
    """DONE when the accuracy target is met, every gate passed and the benchmark completed; else CHECK_FAILED."""
    done = summary["top1_target_met"] and summary["gates_passed"] and summary["bench_status"] == "complete"
    return errors.DONE if done else errors.CHECK_FAILED


if __name__ == "__main__":
    raise SystemExit(main())
