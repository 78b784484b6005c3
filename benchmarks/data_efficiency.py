"""Data efficiency on real MNIST (mnist5k): top-1 vs the fraction of training data, every candidate, equal budget.

A thin script over ``ibit_deploy.study`` (the library behind ``ibit-deploy compare``): the same study, with the
defaults of the converged run recorded in benchmarks/RESULTS.md, and its report copied into benchmarks/results/.

Budget: the quickstart's recipe (IBiT dims 96 x depth 4 x 3 heads, patch 4; batch 64; AdamW lr 2e-3; warm-up over
2/30 of the steps, cosine decay; no RandAugment/erasing) and its step count, 1875 optimizer steps = 30 epochs of the
4,000 training images, for every candidate at every fraction (10% trains 313 epochs of 400 images). Converged means
the smoothed held-out top-1 and training loss are flat over the last 10% of steps (ibit_deploy/study/convergence.py).

    python benchmarks/data_efficiency.py --workers 2 --study runs/data_efficiency     # ~10 core-hours
    python benchmarks/data_efficiency.py --study runs/data_efficiency --report-only  # report of the runs so far
    python benchmarks/data_efficiency.py --study runs/data_efficiency --retime       # re-time side by side, report

Writes the study into ``--study`` (resumable: re-run the same command) and the report into
benchmarks/results/data_efficiency_study/ (compare.json, compare.md, top1_vs_fraction.png, top1_vs_latency.png,
curves.png).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from ibit_deploy.study.candidates import CANDIDATES
from ibit_deploy.study.plan import StudyConfig
from ibit_deploy.study.report import write_report
from ibit_deploy.study.scheduler import run_study

RESULTS = Path(__file__).with_name("results") / "data_efficiency_study"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", type=Path, default=Path("runs/data_efficiency"), help="study folder (resumable)")
    p.add_argument("--candidates", default=",".join(CANDIDATES))
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--fractions", default="0.1,0.25,0.5,1.0")
    p.add_argument("--steps", type=int, default=StudyConfig.steps)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--latency-rounds", type=int, default=5,
                   help="interleaved latency rounds when re-timing (after the study, or with --retime)")
    p.add_argument("--report-only", action="store_true",
                   help="only copy a report of the runs finished so far (reads the study, times nothing)")
    p.add_argument("--retime", action="store_true", help="no training: re-time side by side, then the report")
    p.add_argument("--out", type=Path, default=RESULTS, help="where the report is copied")
    args = p.parse_args(argv)
    training = not (args.report_only or args.retime)
    if training:
        config = StudyConfig(data="mnist5k", candidates=args.candidates, seeds=args.seeds, fractions=args.fractions,
                             steps=args.steps, latency_batches=[1, 32])
        run_study(config, args.study, workers=args.workers)
    paths = write_report(args.study, latency_rounds=args.latency_rounds if training or args.retime else 0)
    args.out.mkdir(parents=True, exist_ok=True)
    for path in paths.values():
        shutil.copy2(path, args.out / path.name)
    print(paths["markdown"].read_text())
    print(f"report copied to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
