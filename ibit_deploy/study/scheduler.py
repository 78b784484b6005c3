"""Run a study: every unfinished run through an executor (local worker processes, or Ray tasks across a cluster:
:mod:`.executors`), resumable after a kill.

A study folder is bound to its recipe (``study.json``): re-running with the same recipe resumes (finished runs are
kept, killed ones resume from their last epoch); another recipe is refused, so results of different recipes never
mix. Candidates, seeds and fractions may be added to a study, or a subset of it run first (study.json keeps the
union, so the report still covers every planned run); ``--workers`` may change between sessions.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ..devicekit.fileio import atomic_write_json, read_json
from . import layout
from .candidates import CANDIDATES, KD_WEIGHTS
from .executors import open_executor
from .executors.base import BUSY, DONE, Executor, run_needs
from .guard import Claim, StudyGone
from .plan import OPTION_RANGES, TRAIN_DEVICE, RunSpec, StudyConfig, build_plan, validate
from .records import as_points
from .worker import finished_result

BUSY_RETRY_S = 30.0  # a run held by another process (an orphaned worker) is retried this often
POLL_S = 1.0


def prepare(config: StudyConfig, out: str | os.PathLike) -> list[RunSpec]:
    """Check the inputs, bind ``out`` to the recipe (or check it matches) and write every run's spec file."""
    sizes = validate(config)
    runs = build_plan(config, sizes)
    out = Path(out)
    layout.check_out(out)  # again under the lock: what is there now
    study_file = out / layout.STUDY_FILE
    saved = read_json(study_file, "study file") if study_file.is_file() else None
    if saved is not None:
        recipe = config.recipe()
        changed = sorted(k for k in set(recipe) | set(saved.get("recipe", {}))
                         if recipe.get(k) != saved.get("recipe", {}).get(k))
        if changed:
            detail = ", ".join(f"{k}: saved {saved['recipe'].get(k)!r} vs now {recipe.get(k)!r}" for k in changed)
            raise ValueError(f"{out} holds a study with another recipe ({detail}); use another --out, or the same "
                             f"options to resume it")
    study_runs = {r.id: r for r in runs}
    for spec in runs:
        directory = layout.run_dir(out, spec.id)
        path = directory / layout.RUN_FILE
        record = {"run": spec.to_dict(), "digest": spec.digest(), "kd_weights": list(KD_WEIGHTS),
                  "study": {k: config.recipe()[k] for k in ("backend", "latency_batches", "latency_seconds",
                                                              "threads")}}
        if path.is_file():
            old = read_json(path, "run spec")
            if old.get("digest") in spec.legacy_digests():
                _migrate_digest(directory, record, old["digest"])
            elif old.get("digest") != record["digest"]:
                raise ValueError(f"{path} was planned with another spec (digest {str(old.get('digest'))[:12]}... vs "
                                 f"{record['digest'][:12]}...); its results cannot be mixed into this study. Remove "
                                 f"{directory} or use another --out")
            continue
        atomic_write_json(path, record)
    atomic_write_json(study_file, _grown_study(config, list(study_runs), saved))
    return runs


def _migrate_digest(directory: Path, record: dict[str, Any], legacy: str) -> None:
    """Re-key a run planned under a legacy digest (role included) to ``record``'s, keeping a finished result.

    result.json first, then run.json: a kill in between leaves run.json on the legacy digest, and the next prepare
    finishes the job (a result already on the new digest is accepted).
    """
    with layout.locked(directory, "compare digest migration", then="run the same command again to resume the study"):
        result_path = directory / layout.RESULT_FILE
        if result_path.is_file():
            result = read_json(result_path, "run result")
            if result.get("digest") == legacy:
                atomic_write_json(result_path, {**result, "digest": record["digest"]})
        atomic_write_json(directory / layout.RUN_FILE, record)


def _grown_study(config: StudyConfig, run_ids: list[str], saved: dict[str, Any] | None) -> dict[str, Any]:
    """study.json after this invocation: a study only grows, so running a subset first (e.g. the headline
    candidates over every seed) never drops the runs planned earlier from the study or its report."""
    if not saved:
        return {"recipe": config.recipe(), "candidates": config.candidates, "seeds": config.seeds,
                "fractions": config.fractions, "runs": run_ids}
    wanted = set(saved.get("candidates", [])) | set(config.candidates)
    known = set(saved.get("runs", []))
    return {"recipe": config.recipe(), "candidates": [c for c in CANDIDATES if c in wanted],
            "seeds": sorted(set(saved.get("seeds", [])) | set(config.seeds)),
            "fractions": sorted(set(saved.get("fractions", [])) | set(config.fractions)),
            "runs": list(saved.get("runs", [])) + [r for r in run_ids if r not in known]}


class _Eta:
    """Time left: remaining runs x the mean duration of finished runs of the same name (else of all), / workers."""

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.durations: dict[str, list[float]] = {}

    def add(self, name: str, seconds: float) -> None:
        self.durations.setdefault(name, []).append(seconds)

    def left(self, names: list[str], running: list[tuple[str, float]] = ()) -> float | None:
        """Seconds left for the pending run ``names`` plus the ``running`` ones ((name, seconds already spent)
        each, charged only what their expected duration has left)."""
        every = [s for v in self.durations.values() for s in v]
        if not every:
            return None
        overall = sum(every) / len(every)

        def expected(name: str) -> float:
            return sum(self.durations[name]) / len(self.durations[name]) if name in self.durations else overall

        total = sum(expected(n) for n in names)
        total += sum(max(0.0, expected(n) - spent) for n, spent in running)
        return total / self.workers


def _recorded_seconds(result: dict[str, Any]) -> float:
    """A finished run's training (over every attempt) plus export time, from its result."""
    return float(result.get("train_seconds", 0.0)) + float(result.get("export", {}).get("seconds", 0.0))


def _fmt(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    minutes = int(seconds // 60)
    return f"{minutes // 60}h{minutes % 60:02d}m"


def run_study(config: StudyConfig, out: str | os.PathLike, workers: int | None = None,
              log: Callable[[str], None] = print, executor: str = "local",
              ray_address: str | None = None) -> dict[str, Any]:
    """Run every unfinished run of the study in ``out``; returns {planned, done, failed, blocked} (run ids).

    ``executor``: "local" (worker processes here, ``workers`` at a time, default 1) or "ray" (Ray tasks on the
    cluster at ``ray_address``, default ``auto``; ``workers`` caps the runs at a time, default none).
    """
    from ..runtime.load import canonical_backend

    if workers is not None:
        workers = OPTION_RANGES["workers"].check(workers, "--workers")
    out = Path(out)
    layout.check_out(out)  # before anything, the lock file included
    needs = run_needs({"threads": config.threads, "backend": canonical_backend(config.backend)},
                      {"device": TRAIN_DEVICE})
    # opened first: no Ray, or no cluster at the address, is bad input before anything is written
    chosen = open_executor(executor, out, needs, workers, ray_address, log)
    try:
        # locked before prepare: a second compare on a folder in use must not rewrite its study.json or re-key its runs
        with layout.locked(out, "ibit-deploy compare", then="run the same command again to resume the study"):
            runs = prepare(config, out)
            return _Scheduler(config, out, runs, chosen, log).run()
    finally:
        chosen.close()


class _Scheduler:
    def __init__(self, config: StudyConfig, out: Path, runs: list[RunSpec], executor: Executor,
                 log: Callable[[str], None]) -> None:
        self.config, self.out, self.runs, self.executor, self.log = config, out, runs, executor, log
        self.claim = Claim(out, out / layout.STUDY_FILE)  # the driver stops when its study folder goes away
        self.done = {r.id for r in runs if finished_result(layout.run_dir(out, r.id), r.digest()) is not None}
        self.failed: dict[str, str] = {}
        self.pending = [r for r in runs if r.id not in self.done]
        self.running: dict[str, tuple[float, RunSpec]] = {}
        self.not_before: dict[str, float] = {}
        self.eta = _Eta(executor.parallelism())
        for r in runs:  # durations of runs finished in earlier sessions seed the estimate
            if r.id in self.done:
                res = read_json(layout.run_dir(out, r.id) / layout.RESULT_FILE, "run result")
                self.eta.add(r.name, _recorded_seconds(res))

    def run(self) -> dict[str, Any]:
        total = len(self.runs)
        self.log(f"study {self.out}: {total} runs planned, {len(self.done)} already finished, {len(self.pending)} to "
                 f"run on {self.executor.describe()}")
        bar = tqdm(total=total, initial=len(self.done), unit="run", desc="compare", disable=not sys.stderr.isatty())
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def stop(signum, frame):  # noqa: ARG001 - signal handler signature
            raise KeyboardInterrupt

        for s in previous:
            signal.signal(s, stop)
        try:
            while self.pending or self.running:
                self._check_study()
                self._launch()
                if self._reap(bar) == 0:
                    time.sleep(POLL_S)
            self._check_study()  # a run that stopped because its study went away: the study's end, not the run's
        except KeyboardInterrupt:
            self.log(f"interrupted: stopping {len(self.running)} run(s); re-run the same command to resume")
            self.executor.stop()
            raise
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
            bar.close()
        blocked = [r.id for r in self.runs if r.id not in self.done and r.id not in self.failed]
        return {"planned": [r.id for r in self.runs], "done": sorted(self.done), "failed": self.failed,
                "blocked": blocked}

    def _check_study(self) -> None:
        """Stop every run when the study folder went away under this command: its runs belong to no study now."""
        reason = self.claim.lost()
        if reason is not None:
            self.log(f"stopping {len(self.running)} run(s): {reason}")
            self.executor.stop()
            raise StudyGone(f"{self.out}: the study folder went away while the study ran ({reason}); nothing more was "
                            f"written")

    def _launch(self) -> None:
        now = time.monotonic()
        capacity = self.executor.capacity()
        for spec in list(self.pending):
            if capacity is not None and len(self.running) >= capacity:
                return
            bad = [d for d in spec.after if d in self.failed]
            if bad:
                self.pending.remove(spec)
                self.failed[spec.id] = f"needs {bad[0]}, which failed"
                continue
            if any(d not in self.done for d in spec.after) or self.not_before.get(spec.id, 0.0) > now:
                continue
            self.pending.remove(spec)
            self.executor.submit(spec)
            self.running[spec.id] = (time.monotonic(), spec)

    def _reap(self, bar: tqdm) -> int:
        ended = self.executor.finished()
        for run_id, outcome in ended.items():
            start, spec = self.running.pop(run_id)
            seconds = time.monotonic() - start
            directory = layout.run_dir(self.out, run_id)
            if outcome.status == BUSY:  # another process (an orphaned worker) still holds it: wait, never share it
                self.not_before[run_id] = time.monotonic() + BUSY_RETRY_S
                self.pending.insert(0, spec)
                continue
            result = finished_result(directory, spec.digest()) if outcome.status == DONE else None
            if result is None:
                self.failed[run_id] = outcome.detail or (f"the run ended without a result matching its spec; see "
                                                         f"{directory / layout.LOG_FILE}")
                self.log(f"[{len(self.done)}/{len(self.runs)}] FAILED {run_id}: {self.failed[run_id]}")
                continue
            self.done.add(run_id)
            # a resumed run's wall time is only its last attempt's share: count its recorded training + export
            self.eta.add(spec.name, _recorded_seconds(result) if result.get("resumed") else seconds)
            bar.update(1)
            now = time.monotonic()
            left = _fmt(self.eta.left([r.name for r in self.pending],
                                      [(r.name, now - t) for t, r in self.running.values()]))
            conv = result["convergence"].get("converged")
            self.log(f"[{len(self.done)}/{len(self.runs)}] {run_id}: top-1 {as_points(result['val_acc1']):.2f}% after "
                     f"{result['steps']} steps, {seconds:.0f} s, converged={conv}; ~{left} left")
            bar.set_postfix_str(f"~{left} left")
        return len(ended)
