"""``ibit-deploy refit BUNDLE CHECKPOINT``: a retrained checkpoint's weights into a refittable bundle.

    ibit-export CKPT_V1 --to tensorrt --refittable --out bundle/     # once
    ibit-deploy refit bundle/ CKPT_V2                                  # desktop: re-export, compare, swap in
    python3 bundle/build_engine.py --refit                            # device: refit the engine in seconds

The checkpoint must be the bundle's model retrained (same architecture, attention mode and folding, input and
classes) and its ONNX graphs must differ from the bundle's only in their weights; anything else is refused naming
what differs (exit 2), with the bundle untouched. The re-export runs every gate of an export (exit 1 if one fails).
The engine stays in the bundle, marked as needing a refit, until the device refits and checks it.

Exit codes: 0 done; 1 a gate failed, or another process is writing the bundle (--wait waits); 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import errors
from .args import add_bundle, add_quiet
from .entry import cli_main


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ibit-deploy refit", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_bundle(p)
    p.add_argument("checkpoint", type=Path, help="checkpoint directory (ibit-train) of the bundle's model, retrained")
    p.add_argument("--wait", action="store_true",
                   help="if another process is writing the bundle, wait for it (default: fail at once, exit 1)")
    add_quiet(p)
    return p


@cli_main("ibit-deploy refit")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..export.refit import refit_bundle

    say = (lambda stage: None) if args.quiet else (lambda stage: print(f"ibit-deploy refit: {stage}", file=sys.stderr))
    bundle = Path(args.bundle)
    manifest = refit_bundle(bundle, args.checkpoint, wait=args.wait, progress=say)
    record = manifest["refit"]
    print(f"refitted {bundle} to {args.checkpoint}: {len(record['graphs_compared'])} ONNX graph(s) match the "
          f"bundle's, weights replaced")
    for engine in record["engines_pending"]:
        print(f"  {bundle / engine}: holds the previous weights until the device runs "
              f"`python3 build_engine.py --refit` in the bundle (refit + the acceptance check)")
    if not record["engines_pending"]:
        print("  no engine yet: `python3 build_engine.py` on the device builds a refittable one from the new ONNX")
    for package in record["stale_packages"]:
        print(f"ibit-deploy refit: note: {bundle / package} was made from the previous weights; regenerate it "
              f"with `ibit-deploy package`", file=sys.stderr)
    if record["results_dropped"]:
        print(f"  dropped {record['results_dropped']} bench result(s): they measured the previous weights")
    return errors.DONE


if __name__ == "__main__":
    raise SystemExit(main())
