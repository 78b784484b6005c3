"""``ibit-deploy compare``: which model to ship, measured on the user's own data.

Every candidate (IBiT variants, timm ViT/DeiT and ConViT of the same dims, the ResNet-style CNN) is trained with the
same recipe and the same number of optimizer steps per data fraction and seed, evaluated on one held-out split,
exported like ``ibit-export`` and timed with ``ibit-bench``'s runners. Submodules, in import order (each imports only
those above it):

    candidates        the candidate registry: model name and kwargs per candidate, LIB-KD teachers
    plan              StudyConfig (the recipe), the run list, bad-input checks and option ranges
    records           the unit of accuracies in run results and reports (fractions; old percent records read)
    convergence       "converged": the curve flat over the last 10% of steps
    lifetime          worker processes end with their parent (parent-death signal, or a watchdog)
    guard             a run stops writing when its study folder goes away or its lock is taken over
    worker            one run in its own process: train (resumable) -> export -> latency -> result.json
    executors         where runs train: local worker processes, or Ray tasks on a cluster (Ray imported only there)
    scheduler         the scheduler: runs through an executor, resume, progress
    provenance        which CPUs trained the runs; LIB-KD teachers retrained from their records
    latency_standins  latency stand-ins: a candidate's architecture exported for timing when no trained bundle is left
    report            aggregation, Markdown table, targets, recommendation; plots (matplotlib)
"""

from .candidates import CANDIDATES, TEACHERS
from .plan import RunSpec, StudyConfig, build_plan

__all__ = ["CANDIDATES", "TEACHERS", "RunSpec", "StudyConfig", "build_plan"]
