"""``train(config)``: one training run, single process or under ``torchrun``, resumable after a kill.

Per epoch (rank 0 alone writes; every other rank only computes):

    train steps -> validation (metrics reduced over ranks) -> checkpoint (model.safetensors + config.json)
    -> resume state (train_state.pt) -> metrics.jsonl line -> curves.png

``model.safetensors`` holds the weights that were validated: the EMA weights when ``ema_decay > 0``, else the raw
weights (``config.json`` says which under ``weights``). The raw weights, optimizer and RNG states needed to continue
are in ``train_state.pt``. A non-finite loss stops the run with :class:`NonFiniteLossError` before anything of that
epoch is written, so the last good checkpoint stays on disk.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import random
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from ..checkpoint import checkpoint_config, library_versions, save_checkpoint
from ..data import AugmentConfig, build_dataset
from ..devicekit.fileio import is_atomic_temp, sha256_file
from ..errors import CheckFailed
from . import records
from .build import build_model, model_kwargs_for, unwrap
from .config import RESUMABLE_CHANGES, TrainConfig
from .distill import DistillationLoss, load_teacher_logits
from .distributed import (
    DistEnv,
    EpochShuffleSampler,
    all_reduce_sum,
    any_rank,
    cleanup_distributed,
    gather_objects,
    init_distributed,
)
from .optim import build_optimizer, cosine_lr, set_lr
from .state import STATE_FILE, capture_rng, load_train_state, restore_rng, save_train_state


class NonFiniteLossError(CheckFailed):
    """The loss became NaN or inf; the run stopped and the last good checkpoint was kept (a failed check: exit 1)."""


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (all devices)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def state_digest(model: nn.Module) -> str:
    """sha256 over a model's state dict (names, dtypes, shapes, bytes): equal digests mean bit-identical weights."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def train(config: TrainConfig, resume: bool = False, *, wait: bool = False) -> dict[str, Any]:
    """Train ``config``; with ``resume`` continue the run in ``config.out`` exactly where its last epoch ended.

    Returns the final metrics (last epoch's record plus best_val_acc1, best_epoch, weights_sha256, out). Works the
    same under ``torchrun --nproc_per_node N``: the process group is set up from the environment.

    The run directory is locked (:mod:`ibit_deploy.devicekit.locking`) from the check of what it holds to the last write: a
    second training into it raises LockBusy at once, naming the holder, or with ``wait`` waits for it first.
    """
    config.validate()
    owned = not (dist.is_available() and dist.is_initialized())
    env = init_distributed(config.device)
    try:
        with _run_lock(config.out, env, wait):
            return _Run(config, env, resume).fit()
    finally:
        if owned:
            cleanup_distributed(env)


def _run_lock(out: str, env: DistEnv, wait: bool) -> contextlib.AbstractContextManager:
    """The run directory's lock, held by the one process that writes it (rank 0); other ranks only compute."""
    if not env.is_main:
        return contextlib.nullcontext()
    from ..devicekit.locking import directory_lock

    return directory_lock(out, "ibit-train", wait=wait)


class _RecordingMixup:
    """timm's Mixup in batch mode, remembering the last lambda so stored teacher targets can be mixed alike."""

    def __init__(self, mixup: float, cutmix: float, smoothing: float, num_classes: int) -> None:
        from timm.data import Mixup

        outer = self

        class _Mixup(Mixup):
            def _mix_batch(self, x: torch.Tensor) -> float:
                outer.lam = super()._mix_batch(x)
                return outer.lam

        self.lam = 1.0
        self.fn = _Mixup(mixup_alpha=mixup, cutmix_alpha=cutmix, label_smoothing=smoothing, num_classes=num_classes,
                         mode="batch")

    def __call__(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
        images, targets = self.fn(images, labels)
        return images, targets, float(self.lam)


class _Run:
    """The state of one run; built once, then :meth:`fit` loops over epochs."""

    def __init__(self, config: TrainConfig, env: DistEnv, resume: bool) -> None:
        self.config, self.env = config, env
        self.out = Path(config.out)
        self._check_out_dir(resume)
        seed_everything(config.seed)  # identical initial weights (and EMA copy) on every rank
        self._build_data()
        self._build_model()
        seed_everything(config.seed + 1000 * (env.rank + 1))  # each rank draws its own augmentations
        self.step, self.epoch, self.history = 0, 0, []
        if resume:
            self._resume()
        elif env.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
            # Stale lines of an earlier run must go; the file reappears with epoch 1 (after its resume state).
            (self.out / records.METRICS_FILE).unlink(missing_ok=True)

    # setup ------------------------------------------------------------------------------------------------------
    def _check_out_dir(self, resume: bool) -> None:
        if resume:
            return  # _resume refuses a directory without a resumable run
        if (self.out / STATE_FILE).exists():
            raise FileExistsError(f"{self.out} already holds a training run ({STATE_FILE}); pass resume=True "
                                  f"(--resume) to continue it, or choose another output directory")
        if self.out.exists() and not self.out.is_dir():
            raise FileExistsError(f"--out {self.out} is a file, not a directory")
        # A new run starts only in a new or empty directory: it would replace another run's checkpoint (which an
        # export may need) and delete its metrics. Temps of killed atomic writes do not count (they are removed).
        held = sorted(p.name for p in self.out.iterdir() if not is_atomic_temp(p.name)) if self.out.is_dir() else []
        if held:
            raise FileExistsError(f"{self.out} is not empty ({', '.join(held[:5])}{', ...' if len(held) > 5 else ''}) "
                                  f"and holds no resumable run ({STATE_FILE}); a new training run needs a new or "
                                  f"empty --out directory")

    def _build_data(self) -> None:
        c = self.config
        size = (c.image_size, c.image_size) if c.image_size else None
        augment = AugmentConfig(randaugment_magnitude=c.randaugment_magnitude, random_erasing=c.random_erasing,
                                hflip=c.hflip, mixup=c.mixup, cutmix=c.cutmix)
        self.train_set, self.info = build_dataset(c.data, "train", size, val_fraction=c.val_fraction, seed=c.seed,
                                                  subset=c.subset, augment=augment)
        self.val_set = None
        if c.val_fraction > 0:
            self.val_set, _ = build_dataset(c.data, "val", size, val_fraction=c.val_fraction, seed=c.seed)
        self.num_classes = len(self.info.classes)
        pin = self.env.device.type == "cuda"
        self.sampler = EpochShuffleSampler(len(self.train_set), self.env, shuffle=True, seed=c.seed)
        # Whole batches only (mixup needs an even batch), unless the shard is smaller than one batch.
        drop_last = len(self.sampler) >= c.batch_size
        self.train_loader = DataLoader(self.train_set, batch_size=c.batch_size, sampler=self.sampler,
                                       num_workers=c.num_workers, pin_memory=pin, drop_last=drop_last)
        if self.val_set is not None:
            val_sampler = EpochShuffleSampler(len(self.val_set), self.env, shuffle=False)
            self.val_loader = DataLoader(self.val_set, batch_size=max(c.batch_size, 64), sampler=val_sampler,
                                         num_workers=c.num_workers, pin_memory=pin)
        self.steps_per_epoch = len(self.train_loader)
        if c.max_steps_per_epoch:
            self.steps_per_epoch = min(self.steps_per_epoch, c.max_steps_per_epoch)
        self.total_steps = c.epochs * self.steps_per_epoch
        self.warmup_steps = int(round(c.warmup_epochs * self.steps_per_epoch))

    def _build_model(self) -> None:
        c, env = self.config, self.env
        distilled = c.distill is not None
        kwargs = model_kwargs_for(c.model, dict(c.model_kwargs), self.info, distilled)
        model = build_model(c.model, kwargs).to(env.device)
        self.teacher = None
        if distilled:
            if not hasattr(model, "set_distilled_training"):
                raise ValueError(f"model {c.model} has no distillation head; use an IBiT variant (distilled=True is "
                                 f"added automatically) or a timm deit_*_distilled_* model")
            model.set_distilled_training(True)  # train mode returns (cls, dist); eval averages the heads
            stored = load_teacher_logits(c.distill.logits, self.train_set.fingerprint, len(self.train_set),
                                         self.num_classes)
            self.teacher = stored.combined(c.distill.teacher_weights).to(env.device)
            self.teacher_info = {"file": str(c.distill.logits), "sha256": sha256_file(c.distill.logits),
                                 "teachers": stored.teachers, "weights": c.distill.teacher_weights or stored.weights,
                                 "fingerprint": stored.fingerprint}
        self.model = model
        self.ema = None
        if c.ema_decay > 0:
            from timm.utils import ModelEmaV3

            self.ema = ModelEmaV3(model, decay=c.ema_decay)
        self.optimizer = build_optimizer(model, c.lr, c.weight_decay)
        use_amp = c.amp if c.amp is not None else env.device.type == "cuda"
        if use_amp and env.device.type != "cuda":
            raise ValueError("amp=True needs a CUDA device; mixed precision is GPU-only in this trainer")
        self.amp_dtype = None
        if use_amp:
            self.amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        # Loss scaling only matters for fp16 (bf16 has fp32's exponent range).
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.amp_dtype == torch.float16)
        if env.distributed:
            from torch.nn.parallel import DistributedDataParallel

            self.ddp = DistributedDataParallel(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None)
        else:
            self.ddp = model
        self.mixup = None
        if c.mixup > 0 or c.cutmix > 0:
            from timm.loss import SoftTargetCrossEntropy

            self.mixup = _RecordingMixup(c.mixup, c.cutmix, c.label_smoothing, self.num_classes)
            base: nn.Module = SoftTargetCrossEntropy()
        elif c.label_smoothing > 0:
            from timm.loss import LabelSmoothingCrossEntropy

            base = LabelSmoothingCrossEntropy(c.label_smoothing)
        else:
            base = nn.CrossEntropyLoss()
        self.criterion = base
        if distilled:
            self.criterion = DistillationLoss(base, c.distill.alpha, c.distill.tau, c.distill.kind)

    def _resume(self) -> None:
        state = load_train_state(self.out)
        saved = TrainConfig.from_json(state["config"], str(self.out / STATE_FILE))
        changed = [k for k in self.config.changes_from(saved) if k not in RESUMABLE_CHANGES]
        if changed:
            detail = ", ".join(f"{k}: saved {getattr(saved, k)!r} vs now {getattr(self.config, k)!r}" for k in changed)
            raise ValueError(f"cannot resume {self.out}: the configuration changed ({detail}); only "
                             f"{', '.join(RESUMABLE_CHANGES)} may differ")
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.ema is not None:
            self.ema.module.load_state_dict(state["ema"])
        if state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.history = [records.as_fractions(r) for r in state["history"]]  # a run saved in percent resumes too
        if self.steps_per_epoch * self.epoch != self.step:
            raise ValueError(f"cannot resume {self.out}: {self.step} steps were taken over {self.epoch} epochs, but the "
                             f"data now gives {self.steps_per_epoch} steps per epoch")
        rngs = state["rng"]
        if len(rngs) == self.env.world_size:
            restore_rng(rngs[self.env.rank])
        elif self.env.is_main:  # a different world size: the weights continue exactly, the random stream cannot
            print(f"warning: {self.out} was saved by {len(rngs)} process(es), resuming with {self.env.world_size}; "
                  f"random streams restart from the seed", file=sys.stderr)
        if self.env.is_main:
            records.rewrite_metrics(self.out, self.history)  # drop any line of an epoch whose state never landed

    # epochs -----------------------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        c, env = self.config, self.env
        for epoch in range(self.epoch + 1, c.epochs + 1):
            start = time.perf_counter()
            train_metrics = self._train_epoch(epoch)
            validate = epoch % c.val_every == 0 or epoch == c.epochs
            val_metrics = self._validate() if validate else {"val_loss": None, "val_acc1": None, "val_acc5": None}
            seconds = time.perf_counter() - start
            record = records.marked({"epoch": epoch, "step": self.step, "lr": self.optimizer.param_groups[0]["lr"],
                                     **train_metrics, **val_metrics, "epoch_seconds": round(seconds, 3)})
            self.history.append(record)
            self.epoch = epoch
            self._save(record, plot=validate)
            if env.is_main:
                self._print_summary(record)
        return self._final()

    def _train_epoch(self, epoch: int) -> dict[str, float]:
        c, env = self.config, self.env
        self.sampler.set_epoch(epoch)
        self.ddp.train()
        sums = torch.zeros(3, dtype=torch.float64)  # loss * n, correct, n
        show = c.progress and env.is_main and sys.stderr.isatty()
        bar = tqdm(total=self.steps_per_epoch, desc=f"epoch {epoch}/{c.epochs}", leave=False, disable=not show)
        t0 = time.perf_counter()
        # islice stops before fetching (and augmenting) a batch beyond the cap.
        for images, labels, index in itertools.islice(self.train_loader, self.steps_per_epoch):
            images = images.to(env.device, non_blocking=True)
            labels = labels.to(env.device, non_blocking=True)
            lr = cosine_lr(self.step, self.total_steps, self.warmup_steps, c.lr, c.min_lr)
            set_lr(self.optimizer, lr)
            loss, logits = self._forward(images, labels, index)
            if any_rank(not bool(torch.isfinite(loss.detach())), env):
                bar.close()
                self._stop_non_finite(loss, epoch, lr)
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss).backward()
            if c.clip_grad is not None:
                self.scaler.unscale_(self.optimizer)
                nn.utils.clip_grad_norm_(self.model.parameters(), c.clip_grad)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.step += 1
            if self.ema is not None:
                self.ema.update(self.model, step=self.step)
            n = labels.shape[0]
            sums += torch.tensor([loss.item() * n, (logits.argmax(-1) == labels).sum().item(), n], dtype=torch.float64)
            rate = sums[2].item() * env.world_size / max(time.perf_counter() - t0, 1e-9)
            bar.set_postfix(loss=f"{sums[0].item() / sums[2].item():.4f}",
                            acc=f"{sums[1].item() / sums[2].item():.1%}", img_s=f"{rate:.0f}")
            bar.update()
        bar.close()
        elapsed = time.perf_counter() - t0
        total = all_reduce_sum(sums, env)
        return {"train_loss": total[0].item() / total[2].item(), "train_acc1": total[1].item() / total[2].item(),
                "train_img_per_s": round(total[2].item() / max(elapsed, 1e-9), 1)}

    def _forward(self, images: torch.Tensor, labels: torch.Tensor,
                 index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and the class logits (for train accuracy) of one batch, under autocast on GPU."""
        targets, lam = labels, None
        if self.mixup is not None:
            images, targets, lam = self.mixup(images, labels)
        autocast = (torch.autocast(self.env.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                    else contextlib.nullcontext())
        with autocast:
            outputs = self.ddp(images)
            if self.teacher is not None:
                teacher = self.teacher[index.to(self.teacher.device)]
                loss = self.criterion(outputs, targets, teacher, lam)
                logits = outputs[0]
            else:
                if isinstance(outputs, (tuple, list)):  # a distilled model trained without a teacher
                    outputs = (outputs[0] + outputs[1]) / 2
                loss = self.criterion(outputs, targets)
                logits = outputs
        return loss.float(), logits.detach()

    def _stop_non_finite(self, loss: torch.Tensor, epoch: int, lr: float) -> None:
        if self.epoch:
            kept = f"the checkpoint of epoch {self.epoch} in {self.out} is kept (resume from it with a lower lr)"
        else:
            kept = "no epoch finished, so no checkpoint was written"
        raise NonFiniteLossError(f"training stopped: loss is {loss.item()} (non-finite) at epoch {epoch}, step "
                                 f"{self.step + 1}, lr {lr:.3g}; {kept}. Try a lower --lr, --clip-grad 1.0, or check "
                                 f"the data for NaN pixels.")

    @torch.no_grad()
    def _validate(self) -> dict[str, float | None]:
        """Plain cross-entropy (no smoothing) and top-1/top-5 on the val split, summed over every rank's shard."""
        if self.val_set is None:
            return {"val_loss": None, "val_acc1": None, "val_acc5": None}
        model = self.ema.module if self.ema is not None else self.model
        model.eval()
        k = min(5, self.num_classes)
        sums = torch.zeros(4, dtype=torch.float64)  # loss sum, top-1, top-k, n
        for images, labels, _ in self.val_loader:
            images, labels = images.to(self.env.device), labels.to(self.env.device)
            with (torch.autocast(self.env.device.type, dtype=self.amp_dtype) if self.amp_dtype is not None
                  else contextlib.nullcontext()):
                logits = model(images).float()
            topk = logits.topk(k, dim=-1).indices
            sums += torch.tensor([nn.functional.cross_entropy(logits, labels, reduction="sum").item(),
                                  (topk[:, 0] == labels).sum().item(), (topk == labels[:, None]).any(-1).sum().item(),
                                  labels.shape[0]], dtype=torch.float64)
        total = all_reduce_sum(sums, self.env)
        n = max(total[3].item(), 1.0)
        return {"val_loss": total[0].item() / n, "val_acc1": total[1].item() / n, "val_acc5": total[2].item() / n}

    # saving -----------------------------------------------------------------------------------------------------
    def _weights_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def _save(self, record: dict[str, Any], plot: bool = True) -> None:
        rngs = gather_objects(capture_rng(), self.env)  # collective: every rank takes part
        if not self.env.is_main:
            return
        save_checkpoint(self.out, self._weights_model(), self._checkpoint_config(record))
        state = {
            "config": self.config.to_json(),
            "model": {k: v.detach().cpu() for k, v in self.model.state_dict().items()},
            "optimizer": self.optimizer.state_dict(),
            "ema": ({k: v.detach().cpu() for k, v in self.ema.module.state_dict().items()}
                    if self.ema is not None else None),
            "scaler": self.scaler.state_dict() if self.scaler.is_enabled() else None,
            "step": self.step,
            "epoch": self.epoch,
            "history": self.history,
            "rng": rngs,
        }
        save_train_state(self.out, state)
        records.append_metrics(self.out, record)
        if plot:  # a redraw costs ~0.3 s: only when there is a new validation point
            records.plot_curves(self.out, self.history)

    def _checkpoint_config(self, record: dict[str, Any]) -> dict[str, Any]:
        info = self.info
        config = {
            **checkpoint_config(unwrap(self.model), info),
            "train": self.config.to_dict(),
            "weights": "ema" if self.ema is not None else "raw",
            "metrics": {**record, **self._best(), "epochs_completed": self.epoch, "epochs_planned": self.config.epochs},
            "versions": library_versions(),
        }
        if self.teacher is not None:
            config["distill"] = self.teacher_info
        return config

    def _best(self) -> dict[str, Any]:
        scored = [r for r in self.history if r.get("val_acc1") is not None]
        if not scored:
            return {"best_val_acc1": None, "best_epoch": None}
        best = max(scored, key=lambda r: r["val_acc1"])
        return {"best_val_acc1": best["val_acc1"], "best_epoch": best["epoch"]}

    def _print_summary(self, r: dict[str, Any]) -> None:
        val = (f"val loss {r['val_loss']:.4f} top-1 {r['val_acc1']:.2%}" if r.get("val_acc1") is not None
               else "not validated this epoch")
        print(f"epoch {r['epoch']}/{self.config.epochs}  train loss {r['train_loss']:.4f} top-1 "
              f"{r['train_acc1']:.2%}  {val}  lr {r['lr']:.2e}  {r['train_img_per_s']:.0f} img/s", flush=True)

    def _final(self) -> dict[str, Any]:
        last = self.history[-1] if self.history else {}
        return {**last, **self._best(), "epochs_completed": self.epoch, "weights_sha256": state_digest(self._weights_model()),
                "out": str(self.out), "rank": self.env.rank, "world_size": self.env.world_size}
