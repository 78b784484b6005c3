"""``ibit-eval``: top-1/top-5, per-class accuracy and a confusion matrix of a trained checkpoint.

Writes ``eval_<split>.json`` and ``confusion_<split>.png`` into --out (default: the checkpoint directory) and prints
the JSON result. Exit codes: 0 done, 2 bad input (missing or corrupt checkpoint, unreadable data).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .entry import cli_main


@cli_main("ibit-eval")
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ibit-eval", description=__doc__)
    parser.add_argument("checkpoint", type=Path, help="checkpoint directory written by ibit-train")
    parser.add_argument("--data", help="dataset spec (default: the one the checkpoint was trained on)")
    parser.add_argument("--split", choices=("val", "test", "train"), default="val")
    parser.add_argument("--out", type=Path, help="where to write the JSON and PNG (default: the checkpoint directory)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    args = parser.parse_args(argv)
    from ..train.evaluate import evaluate_checkpoint

    try:
        result = evaluate_checkpoint(args.checkpoint, args.data, args.split, args.out or args.checkpoint,
                                     batch_size=args.batch_size, device=args.device)
    except (FileNotFoundError, ValueError, RuntimeError) as exc:
        print(f"ibit-eval: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
