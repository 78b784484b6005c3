"""Where a study's runs are carried out (``ibit-deploy compare --executor``):

    local   one worker process per run on this machine (the default)                       .local
    ray     one Ray task per run, placed by Ray across an existing cluster (``[ray]`` extra)  .ray_cluster, .ray_task

Both run the same code (:func:`..worker.run`) on the same study folder, with the same locks, resume and report; the
scheduler (:mod:`..scheduler`) talks to either through :class:`.base.Executor`. Modules, each importing only those
above it: base, local, ray_task, ray_cluster. Ray is imported only by the ray modules, when chosen.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from .base import Executor, Needs

EXECUTORS = ("local", "ray")


def open_executor(name: str, out: Path, needs: Needs, workers: int | None, address: str | None,
                  log: Callable[[str], None]) -> Executor:
    """The executor ``name`` for the study in ``out``, ready (on Ray: connected). ``workers``: runs at a time (None: 1
    locally, as many as the cluster fits on Ray); ``address``: the Ray cluster (``auto`` when None).

    Bad input (exit 2) for an unknown executor, an address without Ray, Ray not installed or no cluster there: opened
    before anything of the study is written."""
    if name == "local":
        if address is not None:
            raise ValueError("--ray-address names the Ray cluster of --executor ray; the local executor has none")
        from .local import LocalExecutor

        return LocalExecutor(out, needs, workers or 1, log)
    if name == "ray":
        from .ray_cluster import AUTO, RayExecutor

        return RayExecutor(out, needs, workers, address or AUTO, log)
    raise ValueError(f"unknown executor {name!r}; expected one of {', '.join(EXECUTORS)}")
