"""``ibit-calibrate``: build a calibration ``.npz`` from a recipe file or from flags.

    ibit-calibrate --recipe calibration/mnist5k_int8.json --out calib.npz
    ibit-calibrate export/mnist_ibit --spec mnist5k --count 512 --seed 1 --out calib.npz

With a BUNDLE the preprocessing (image size, mean, std) and the dataset's train/val split come from the bundle's
manifest, so the images match what the exported model expects. Flags override the recipe.
"""

from __future__ import annotations

import argparse
import json
import sys

from .. import errors
from ..calibration import CalibrationRecipe, calibrate, check_count, count_note, load_recipe
from ..calibration.recipe import COUNT, PERCENTILE
from ..devicekit.numbers import SEED
from .args import add_bundle, add_number, add_overwrite
from .entry import cli_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ibit-calibrate", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bundle(parser, optional=True, old_flag="--bundle",
               help="exported bundle (optional): take preprocessing and the data split from its manifest")
    parser.add_argument("--out", required=True, help="output .npz file")
    add_overwrite(parser, "calibration set")
    parser.add_argument("--recipe", help="recipe JSON (calibration/*.json)")
    parser.add_argument("--spec", help="dataset spec, e.g. mnist5k, cifar10:DIR, imagefolder:DIR")
    parser.add_argument("--split", choices=("train", "test"), help="split to draw from (default train)")
    add_number(parser, "--count", COUNT, help="number of images (default 256)")
    add_number(parser, "--seed", SEED, help="selection seed (default 0)")
    parser.add_argument("--method", choices=("minmax", "entropy", "percentile"),
                        help="calibration method the set is for (checks the minimum count)")
    add_number(parser, "--percentile", PERCENTILE, help="percentile for --method percentile, in (50, 100]")
    return parser


@cli_main("ibit-calibrate")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..outputs import CALIBRATION, check_output, source_id

    recipe = load_recipe(args.recipe).to_dict() if args.recipe else {}
    input_block = None
    if args.bundle:
        from ..data.eval_split import EvalSet
        from ..devicekit.bundle import open_bundle

        bundle = open_bundle(args.bundle, verify=False)
        input_block = bundle.manifest["input"]
        held_out = EvalSet.from_manifest(bundle.manifest)
        if held_out.spec:  # the held-out split calibration must stay out of
            recipe.update(spec=held_out.spec, val_fraction=held_out.val_fraction, split_seed=held_out.seed)
    flags = {"spec": args.spec, "split": args.split, "count": args.count, "seed": args.seed, "method": args.method,
             "percentile": args.percentile}
    recipe.update({k: v for k, v in flags.items() if v is not None})
    if args.count is not None:
        check_count(args.count, recipe.get("method", CalibrationRecipe.method), "--count")
    if args.bundle:  # the images must fit the bundle's model: classes, channels, image size
        from ..data.fit import ModelInput, check_data_fits

        check_data_fits(recipe.get("spec", CalibrationRecipe.spec),
                        ModelInput.from_manifest(bundle.manifest, f"bundle {args.bundle}"))
    source = source_id(args.bundle) if args.bundle else CalibrationRecipe.from_dict(recipe).spec
    check_output(args.out, CALIBRATION, source, overwrite=args.overwrite)  # the write policy: only its own kind, made for the same source
    meta = calibrate(args.out, CalibrationRecipe.from_dict(recipe), input_block, source=source)
    note = count_note(meta, "--count" if args.count is not None else "recipe count")
    if note:
        print(f"ibit-calibrate: note: {note}", file=sys.stderr)
    summary = {k: meta[k] for k in ("spec", "split", "count", "seed", "method", "shape", "images_sha256")}
    print(json.dumps({"out": args.out, **summary}))
    return errors.DONE


if __name__ == "__main__":
    sys.exit(main())
