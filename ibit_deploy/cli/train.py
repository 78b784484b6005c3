"""``ibit-train``: train a model (IBiT, a timm baseline or a LIB-KD teacher) into a checkpoint directory.

Settings come from, in increasing precedence: TrainConfig defaults, ``--config FILE`` (or the saved run with
``--resume``), then the flags given on the command line. Under ``torchrun --nproc_per_node N`` the same command
trains on N processes. The run directory is locked while it is written: a second ``ibit-train`` into the same
``--out`` fails at once naming the holder (pid, command), or waits with ``--wait``.
Accuracies in the run's records (metrics.jsonl, config.json, the printed result) are fractions (0.953, not 95.3).
Exit codes: 0 done, 1 training diverged (non-finite loss) or --out is being written by another process, 2 bad input
or an output the disk cannot take (full, read-only: nothing was written), 70 unexpected error.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from .. import errors
from .args import add_comma_list, add_device, add_quiet, comma_floats
from .entry import cli_main

# flag -> TrainConfig field, for every flag that maps one to one
_FIELDS = {
    "model": "model", "data": "data", "image_size": "image_size", "val_fraction": "val_fraction", "subset": "subset",
    "seed": "seed", "epochs": "epochs", "batch_size": "batch_size", "lr": "lr", "weight_decay": "weight_decay",
    "warmup_epochs": "warmup_epochs", "min_lr": "min_lr", "label_smoothing": "label_smoothing",
    "clip_grad": "clip_grad", "ema_decay": "ema_decay", "amp": "amp", "randaugment": "randaugment_magnitude",
    "random_erasing": "random_erasing", "mixup": "mixup", "cutmix": "cutmix", "hflip": "hflip",
    "num_workers": "num_workers", "device": "device", "out": "out", "max_steps_per_epoch": "max_steps_per_epoch",
    "val_every": "val_every",
}
_DISTILL = {"distill_logits": "logits", "distill_alpha": "alpha", "distill_tau": "tau", "distill_type": "kind",
            "teacher_weights": "teacher_weights"}


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"--model-kwargs expects a JSON object, e.g. '{{\"depth\": 6}}': {exc}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"--model-kwargs expects a JSON object, got {text!r}")
    return value


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ibit-train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    # Every default is None: only flags the user gave override the config file / saved run.
    p.add_argument("--config", type=Path, help="TrainConfig JSON (or a checkpoint's config.json) to start from")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last finished epoch")
    g = p.add_argument_group("model and data")
    g.add_argument("--model", help="ibit_* variant, timm vit_*/deit_*/convit_* baseline, or resnet_small/rednet_small")
    g.add_argument("--model-kwargs", type=_json_object, help='constructor overrides as JSON, e.g. \'{"depth": 6}\'')
    g.add_argument("--data", help="mnist5k | cifar10:DIR | imagefolder:DIR | synthetic[:N]")
    g.add_argument("--image-size", type=int)
    g.add_argument("--val-fraction", type=float)
    g.add_argument("--subset", type=float, help="stratified fraction of the train split to use, in (0, 1]")
    g.add_argument("--seed", type=int)
    g = p.add_argument_group("optimisation")
    g.add_argument("--epochs", type=int)
    g.add_argument("--batch-size", type=int, help="per process")
    g.add_argument("--lr", type=float)
    g.add_argument("--weight-decay", type=float)
    g.add_argument("--warmup-epochs", type=float)
    g.add_argument("--min-lr", type=float)
    g.add_argument("--label-smoothing", type=float)
    g.add_argument("--clip-grad", type=float, help="max global gradient norm")
    g.add_argument("--ema-decay", type=float, help="0 disables EMA; with EMA the checkpoint holds the EMA weights")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, help="mixed precision (default: on with CUDA)")
    g = p.add_argument_group("augmentation")
    g.add_argument("--randaugment", type=int, help="RandAugment magnitude, 0 disables")
    g.add_argument("--random-erasing", type=float)
    g.add_argument("--mixup", type=float)
    g.add_argument("--cutmix", type=float)
    g.add_argument("--hflip", action=argparse.BooleanOptionalAction)
    g = p.add_argument_group("distillation (LIB-KD)")
    g.add_argument("--distill-logits", help="teacher logits .npz from `python -m ibit_deploy.cli.distill`")
    g.add_argument("--distill-alpha", type=float)
    g.add_argument("--distill-tau", type=float)
    g.add_argument("--distill-type", choices=("soft", "hard"))
    add_comma_list(g, "--teacher-weights", item=comma_floats, metavar="W[,W...]",
                   help="override the weights stored with the logits (comma-separated)")
    g = p.add_argument_group("runtime")
    g.add_argument("--num-workers", type=int)
    add_device(g, default=None, help="device to train on (default: auto)")
    g.add_argument("--out", help="checkpoint directory")
    g.add_argument("--wait", action="store_true",
                   help="if another process is writing --out, wait for it (default: fail at once, exit 1)")
    g.add_argument("--max-steps-per-epoch", type=int)
    g.add_argument("--val-every", type=int, help="validate and redraw curves.png every N epochs (and after the last)")
    add_quiet(g, default=None, old_progress=True)  # None: keep the --config / saved run's setting
    return p


def config_from_args(args: argparse.Namespace):
    """The TrainConfig the arguments describe (base: --config, or the saved run with --resume)."""
    from ..checkpoint import CONFIG_FILE
    from ..train import DistillConfig, TrainConfig

    base: dict[str, Any] = {}
    if args.config is not None:
        base = TrainConfig.load(args.config).to_dict()
    if args.resume:
        out = args.out or base.get("out")
        if not out:
            raise ValueError("--resume needs --out DIR (the run to continue)")
        base = TrainConfig.load(Path(out) / CONFIG_FILE).to_dict()
    given = {field: getattr(args, flag) for flag, field in _FIELDS.items() if getattr(args, flag) is not None}
    if args.quiet is not None:
        given["progress"] = not args.quiet
    if args.model_kwargs is not None:
        given["model_kwargs"] = args.model_kwargs
    if "model" in given and "model_kwargs" not in given and base.get("model") != given["model"]:
        given["model_kwargs"] = {}  # kwargs from a config file belong to that file's model
    distill = {field: getattr(args, flag) for flag, field in _DISTILL.items() if getattr(args, flag) is not None}
    config = TrainConfig.from_dict({**base, **given})
    if distill:
        if config.distill is None and "logits" not in distill:
            raise ValueError("--distill-* options need --distill-logits FILE (or a config with distill.logits)")
        current = config.distill.__dict__ if config.distill is not None else {}
        config.distill = DistillConfig(**{**current, **distill})
    return config.validate()


@cli_main("ibit-train")
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..train import train

    # a NonFiniteLossError is a failed check (exit 1); the wrapper prints it
    result = train(config_from_args(args), resume=args.resume, wait=args.wait)
    if result.get("rank", 0) == 0:
        print(json.dumps(result, indent=2))
    return errors.DONE


if __name__ == "__main__":
    raise SystemExit(main())
