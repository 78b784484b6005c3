"""A study's recipe (:class:`StudyConfig`), its run list (:func:`build_plan`) and the checks made before any training.

Budget: every run of a fraction takes the same number of optimizer steps, whatever the candidate. The trainer works
in epochs, so ``steps`` becomes ``epochs = ceil(steps / batches_per_epoch)`` epochs of ``ceil(steps / epochs)``
batches: ``steps`` plus at most ``epochs - 1`` (stated per run in the output; identical for every candidate of a
fraction). Warm-up and cosine decay are fractions of that budget, as in the quickstart (2 of 30 epochs).

Seeds: seed ``s`` fixes the stratified train/val split, the fraction's subset, the initial weights and the batch
order. Every candidate and fraction of seed ``s`` is evaluated on the same held-out split.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..devicekit.numbers import SEED, Range
from .candidates import (
    CANDIDATES,
    KD_ALPHA,
    KD_KIND,
    KD_TAU,
    KD_TEACHERS,
    TEACHERS,
    Candidate,
    model_spec,
    parse_candidates,
)

# Fractions run first within a seed, so a partial study already answers the headline questions: the full data,
# then the 4x-sample-efficiency point (IBiT on 25% vs ViT on 100%); the rest follow in ascending order.
PRIORITY_FRACTIONS = (1.0, 0.25)
SAMPLE_EFFICIENCY_FRACTION = 0.25
EVAL_POINTS = 30  # held-out evaluations per run (evenly spaced in epochs): the convergence curve
# Within one fraction and seed: the headline comparison first, then the teacher, the student, the IBiT variants.
RUN_ORDER = ("ibit", "vit", "convit", "resnet", "rednet", "ibit_kd", "ibit_bias", "ibit_impulse")
MAX_SEED = int(SEED.high)  # numpy and torch generators take it; larger seeds overflow the trainer's per-epoch seed


# every numeric option of ``ibit-deploy compare`` (by its flag's name): checked when parsed, and again by validate()
TRAIN_DEVICE = "cpu"  # every run trains on the CPU (one recipe; the latency backend may use a GPU)
OPTION_RANGES: dict[str, Range] = {
    "steps": Range(1, integer=True),
    "batch_size": Range(1, integer=True),
    "embed_dim": Range(1, integer=True),
    "depth": Range(1, integer=True),
    "num_heads": Range(1, integer=True),
    "threads": Range(1, integer=True),
    "workers": Range(1, integer=True),
    "lr": Range(0.0, low_open=True),
    "latency_seconds": Range(0.0, 3600.0, low_open=True),
    "margin": Range(0.0, 100.0),  # top-1 percentage points
    "latency_rounds": Range(0, integer=True),  # 0: no side-by-side pass at the end of a study
}
CONFIG_RANGES = ("steps", "batch_size", "embed_dim", "depth", "num_heads", "threads", "lr", "latency_seconds")


def flag(name: str) -> str:
    """The command-line flag of option ``name`` (``batch_size`` -> ``--batch-size``)."""
    return "--" + name.replace("_", "-")


@dataclass
class StudyConfig:
    """Everything a study depends on. The recipe defaults are the quickstart's (1875 steps = 30 epochs of 4,000)."""

    data: str = "mnist5k"
    candidates: list[str] = field(default_factory=lambda: list(CANDIDATES))
    steps: int = 1875
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    fractions: list[float] = field(default_factory=lambda: [0.1, 0.25, 0.5, 1.0])
    # transformer dims shared by every transformer candidate (the quickstart's)
    embed_dim: int = 96
    depth: int = 4
    num_heads: int = 3
    # one recipe for every candidate (the quickstart's: clean small data, the models underfit, no RandAugment/erasing)
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 0.05
    min_lr: float = 1e-5
    warmup: float = 2 / 30  # fraction of the step budget
    label_smoothing: float = 0.1
    randaugment: int = 0
    random_erasing: float = 0.0
    val_fraction: float = 0.2
    # deployment measurement
    backend: str = "ort-cpu"
    latency_batches: list[int] = field(default_factory=lambda: [1])
    latency_seconds: float = 2.0
    threads: int = 1  # per worker: torch and ORT intra-op threads

    def recipe(self) -> dict[str, Any]:
        """The fields every run shares (all but which candidates, seeds and fractions): the study's identity."""
        out = dataclasses.asdict(self)
        for key in ("candidates", "seeds", "fractions"):
            out.pop(key)
        return out

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> StudyConfig:
        from ..configs import checked_fields

        return cls(**checked_fields(cls, data, "study config"))


@dataclass
class RunSpec:
    """One training run: ``role`` is "candidate" or "teacher"; ``after`` the runs it needs finished first."""

    id: str
    role: str
    name: str
    fraction: float
    seed: int
    train: dict[str, Any]
    budget: dict[str, int]
    after: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        """sha256 of everything that determines this run's result (its identity across restarts).

        Neither the order (``after``) nor the role is part of it: the resnet run is the same training whether the
        study lists resnet as a candidate or plans it only as a LIB-KD teacher, so adding the candidate later keeps
        the finished teacher run.
        """
        return _sha256({k: v for k, v in self.to_dict().items() if k not in ("after", "role")})

    def legacy_digests(self) -> set[str]:
        """Digests this run had under either role before the role left the digest (studies made before then)."""
        fields = {k: v for k, v in self.to_dict().items() if k != "after"}
        return {_sha256({**fields, "role": role}) for role in ("candidate", "teacher")}


def _sha256(fields: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def run_id(name: str, fraction: float, seed: int) -> str:
    """``s0/f025/ibit``: seed, fraction in percent, candidate (also the run's directory under runs/)."""
    return f"s{seed}/f{fraction_tag(fraction)}/{name}"


def fraction_tag(fraction: float) -> str:
    return f"{fraction * 100:05.1f}".replace(".", "p").removesuffix("p0").zfill(3)


def fraction_order(fractions: list[float]) -> list[float]:
    """Priority fractions first (see :data:`PRIORITY_FRACTIONS`), the rest ascending."""
    first = [f for f in PRIORITY_FRACTIONS if f in fractions]
    return first + sorted(f for f in fractions if f not in first)


def parse_fractions(text: str | list[float]) -> list[float]:
    """Fractions from ``"0.1,0.25"`` (or a list), each in (0, 1]."""
    try:
        values = [float(v) for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip()]
    except ValueError as exc:
        raise ValueError(f"--fractions must be comma-separated numbers in (0, 1], got {text!r}") from exc
    bad = [v for v in values if not 0.0 < v <= 1.0 or not math.isfinite(v)]
    if bad or not values:
        raise ValueError(f"--fractions must be numbers in (0, 1] (1.0 = the whole training split), got "
                         f"{bad[0] if bad else text!r}")
    values = list(dict.fromkeys(values))
    tags: dict[str, float] = {}
    for v in values:  # each fraction has its own run folder, named by its tag
        if tags.setdefault(fraction_tag(v), v) != v:
            raise ValueError(f"--fractions {tags[fraction_tag(v)]} and {v} are too close to tell apart (both are "
                             f"{fraction_tag(v)}, to 0.1%); give distinct fractions")
    return values


def parse_seeds(text: str | list[int]) -> list[int]:
    """Seeds from ``"0,1,2"`` (or a list), each an integer in [0, :data:`MAX_SEED`]; no repeats."""
    message = f"--seeds must be comma-separated integers from 0 to {MAX_SEED}, got {text!r}"
    try:
        values = [int(v) for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip()]
    except (TypeError, ValueError) as exc:
        raise ValueError(message) from exc
    if not values or min(values) < 0 or max(values) > MAX_SEED:
        raise ValueError(message)
    return list(dict.fromkeys(values))


def parse_latency_batches(text: str | list[int]) -> list[int]:
    """Batch sizes from ``"1,32"`` (or a list): positive integers including 1; order kept, no repeats."""
    try:
        values = [int(v) for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip()]
    except (TypeError, ValueError) as exc:
        raise ValueError(f"--latency-batches must be comma-separated positive integers, got {text!r}") from exc
    if not values or min(values) < 1:
        raise ValueError(f"--latency-batches must be positive integers, got {text!r}")
    if 1 not in values:
        raise ValueError(f"--latency-batches must include 1 (the Pareto plot and the recommendation rank candidates "
                         f"by batch-1 latency), got {values}")
    return list(dict.fromkeys(values))


def budget(n_train: int, batch_size: int, steps: int) -> dict[str, int]:
    """Epochs and batches per epoch that make ``steps`` optimizer steps (+ at most epochs - 1) on ``n_train`` images."""
    per_epoch = max(1, n_train // batch_size)  # the trainer drops the last partial batch
    epochs = math.ceil(steps / per_epoch)
    cap = math.ceil(steps / epochs)
    return {"n_train": n_train, "batches_per_epoch": per_epoch, "epochs": epochs, "steps_per_epoch": cap,
            "steps": epochs * cap, "val_every": max(1, epochs // EVAL_POINTS)}


def check_data(config: StudyConfig) -> dict[float, int]:
    """Training-set size per fraction (seed 0's split); ValueError if the data cannot support the study."""
    from ..data import load_source, stratified_split, stratified_subset

    raw = load_source(config.data)
    classes, counts = np.unique(raw.labels, return_counts=True)
    need = 2 if config.val_fraction > 0 else 1  # one held-out image and one training image per class at least
    small = [(raw.classes[k], int(c)) for k, c in zip(classes, counts, strict=True) if c < need]
    if small:
        raise ValueError(f"dataset {config.data!r}: class {small[0][0]!r} has {small[0][1]} image(s); the split needs "
                         f"at least {need} per class (1 held out at val_fraction {config.val_fraction}, 1 to train)")
    if len(classes) < 2:
        raise ValueError(f"dataset {config.data!r}: found {len(classes)} class; a classifier needs at least 2")
    train_idx, _ = stratified_split(raw.labels, config.val_fraction, 0)
    # per-class counts do not depend on the seed, so seed 0's sizes hold for every seed
    sizes = {f: len(stratified_subset(train_idx, raw.labels, f, 0)) for f in config.fractions}
    smallest = min(config.fractions)
    if sizes[smallest] < config.batch_size:
        raise ValueError(f"dataset {config.data!r}: fraction {smallest} leaves {sizes[smallest]} training images, "
                         f"fewer than one batch of {config.batch_size}; use a larger fraction or --batch-size")
    return sizes


def validate(config: StudyConfig) -> dict[float, int]:
    """Every bad-input check, before any training: candidates, fractions, seeds, dims, budget, data, backend."""
    from ..runtime.load import canonical_backend

    config.candidates = parse_candidates(config.candidates)
    config.fractions = parse_fractions(config.fractions)
    config.seeds = parse_seeds(config.seeds)
    config.latency_batches = parse_latency_batches(config.latency_batches)
    config.backend = canonical_backend(config.backend)  # stored canonical: the worker compares it by name
    for name in CONFIG_RANGES:
        OPTION_RANGES[name].check(getattr(config, name), flag(name))
    if config.embed_dim % config.num_heads:
        raise ValueError(f"--embed-dim {config.embed_dim} must be divisible by --num-heads {config.num_heads}")
    if not (math.isfinite(config.warmup) and 0 <= config.warmup < 1):
        raise ValueError(f"warmup must be a fraction of the budget in [0, 1), got {config.warmup}")
    sizes = check_data(config)
    smallest = min(config.fractions)
    one_epoch = max(1, sizes[smallest] // config.batch_size)
    if config.steps < one_epoch:
        raise ValueError(f"--steps {config.steps} is too small: one epoch of the smallest fraction ({smallest}, "
                         f"{sizes[smallest]} images at batch {config.batch_size}) takes {one_epoch} steps")
    return sizes


def _train_config(config: StudyConfig, candidate: Candidate, fraction: float, seed: int, plan: dict[str, int],
                  distill_logits: str | None) -> dict[str, Any]:
    from ..train import DistillConfig, TrainConfig

    model, kwargs = model_spec(candidate, config.embed_dim, config.depth, config.num_heads)
    distill = (DistillConfig(logits=distill_logits, alpha=KD_ALPHA, tau=KD_TAU, kind=KD_KIND)
               if distill_logits else None)
    train = TrainConfig(
        model=model, model_kwargs=kwargs, data=config.data, val_fraction=config.val_fraction, subset=fraction,
        seed=seed, epochs=plan["epochs"], batch_size=config.batch_size, lr=config.lr,
        weight_decay=config.weight_decay, warmup_epochs=config.warmup * plan["steps"] / plan["steps_per_epoch"],
        min_lr=config.min_lr, label_smoothing=config.label_smoothing, randaugment_magnitude=config.randaugment,
        random_erasing=config.random_erasing, num_workers=0, device=TRAIN_DEVICE, out="checkpoint",
        max_steps_per_epoch=plan["steps_per_epoch"], val_every=plan["val_every"], progress=False, distill=distill)
    return train.validate().to_dict()


def build_plan(config: StudyConfig, sizes: dict[float, int] | None = None) -> list[RunSpec]:
    """Every run of the study in execution order: seed-major, priority fractions first, teachers before students.

    ``train.out`` is relative to the run's directory; the worker resolves it. ``sizes`` (from :func:`validate`)
    is the training-set size per fraction; seed 0's sizes hold for every seed (stratified counts do not depend on it).
    """
    sizes = sizes if sizes is not None else validate(config)
    wanted = set(config.candidates)
    kd = "ibit_kd" in wanted
    names = [n for n in RUN_ORDER if n in wanted or (kd and n in KD_TEACHERS)]
    runs: list[RunSpec] = []
    for seed in config.seeds:
        for fraction in fraction_order(config.fractions):
            plan = budget(sizes[fraction], config.batch_size, config.steps)
            teacher_ids = [run_id(t, fraction, seed) for t in KD_TEACHERS]
            for name in names:
                candidate = CANDIDATES.get(name) or TEACHERS[name]
                role = "candidate" if name in wanted else "teacher"
                logits = "teachers.npz" if candidate.distilled else None
                runs.append(RunSpec(run_id(name, fraction, seed), role, name, fraction, seed,
                                    _train_config(config, candidate, fraction, seed, plan, logits), plan,
                                    teacher_ids if candidate.distilled else []))
    return runs
