"""``ibit-masks``: render every layer's and head's mask for one query patch as a PNG grid."""

from __future__ import annotations

import argparse
from pathlib import Path

from .. import errors
from ..devicekit.numbers import Range
from .args import add_overwrite
from .entry import cli_main

QUERY = Range(0, integer=True)  # a patch grid cell (the grid's size is checked against the model)


def parse_query(text: str) -> tuple[int, int]:
    """``--query ROW,COL``: two integers >= 0."""
    parts = text.split(",")
    if len(parts) != 2:
        raise argparse.ArgumentTypeError(f"--query expects ROW,COL (e.g. 3,3), got {text!r}")
    try:
        row, col = (QUERY.check(v.strip(), "--query ROW and COL each") for v in parts)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc} (e.g. --query 3,3)") from None
    return int(row), int(col)


parse_query.rule = QUERY  # type: ignore[attr-defined]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibit-masks", description=__doc__)
    parser.add_argument("source", help="a checkpoint directory (from ibit-train) or an IBiT model name (initial masks)")
    parser.add_argument("--query", type=parse_query, default=None, help="query patch ROW,COL (default: grid centre)")
    parser.add_argument("--out", type=Path, default=Path("masks.png"), help="output PNG")
    add_overwrite(parser, "mask plot")
    return parser


@cli_main("ibit-masks")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..checkpoint import load_checkpoint
    from ..models import create_model
    from ..outputs import MASK_PLOT, check_output, png_marker, source_id
    from ..viz import plot_masks

    source = source_id(args.source) if Path(args.source).is_dir() else args.source
    # the write policy: only its own kind, for the same checkpoint or model
    check_output(args.out, MASK_PLOT, source, sources=(args.source,) if Path(args.source).is_dir() else (),
                 overwrite=args.overwrite)
    if Path(args.source).is_dir():
        model, config = load_checkpoint(args.source)
        title = f"{config['model']['name']} ({args.source})"
    else:
        model, title = create_model(args.source), f"{args.source} at initialisation"
    path = plot_masks(model, args.out, args.query, title=title, metadata=png_marker(MASK_PLOT, source))
    print(f"wrote {path}")
    return errors.DONE


if __name__ == "__main__":
    raise SystemExit(main())
