"""Latency stand-ins: a bundle of a candidate's architecture for the side-by-side pass when no trained one is left.

A study continued from its records (run.json + result.json kept in a repository) has no exported bundles for the
runs of earlier sessions, possibly trained on another machine. Their own latency figures were measured there, so
mixing them with bundles timed here would rank models by machine, not by model. The graph an fp32 export runs does
not depend on its weight values (the same operators on the same shapes; folded masks are constants either way), so
the run's spec is trained for ``STANDIN_STEPS`` steps, without a teacher, and exported exactly as the worker exports
it. The stand-in is timed with the others; it is never scored for accuracy.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from ..devicekit.layout import MANIFEST_FILE
from ..devicekit.locking import directory_lock
from . import layout

STANDIN_STEPS = 2  # enough to go through the trainer's whole path (checkpoint, config) once


def standin_bundle(out: str | os.PathLike, run_id: str) -> Path:
    """The stand-in bundle of run ``run_id``'s architecture (built once, then reused from ``OUT/latency_standins``).

    Built under the stand-in folder's lock, so two report writers never delete each other's half-built stand-in.
    """
    from ..export.pipeline import export_checkpoint
    from ..train import TrainConfig, train
    from .worker import read_run, timing_export_options

    spec = read_run(out, run_id)
    folder = Path(out) / layout.STANDIN_DIR / spec["run"]["name"]
    bundle = folder / layout.BUNDLE_DIR
    with directory_lock(folder, f"latency stand-in of {run_id}", wait=True):
        if (bundle / MANIFEST_FILE).is_file():
            return bundle
        shutil.rmtree(folder, ignore_errors=True)  # a stand-in killed half-way is rebuilt, never reused
        train_spec: dict[str, Any] = dict(spec["run"]["train"])
        kwargs = dict(train_spec["model_kwargs"])
        if train_spec.get("distill") is not None:
            kwargs["distilled"] = True  # the student's graph carries its distillation token; no teacher needed here
        train_spec.update(model_kwargs=kwargs, distill=None, epochs=1, max_steps_per_epoch=STANDIN_STEPS,
                          warmup_epochs=0.0, progress=False, out=str(folder / layout.CHECKPOINT_DIR))
        config = TrainConfig.from_dict(train_spec, f"{layout.run_dir(out, run_id) / layout.RUN_FILE} (stand-in)")
        train(config, resume=False)
        export_checkpoint(config.out, bundle, timing_export_options(spec["study"]))
    return bundle
