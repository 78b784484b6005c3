"""``ibit-eval``: top-1/top-5, per-class accuracy and a confusion matrix of a trained checkpoint.

Writes ``eval_<split>.json`` and ``confusion_<split>.png`` into --out (default: the checkpoint directory) and prints
the JSON result; top-1, top-5 and per-class accuracy are fractions (0.953, not 95.3). Exit codes: 0 done, 2 bad input
(missing or corrupt checkpoint, unreadable data, an output the disk cannot take), 70 unexpected error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from .. import errors
from ..devicekit.numbers import BATCH
from .args import add_device, add_number, add_overwrite
from .entry import cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibit-eval", description=__doc__)
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory written by ibit-train")
    parser.add_argument("--data", help="dataset spec (default: the one the checkpoint was trained on)")
    parser.add_argument("--split", choices=("val", "test", "train"), default="val")
    parser.add_argument("--out", type=Path, help="where to write the JSON and PNG (default: the checkpoint directory)")
    add_overwrite(parser, "evaluation report")
    add_number(parser, "--batch-size", BATCH, default=256)
    add_device(parser, default="auto")
    return parser


@cli_main("ibit-eval")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..train.evaluate import evaluate_checkpoint

    result = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.out or args.checkpoint,
                                 batch_size=args.batch_size, device=args.device, overwrite=args.overwrite)
    print(json.dumps(result, indent=2))
    return errors.DONE


if __name__ == "__main__":
    raise SystemExit(main())
