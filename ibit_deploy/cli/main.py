"""``ibit-deploy``: one entry point for every stage (each is also its own command).

    ibit-deploy quickstart            train + fold + export + benchmark on the bundled MNIST digits
    ibit-deploy train ...             = ibit-train       ibit-deploy eval ...      = ibit-eval
    ibit-deploy export ...            = ibit-export      ibit-deploy bench ...     = ibit-bench
    ibit-deploy masks ...             = ibit-masks       ibit-deploy calibrate ... (calibration .npz from a recipe)
    ibit-deploy distill-logits ...    (store LIB-KD teacher logits)
    ibit-deploy package BUNDLE --for deepstream|triton|jetson-inference --out DIR
    ibit-deploy compare ...           = ibit-compare (which model to ship: accuracy by data fraction vs latency)
    ibit-deploy refit BUNDLE CHECKPOINT  a retrained checkpoint's weights into a refittable bundle (engine refit on
                                      the device: build_engine.py --refit)
"""

from __future__ import annotations

import importlib
import sys

from .. import errors
from .entry import cli_main

COMMANDS = {
    "quickstart": "ibit_deploy.cli.quickstart",
    "train": "ibit_deploy.cli.train",
    "eval": "ibit_deploy.cli.evaluate",
    "export": "ibit_deploy.cli.export",
    "bench": "ibit_deploy.cli.bench",
    "masks": "ibit_deploy.cli.masks",
    "calibrate": "ibit_deploy.cli.calibrate",
    "distill-logits": "ibit_deploy.cli.distill",
    "package": "ibit_deploy.cli.package",
    "compare": "ibit_deploy.cli.compare",
    "refit": "ibit_deploy.cli.refit",
}


@cli_main("ibit-deploy")
def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__)
        return errors.DONE if argv else errors.BAD_INPUT
    if argv[0] in ("-V", "--version"):
        from ..version import __version__

        print(f"ibit-deploy {__version__}")
        return errors.DONE
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        raise errors.BadInput(f"unknown command {command!r}; choose from {', '.join(COMMANDS)}")
    return importlib.import_module(COMMANDS[command]).main(rest)


if __name__ == "__main__":
    raise SystemExit(main())
