"""One run of a study, in its own process: train (resuming a killed run) -> export -> latency -> ``result.json``.

    python -m ibit_deploy.study.worker OUT RUN_ID

Exit codes: 0 finished (or already finished), 1 failed (the traceback is in the run's worker.log), 75 another
process holds the run, 76 the study folder went away (or the run's lock was taken over) while it ran (:mod:`.guard`). ``result.json`` is written last and atomically, carrying the run spec's digest, so a run is
finished exactly when it exists and matches the plan: a finished run is never redone, and a killed one resumes from
its last finished epoch (bit-identical to an uninterrupted run, see ibit_deploy.train.trainer); its export and
latency are redone from scratch.
"""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

from ..devicekit.fileio import atomic_write_json, read_json
from ..devicekit.locking import LockBusy
from . import layout
from .convergence import convergence
from .guard import Claim, watch
from .lifetime import tie_to_parent
from .records import FRACTION, UNIT_KEY, as_points, from_trainer, result_in_fractions, teachers_in_fractions

EXIT_BUSY = 75
LOCAL = {"name": "local", "node": None}  # the executor record of a run carried out by a local worker process


def read_run(out: Path, run_id: str) -> dict[str, Any]:
    """The run's spec file (written by the study before launching it)."""
    return checked_spec(read_json(layout.run_dir(out, run_id) / layout.RUN_FILE, "run spec"),
                        layout.run_dir(out, run_id) / layout.RUN_FILE)


def checked_spec(spec: Any, path: Path) -> dict[str, Any]:
    """A run spec read from ``path``: a JSON object with a text ``digest``; else ValueError naming the file."""
    if not isinstance(spec, dict) or not isinstance(spec.get("digest"), str):
        raise ValueError(f"{path} is not a valid run spec: expected a JSON object with a text 'digest'")
    return spec


def finished_result(directory: Path, digest: str) -> dict[str, Any] | None:
    """The run's result if it finished under the spec with ``digest`` (accuracies in fractions, whatever unit the
    file holds: :mod:`.records`); None otherwise."""
    path = directory / layout.RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = read_json(path, "run result")
    except ValueError:
        return None
    if not isinstance(result, dict) or result.get("digest") != digest:
        return None  # not (or no longer) a result of this spec: the run is not finished
    return result_in_fractions(result, str(path))


def run(out: str | Path, run_id: str, where: dict[str, Any] | None = None) -> dict[str, Any]:
    """Carry out run ``run_id`` of the study in ``out``; returns its result (also in result.json).

    ``where``: which executor ran it and where (recorded in the result as ``executor``; default the local one). While
    the run works, :func:`.guard.watch` ends this process if the study folder goes away or the lock is taken over.
    """
    out = Path(out)
    directory = layout.run_dir(out, run_id)
    with layout.locked(directory, f"compare worker {run_id}", then="the study retries this run"):
        spec = read_run(out, run_id)
        done = finished_result(directory, spec["digest"])
        if done is not None:
            return done
        with watch(Claim(directory, directory / layout.RUN_FILE, spec["digest"])):
            return _run(out, directory, spec, where or LOCAL)


def _run(out: Path, directory: Path, spec: dict[str, Any], where: dict[str, Any]) -> dict[str, Any]:
    import torch

    from ..bench.machine import machine_description
    from ..train import compute_teacher_logits, train
    from ..train.records import read_metrics

    study = spec["study"]
    torch.set_num_threads(study["threads"])
    config = _train_config(directory, spec)
    teachers: dict[str, Any] = {"teacher_logits_seconds": None, "teachers_restored": []}
    if config.distill is not None:
        logits = directory / layout.LOGITS_FILE
        config.distill.logits = str(logits)
        record = directory / layout.LOGITS_RECORD
        if not logits.is_file():
            dirs, restored = _teacher_checkpoints(out, spec)
            start = time.perf_counter()
            compute_teacher_logits(dirs, logits, spec["kd_weights"], device="cpu")
            teachers = {"teacher_logits_seconds": round(time.perf_counter() - start, 2), "teachers_restored": restored}
            atomic_write_json(record, {UNIT_KEY: FRACTION, **teachers})
        elif record.is_file():  # a resumed student: the cost was paid by an earlier attempt
            teachers = teachers_in_fractions(read_json(record, "teacher logits record"), str(record))
            teachers.pop(UNIT_KEY)
    resumed = _resumable(Path(config.out))
    start = time.perf_counter()
    final = train(config, resume=resumed)
    wall = time.perf_counter() - start
    history = read_metrics(config.out)
    curve = [{"epoch": r.get("epoch"), "step": r.get("step"), "train_loss": r.get("train_loss"),
              "val_acc1": from_trainer(r.get("val_acc1"))} for r in history]
    result: dict[str, Any] = {
        UNIT_KEY: FRACTION,
        "id": spec["run"]["id"], "digest": spec["digest"], "role": spec["run"]["role"], "name": spec["run"]["name"],
        "fraction": spec["run"]["fraction"], "seed": spec["run"]["seed"], "model": config.model,
        "model_kwargs": config.model_kwargs, "budget": spec["run"]["budget"],
        "val_acc1": from_trainer(final["val_acc1"]), "val_acc5": from_trainer(final.get("val_acc5")),
        "val_loss": final["val_loss"], "train_loss": final["train_loss"], "steps": final["step"],
        "epochs": final["epoch"], "best_val_acc1": from_trainer(final["best_val_acc1"]),
        "weights_sha256": final["weights_sha256"],
        # the sum of epoch times spans every resume; wall is this process's share only
        "train_seconds": round(sum(r.get("epoch_seconds", 0.0) for r in history), 2),
        "resumed": resumed, "wall_seconds_this_attempt": round(wall, 2),
        **teachers,
        "convergence": convergence(curve),
        "curve": curve,
    }
    result.update(_export_and_time(directory, config, study))
    # the machine that finished the run (a run resumed elsewhere names the last one); no hostname in a record that
    # may be committed to a repository
    result["machine"] = {k: v for k, v in machine_description(study["threads"]).items() if k != "hostname"}
    result["executor"] = dict(where)  # which executor, and on Ray which node, finished the run
    atomic_write_json(directory / layout.RESULT_FILE, result)
    return result


def _train_config(directory: Path, spec: dict[str, Any]):
    """The run's training configuration (from its spec), writing into the run folder's checkpoint directory."""
    from ..train import TrainConfig

    config = TrainConfig.from_dict(spec["run"]["train"], f"{directory / layout.RUN_FILE} (train)")
    config.out = str(directory / layout.CHECKPOINT_DIR)
    return config


def _resumable(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds a run to resume. A folder without its resume state (killed while saving the
    first epoch: the weights are written before the state) holds no finished epoch, so it is cleared for a fresh
    start instead of blocking every later attempt."""
    from ..train.state import STATE_FILE

    if (checkpoint / STATE_FILE).exists():
        return True
    shutil.rmtree(checkpoint, ignore_errors=True)
    return False


def _teacher_checkpoints(out: Path, spec: dict[str, Any]) -> tuple[list[Path], list[dict[str, Any]]]:
    """Each LIB-KD teacher's checkpoint folder, retraining any that is gone or incomplete.

    A teacher's run is finished when its result.json is there, but a study continued from its records alone (the
    run.json + result.json files kept in a repository) has no checkpoints. The teacher is then retrained from its
    own spec into its folder, its result.json untouched, and the retrained weights' digest is compared with the
    recorded one (training is deterministic on one thread of the same CPU, so they match there; another CPU's
    kernels round differently): the returned records say so, with both top-1 values.
    """
    from ..train import train

    dirs, restored = [], []
    for teacher_id in spec["run"]["after"]:
        folder = layout.run_dir(out, teacher_id)
        checkpoint = folder / layout.CHECKPOINT_DIR
        dirs.append(checkpoint)
        if checkpoint_finished(checkpoint):
            continue  # else gone, or killed before its last save: retrain
        teacher = read_run(out, teacher_id)
        recorded = finished_result(folder, teacher["digest"])
        if recorded is None:
            raise RuntimeError(f"LIB-KD teacher {teacher_id} has not finished (no result.json matching its spec in "
                               f"{folder}); the study runs teachers before their students")
        with layout.locked(folder, f"compare worker {spec['run']['id']}: retraining teacher {teacher_id}",
                           then="the study retries this run"):
            start = time.perf_counter()
            final = train(_train_config(folder, teacher), resume=_resumable(checkpoint))
        restored.append({"teacher": teacher_id, "seconds": round(time.perf_counter() - start, 2),
                         "weights_sha256": final["weights_sha256"],
                         "recorded_weights_sha256": recorded.get("weights_sha256"),
                         "identical": final["weights_sha256"] == recorded.get("weights_sha256"),
                         # another CPU's kernels round differently: then how far the retrained teacher is off
                         "val_acc1": from_trainer(final["val_acc1"]), "recorded_val_acc1": recorded.get("val_acc1")})
        print(f"worker: teacher {teacher_id} had no checkpoint; retrained it "
              f"({'identical to' if restored[-1]['identical'] else 'DIFFERENT from'} the recorded weights)",
              flush=True)
    return dirs, restored


def checkpoint_finished(checkpoint: Path) -> bool:
    """Whether ``checkpoint`` holds a run trained to its last planned epoch (False: absent, unreadable, partial)."""
    from ..checkpoint import read_checkpoint_config

    try:
        metrics = read_checkpoint_config(checkpoint)["metrics"]
        return bool(metrics["epochs_completed"] == metrics["epochs_planned"])
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return False


def timing_export_options(study: dict[str, Any]):
    """The export every timed bundle of a study gets: ``ibit-export --precision fp32``, shaped for its batches.

    The TensorRT backend times an engine, which the export builds where TensorRT is installed (untested here: no
    GPU); every other backend runs the ONNX file.
    """
    from ..export.pipeline import ExportOptions

    batches = sorted(study["latency_batches"])
    return ExportOptions(to="tensorrt" if study["backend"] == "tensorrt" else "onnx", precision="fp32",
                         opt_batch=batches[0], max_batch=batches[-1])


def _export_and_time(directory: Path, config, study: dict[str, Any]) -> dict[str, Any]:
    """Export as ``ibit-export --to onnx --precision fp32`` does, then time it with ibit-bench's runner."""
    from ..bench.latency import measure_latency
    from ..data import eval_arrays
    from ..export.pipeline import export_checkpoint
    from ..runtime.load import make_runners

    bundle = directory / layout.BUNDLE_DIR
    shutil.rmtree(bundle, ignore_errors=True)  # an export killed half-way is redone, never reused
    batches = sorted(study["latency_batches"])
    start = time.perf_counter()
    manifest = export_checkpoint(config.out, bundle, timing_export_options(study))
    export_seconds = time.perf_counter() - start
    inp = manifest["input"]
    images, _ = eval_arrays(config.data, "val", tuple(inp["image_size"]), tuple(inp["mean"]), tuple(inp["std"]),
                            limit=batches[-1], val_fraction=config.val_fraction, seed=config.seed)
    choice = make_runners(bundle, [study["backend"]], manifest, precisions=["fp32"], threads=study["threads"])[0]
    latency: dict[str, Any] = {"backend": choice.backend, "artifact": choice.artifact}
    if isinstance(choice.runner, str):
        latency["unavailable"] = choice.runner
    else:
        from ..bench.latency import make_batch
        from ..runtime.base import BackendUnavailable

        try:
            with choice.runner as runner:
                latency["runner"] = runner.describe()
                latency["batches"] = {str(b): measure_latency(runner, make_batch(images, b),
                                                              seconds=study["latency_seconds"]).to_dict()
                                      for b in batches}
        except BackendUnavailable as exc:
            latency["unavailable"] = str(exc)
    return {"export": {"bundle": str(bundle), "seconds": round(export_seconds, 2),
                       "num_params": manifest["model"]["num_params"], "attn_mode": manifest["model"]["attn_mode"],
                       "onnx_parity": manifest["artifacts"][0].get("parity")},
            "latency": latency}


def main(argv: list[str] | None = None) -> int:
    """``python -m ibit_deploy.study.worker OUT RUN_ID``; started by the study, it ends with it (:mod:`.lifetime`)."""
    tie_to_parent()
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print("usage: python -m ibit_deploy.study.worker OUT RUN_ID", file=sys.stderr)
        return 2
    try:
        result = run(argv[0], argv[1])
    except LockBusy as exc:  # the scheduler retries the run later (EXIT_BUSY)
        print(f"worker: {exc}", file=sys.stderr)
        return EXIT_BUSY
    print(f"worker: {result['id']} top-1 {as_points(result['val_acc1']):.2f}% after {result['steps']} steps",
          flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
