"""``ibit-deploy compare``: which model should I ship? Every candidate trained with the same recipe and step budget
per data fraction and seed, evaluated on one held-out split, exported like ibit-export and timed like ibit-bench.

    ibit-deploy compare --data imagefolder:/data/parts --out runs/compare
    ibit-deploy compare --data mnist5k --candidates ibit,vit,convit,resnet --seeds 0,1,2 \\
        --fractions 0.1,0.25,0.5,1.0 --steps 1875 --workers 2 --out runs/compare
    ibit-deploy compare --out runs/compare --report-only   # redraw the report from the runs finished so far (reads only)
    ibit-deploy compare --out runs/compare --retime        # re-time the candidates side by side, then the report
    ibit-deploy compare --data imagefolder:/shared/parts --executor ray --ray-address auto \
        --out /shared/runs/compare                         # each run a Ray task on the cluster (pip install ".[ray]")

Re-running the same command resumes a killed study: finished runs are kept, a half-finished run resumes from its
last epoch. The runs end with this command, however it ends. Exit codes: 0 done, 1 some runs failed (or the study
folder is in use, or went away while the study ran), 2 bad input (Ray missing or no cluster at --ray-address too).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from .. import errors
from ..devicekit.numbers import BATCH, SEED, Range, argtype
from .args import add_backends, add_quiet
from .entry import cli_main

PROG = "ibit-deploy compare"
# printed by the quickstart: the same question asked of the user's own images
OWN_DATA_EXAMPLE = (f"{PROG} --data imagefolder:/path/to/images --candidates ibit,vit,convit,resnet "
                    f"--seeds 0,1,2 --fractions 0.25,1.0 --out runs/compare")
DEFAULT_RETIME_ROUNDS = 5


def _checked(parse: Callable[[str], object], rule: Range | None = None) -> Callable[[str], object]:
    """An argparse ``type`` from a parser that raises ValueError: a bad value is a usage error (exit 2) when parsed.
    ``rule``: the range of each number of a numeric list (carried as ``.rule``, like :func:`add_number`'s types)."""
    def convert(text: str) -> object:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = getattr(parse, "__name__", "value")
    if rule is not None:
        convert.rule = rule  # type: ignore[attr-defined]
    return convert


def _ranged(name: str) -> Callable[[str], object]:
    from ..study.plan import OPTION_RANGES, flag

    return argtype(OPTION_RANGES[name], flag(name))


def build_parser() -> argparse.ArgumentParser:
    from ..study.candidates import CANDIDATES, parse_candidates
    from ..study.executors import EXECUTORS
    from ..study.executors.ray_cluster import parse_address
    from ..study.plan import StudyConfig, parse_fractions, parse_latency_batches, parse_seeds
    from ..study.report import DEFAULT_MARGIN_POINTS

    d = StudyConfig()
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=d.data, help="dataset spec: mnist5k, imagefolder:DIR, cifar10:DIR, synthetic[:N]")
    p.add_argument("--candidates", type=_checked(parse_candidates), default=list(d.candidates),
                   help=f"comma-separated, from {', '.join(CANDIDATES)}")
    p.add_argument("--steps", type=_ranged("steps"), default=d.steps,
                   help=f"optimizer steps per run (default {d.steps}, the quickstart's 30 epochs of 4,000 images at "
                        f"batch 64)")
    p.add_argument("--seeds", type=_checked(parse_seeds, SEED), default=list(d.seeds))
    p.add_argument("--fractions", type=_checked(parse_fractions, Range(0, 1, low_open=True)), default=list(d.fractions),
                   help="fractions of the training split, each in (0, 1]")
    p.add_argument("--out", type=Path, required=True, help="study folder (re-use it to resume)")
    p.add_argument("--workers", type=_ranged("workers"), default=None,
                   help="runs at a time (default: 1 with the local executor, one process of --threads threads each; "
                        "with ray, as many as the cluster fits)")
    p.add_argument("--executor", choices=EXECUTORS, default="local",
                   help="where the runs train: local worker processes (default), or ray: one Ray task per run on an "
                        "existing Ray cluster, the study folder on a file system every node shares")
    p.add_argument("--ray-address", type=_checked(parse_address), default=None,
                   help="--executor ray: the cluster, 'auto' (default: RAY_ADDRESS, else the cluster this machine "
                        "joined with `ray start`) or the head node's HOST:PORT")
    p.add_argument("--threads", type=_ranged("threads"), default=d.threads)
    p.add_argument("--embed-dim", type=_ranged("embed_dim"), default=d.embed_dim)
    p.add_argument("--depth", type=_ranged("depth"), default=d.depth)
    p.add_argument("--num-heads", type=_ranged("num_heads"), default=d.num_heads)
    p.add_argument("--batch-size", type=_ranged("batch_size"), default=d.batch_size)
    p.add_argument("--lr", type=_ranged("lr"), default=d.lr)
    add_backends(p, default=d.backend, type=None, old=("--backend",),
                 help="latency backend (one): ort-cpu, ort-cuda, ort-trt, tensorrt")
    p.add_argument("--latency-batches", type=_checked(parse_latency_batches, BATCH), default=list(d.latency_batches),
                   help="batch sizes each run is timed at, including 1 (default 1; the report has a latency column "
                        "for each)")
    p.add_argument("--latency-seconds", type=_ranged("latency_seconds"), default=d.latency_seconds)
    p.add_argument("--margin", type=_ranged("margin"), default=DEFAULT_MARGIN_POINTS,
                   help=f"recommend the fastest candidate within this many top-1 percentage points of the best at the "
                        f"largest fraction, 0 to 100 (default {DEFAULT_MARGIN_POINTS})")
    p.add_argument("--latency-rounds", type=_ranged("latency_rounds"), default=None,
                   help=f"re-time one bundle per candidate side by side in this many interleaved rounds (default "
                        f"{DEFAULT_RETIME_ROUNDS}) at the end of a study or with --retime; 0 at the end of a study: "
                        f"keep each run's own measurement")
    p.add_argument("--no-latency-standins", action="store_true",
                   help="when re-timing, keep the runs' own measurements for a candidate with no trained bundle left "
                        "(default: time a stand-in of its architecture, exported the same way)")
    p.add_argument("--report-only", action="store_true",
                   help="only (re)write OUT/report from the finished runs; reads the study, writes nothing else")
    p.add_argument("--retime", action="store_true",
                   help="no training: re-time the candidates side by side (building latency stand-ins where no "
                        "trained bundle is left), keep that measurement in the study, and write the report")
    p.add_argument("--no-report", action="store_true", help="run the study without writing the report at the end")
    add_quiet(p)
    return p


@cli_main(PROG)
def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.retime and args.latency_rounds == 0:
        parser.error("--retime with --latency-rounds 0 has nothing to time; give 1 or more rounds")
    if args.report_only and not args.retime and args.latency_rounds is not None:
        parser.error("--report-only reads the study and times nothing; add --retime to re-time it side by side")
    if args.ray_address is not None and args.executor != "ray":
        parser.error("--ray-address names the cluster of --executor ray; add --executor ray, or leave it out")
    rounds = DEFAULT_RETIME_ROUNDS if args.latency_rounds is None else args.latency_rounds
    from ..study.plan import StudyConfig

    if args.report_only or args.retime:
        return _report(args.out, args.margin, rounds if args.retime else 0, not args.no_latency_standins)
    config = StudyConfig(
        data=args.data, candidates=args.candidates, steps=args.steps, seeds=args.seeds, fractions=args.fractions,
        embed_dim=args.embed_dim, depth=args.depth, num_heads=args.num_heads, batch_size=args.batch_size,
        lr=args.lr, backend=args.backends, latency_seconds=args.latency_seconds, threads=args.threads,
        latency_batches=args.latency_batches)
    from ..study.scheduler import run_study

    summary = run_study(config, args.out, workers=args.workers, log=_silent if args.quiet else print,
                        executor=args.executor, ray_address=args.ray_address)
    if not args.no_report:
        _report(args.out, args.margin, rounds, not args.no_latency_standins)
    for run_id, reason in summary["failed"].items():
        print(f"{PROG}: run {run_id} failed: {reason}", file=sys.stderr)
    return errors.CHECK_FAILED if summary["failed"] else errors.DONE


def _silent(line: str) -> None:
    """``--quiet``: the study's progress lines go nowhere."""


def _report(out: Path, margin_points: float, latency_rounds: int, standins: bool) -> int:
    """Write the report (re-timing first when ``latency_rounds`` > 0) and print it; 0."""
    from ..study.report import write_report

    paths = write_report(out, margin_points=margin_points, latency_rounds=latency_rounds, standins=standins)
    print(Path(paths["markdown"]).read_text())
    print(f"report: {', '.join(str(p) for p in paths.values())}")
    return errors.DONE


if __name__ == "__main__":
    raise SystemExit(main())
