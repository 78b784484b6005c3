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
from .args import add_comma_list, add_device, add_number, add_quiet, comma_weights
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


def _range(flag: str):
    """The range of the TrainConfig field (or distillation setting) behind ``--flag``: the rule validate() applies."""
    from ..train.config import DISTILL_RANGES, RANGES

    return RANGES[_FIELDS[flag]] if flag in _FIELDS else DISTILL_RANGES[_DISTILL[flag]]


def _json_object(text: str) -> dict[str, Any]:
    from ..devicekit.fileio import parse_json_text

    try:
        value = parse_json_text(text, "--model-kwargs", "JSON object")
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}; e.g. '{{\"depth\": 6}}'") from None
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
    add_number(g, "--image-size", _range("image_size"))
    add_number(g, "--val-fraction", _range("val_fraction"))
    add_number(g, "--subset", _range("subset"), help="stratified fraction of the train split to use, in (0, 1]")
    add_number(g, "--seed", _range("seed"))
    g = p.add_argument_group("optimisation")
    add_number(g, "--epochs", _range("epochs"))
    add_number(g, "--batch-size", _range("batch_size"), help="per process")
    add_number(g, "--lr", _range("lr"))
    add_number(g, "--weight-decay", _range("weight_decay"))
    add_number(g, "--warmup-epochs", _range("warmup_epochs"))
    add_number(g, "--min-lr", _range("min_lr"))
    add_number(g, "--label-smoothing", _range("label_smoothing"))
    add_number(g, "--clip-grad", _range("clip_grad"), help="max global gradient norm")
    add_number(g, "--ema-decay", _range("ema_decay"), help="0 disables EMA; with EMA the checkpoint holds the EMA weights")
    g.add_argument("--amp", action=argparse.BooleanOptionalAction, help="mixed precision (default: on with CUDA)")
    g = p.add_argument_group("augmentation")
    add_number(g, "--randaugment", _range("randaugment"), help="RandAugment magnitude, 0 disables")
    add_number(g, "--random-erasing", _range("random_erasing"))
    add_number(g, "--mixup", _range("mixup"))
    add_number(g, "--cutmix", _range("cutmix"))
    g.add_argument("--hflip", action=argparse.BooleanOptionalAction)
    g = p.add_argument_group("distillation (LIB-KD)")
    g.add_argument("--distill-logits", help="teacher logits .npz from `python -m ibit_deploy.cli.distill`")
    add_number(g, "--distill-alpha", _range("distill_alpha"))
    add_number(g, "--distill-tau", _range("distill_tau"))
    g.add_argument("--distill-type", choices=("soft", "hard"))
    add_comma_list(g, "--teacher-weights", item=comma_weights, metavar="W[,W...]",
                   help="override the weights stored with the logits (comma-separated)")
    g = p.add_argument_group("runtime")
    add_number(g, "--num-workers", _range("num_workers"))
    add_device(g, default=None, help="device to train on (default: auto)")
    g.add_argument("--out", help="checkpoint directory")
    g.add_argument("--wait", action="store_true",
                   help="if another process is writing --out, wait for it (default: fail at once, exit 1)")
    add_number(g, "--max-steps-per-epoch", _range("max_steps_per_epoch"))
    add_number(g, "--val-every", _range("val_every"), help="validate and redraw curves.png every N epochs (and after the last)")
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
