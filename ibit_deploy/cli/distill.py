"""Store LIB-KD teacher logits: run trained teachers once over their training split and write a ``.npz``.

    ibit-train --model resnet_small --data mnist5k --out runs/resnet
    ibit-train --model rednet_small --data mnist5k --out runs/rednet
    python -m ibit_deploy.cli.distill runs/resnet runs/rednet --weights 0.5,0.5 --out runs/teachers.npz
    ibit-train --model ibit_tiny_patch4_28 --data mnist5k --distill-logits runs/teachers.npz --out runs/student

Logits are computed in eval mode on un-augmented images and keyed by sample index with the split's fingerprint; the
student refuses them if its training split differs. Exit codes: 0 done, 2 bad input.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import errors
from ..devicekit.numbers import BATCH
from .args import add_comma_list, add_device, add_number, add_overwrite, comma_weights
from .entry import cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibit-distill-logits", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("teachers", nargs="+", type=Path, help="teacher checkpoint directories (from ibit-train)")
    parser.add_argument("--out", type=Path, required=True, help="output .npz")
    add_overwrite(parser, "teacher-logits file")
    add_comma_list(parser, "--weights", item=comma_weights, metavar="W[,W...]",
                   help="one weight per teacher, comma-separated (default: equal)")
    add_number(parser, "--batch-size", BATCH, default=256)
    add_device(parser, default="auto")
    return parser


@cli_main("ibit-distill-logits")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..outputs import TEACHER_LOGITS, check_output
    from ..train.distill import teachers_source
    from ..train.teachers import compute_teacher_logits

    # the write policy: only its own kind, made from the same teachers, and never over a teacher
    check_output(args.out, TEACHER_LOGITS, teachers_source(args.teachers), sources=tuple(args.teachers),
                 overwrite=args.overwrite)
    path = compute_teacher_logits(args.teachers, args.out, args.weights, args.batch_size, args.device)
    print(f"wrote {path}")
    return errors.DONE


if __name__ == "__main__":
    raise SystemExit(main())
