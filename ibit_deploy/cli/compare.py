"""``ibit-deploy compare``: which model should I ship? Every candidate trained with the same recipe and step budget
per data fraction and seed, evaluated on one held-out split, exported like ibit-export and timed like ibit-bench.

    ibit-deploy compare --data imagefolder:/data/parts --out runs/compare
    ibit-deploy compare --data mnist5k --candidates ibit,vit,convit,resnet --seeds 0,1,2 \\
        --fractions 0.1,0.25,0.5,1.0 --steps 1875 --workers 2 --out runs/compare
    ibit-deploy compare --out runs/compare --report-only        # redraw the report from the runs finished so far

Re-running the same command resumes a killed study: finished runs are kept, a half-finished run resumes from its
last epoch. Exit codes: 0 done, 1 some runs failed, 2 bad input.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .. import errors
from .args import add_backends, add_quiet
from .entry import cli_main

PROG = "ibit-deploy compare"
# printed by the quickstart: the same question asked of the user's own images
OWN_DATA_EXAMPLE = (f"{PROG} --data imagefolder:/path/to/images --candidates ibit,vit,convit,resnet "
                    f"--seeds 0,1,2 --fractions 0.25,1.0 --out runs/compare")


def build_parser() -> argparse.ArgumentParser:
    from ..compare.candidates import CANDIDATES
    from ..compare.plan import StudyConfig
    from ..compare.report import DEFAULT_MARGIN

    d = StudyConfig()
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=d.data, help="dataset spec: mnist5k, imagefolder:DIR, cifar10:DIR, synthetic[:N]")
    p.add_argument("--candidates", default=",".join(d.candidates), help=f"comma-separated, from {', '.join(CANDIDATES)}")
    p.add_argument("--steps", type=int, default=d.steps, help=f"optimizer steps per run (default {d.steps}, the "
                                                              f"quickstart's 30 epochs of 4,000 images at batch 64)")
    p.add_argument("--seeds", default=",".join(map(str, d.seeds)))
    p.add_argument("--fractions", default=",".join(map(str, d.fractions)), help="fractions of the training split")
    p.add_argument("--out", type=Path, required=True, help="study folder (re-use it to resume)")
    p.add_argument("--workers", type=int, default=1, help="runs at a time, one process of --threads threads each")
    p.add_argument("--threads", type=int, default=d.threads)
    p.add_argument("--embed-dim", type=int, default=d.embed_dim)
    p.add_argument("--depth", type=int, default=d.depth)
    p.add_argument("--num-heads", type=int, default=d.num_heads)
    p.add_argument("--batch-size", type=int, default=d.batch_size)
    p.add_argument("--lr", type=float, default=d.lr)
    add_backends(p, default=d.backend, type=None, old=("--backend",),
                 help="latency backend (one): ort-cpu, ort-cuda, ort-trt, tensorrt")
    p.add_argument("--latency-batches", default=",".join(map(str, d.latency_batches)))
    p.add_argument("--latency-seconds", type=float, default=d.latency_seconds)
    p.add_argument("--margin", type=float, default=DEFAULT_MARGIN,
                   help=f"recommend the fastest candidate within this many top-1 points of the best at the largest "
                        f"fraction (default {DEFAULT_MARGIN})")
    p.add_argument("--latency-rounds", type=int, default=5,
                   help="re-time one bundle per candidate side by side in this many interleaved rounds for the report "
                        "(0: use each run's own measurement)")
    p.add_argument("--no-latency-standins", action="store_true",
                   help="in the side-by-side latency pass, keep the runs' own measurements for a candidate with no "
                        "trained bundle left (default: time a stand-in of its architecture, exported the same way)")
    p.add_argument("--report-only", action="store_true", help="only (re)write OUT/report from the finished runs")
    p.add_argument("--no-report", action="store_true", help="run the study without writing the report at the end")
    add_quiet(p)
    return p


@cli_main(PROG)
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..compare.plan import StudyConfig

    if args.report_only:
        return _report(args.out, args.margin, args.latency_rounds, not args.no_latency_standins)
    config = StudyConfig(
        data=args.data, candidates=args.candidates, steps=args.steps, seeds=args.seeds, fractions=args.fractions,
        embed_dim=args.embed_dim, depth=args.depth, num_heads=args.num_heads, batch_size=args.batch_size,
        lr=args.lr, backend=args.backends, latency_seconds=args.latency_seconds, threads=args.threads,
        latency_batches=_ints(args.latency_batches, "--latency-batches"))
    from ..compare.study import run_study

    summary = run_study(config, args.out, workers=args.workers, log=_silent if args.quiet else print)
    if not args.no_report:
        _report(args.out, args.margin, args.latency_rounds, not args.no_latency_standins)
    for run_id, reason in summary["failed"].items():
        print(f"{PROG}: run {run_id} failed: {reason}", file=sys.stderr)
    return errors.CHECK_FAILED if summary["failed"] else errors.DONE


def _silent(line: str) -> None:
    """``--quiet``: the study's progress lines go nowhere."""


def _report(out: Path, margin: float, latency_rounds: int, standins: bool) -> int:
    from ..compare.report import write_report

    paths = write_report(out, margin=margin, latency_rounds=latency_rounds, standins=standins)
    print(Path(paths["markdown"]).read_text())
    print(f"report: {', '.join(str(p) for p in paths.values())}")
    return errors.DONE


def _ints(text: str, flag: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError as exc:
        raise ValueError(f"{flag} must be comma-separated integers, got {text!r}") from exc


if __name__ == "__main__":
    raise SystemExit(main())
