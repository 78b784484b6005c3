"""The Ray executor: each run is a Ray task (:mod:`.ray_task`) asking for what it needs (``--threads`` CPUs, a GPU
where it trains on CUDA or is timed on a GPU backend), placed by Ray on any node of the cluster.

Runs write to the shared study folder, as local workers do; this driver only reads it (see README, "On a Ray
cluster"). Nothing is orphaned: the tasks are ordinary (not detached) tasks of this driver's Ray job, so when the
driver ends, however it ends (``kill -9`` included), Ray ends the job and kills its workers; Ctrl-C cancels them
first. A worker or node dying mid-run is retried by Ray up to :data:`MAX_RETRIES` times, resuming from the run's last
finished epoch. Ray is imported here only, when this executor is chosen.
"""

from __future__ import annotations

import math
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ...errors import BadInput
from ..plan import RunSpec
from .base import BUSY, DONE, FAILED, Needs, Outcome
from .ray_task import run_task

INSTALL_HINT = 'install it with: pip install "ibit-deploy[ray]" (in a checkout: pip install ".[ray]")'
AUTO = "auto"  # --ray-address: the cluster this machine belongs to (RAY_ADDRESS, else the one `ray start` began here)
MAX_RETRIES = 3  # a run whose Ray worker or node dies is run again (resuming from its last epoch) this many times
CONNECT_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 30.0


def parse_address(text: str) -> str:
    """``auto`` or ``HOST:PORT`` (port 1..65535); else ValueError saying what is expected."""
    if text == AUTO:
        return text
    host, sep, port = text.rpartition(":")
    # a URL (scheme://), a path or spaces are not a host: Ray would only refuse them after trying to connect
    if (not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535
            or any(c in host for c in "/@ \t")):
        raise ValueError(f"--ray-address must be 'auto' or HOST:PORT (the Ray head node's GCS address, port 6379 by "
                         f"default), got {text!r}")
    return text


def import_ray() -> Any:
    """The ``ray`` module, or BadInput (exit 2) saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise BadInput(f"--executor ray needs Ray, which is not importable here ({exc}); {INSTALL_HINT}") from None
    return ray


def _reachable(address: str) -> None:
    """BadInput at once when nothing listens at ``HOST:PORT`` (Ray itself would retry for minutes)."""
    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=CONNECT_TIMEOUT_S).close()
    except OSError as exc:
        raise BadInput(f"--ray-address {address}: no Ray head node answers there ({exc}); start one with `ray start "
                       f"--head` and give the address it prints") from None


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


class RayExecutor:
    name = "ray"

    def __init__(self, out: Path, needs: Needs, workers: int | None, address: str,
                 log: Callable[[str], None]) -> None:
        self.ray = import_ray()
        self.out, self.needs, self.workers, self.log = out.resolve(), needs, workers, log
        self.owned = not self.ray.is_initialized()  # a caller's own connection is used, and left open
        if self.owned:
            if address != AUTO:
                _reachable(parse_address(address))
            try:
                self.ray.init(address=address, log_to_driver=False)
            except ConnectionError as exc:  # Ray's own cause says why (e.g. the cluster wants an auth token)
                why = f" ({type(exc.__cause__).__name__}: {_one_line(exc.__cause__)})" if exc.__cause__ else ""
                raise BadInput(f"--ray-address {address}: {_one_line(exc)}{why}; start a cluster with `ray start "
                               f"--head`, or name its HOST:PORT") from None
        try:
            self.address = self.ray.get_runtime_context().gcs_address or address
            self.remote = self.ray.remote(num_cpus=needs.cpus, num_gpus=needs.gpus, max_retries=MAX_RETRIES,
                                          retry_exceptions=False)(run_task)
            self.refs: dict[Any, str] = {}  # ObjectRef -> run id
            self.nodes = [n for n in self.ray.nodes() if n.get("Alive")]
        except BaseException:
            if self.owned:
                self.ray.shutdown()
            raise
        if not any(self._fits(n) for n in self.nodes):
            log(f"no node of the Ray cluster offers what a run needs ({needs.describe()}) now: the runs wait until "
                f"one joins (an autoscaling cluster adds it; else stop with Ctrl-C)")

    def _fits(self, node: dict[str, Any]) -> int:
        """How many runs ``node`` can hold at once."""
        res = node.get("Resources") or {}
        n = math.floor(res.get("CPU", 0) / self.needs.cpus)
        if self.needs.gpus:
            n = min(n, math.floor(res.get("GPU", 0) / self.needs.gpus))
        return n

    def describe(self) -> str:
        cpus = sum((n.get("Resources") or {}).get("CPU", 0) for n in self.nodes)
        gpus = sum((n.get("Resources") or {}).get("GPU", 0) for n in self.nodes)
        at_once = f"up to {self.workers} at a time" if self.workers else "as many at a time as the cluster fits"
        return (f"Ray cluster at {self.address} ({len(self.nodes)} node(s), {cpus:g} CPU(s), {gpus:g} GPU(s)): one "
                f"task per run of {self.needs.describe()}, {at_once}")

    def capacity(self) -> int | None:
        return self.workers

    def parallelism(self) -> int:
        fit = sum(self._fits(n) for n in self.nodes)
        return max(1, min(fit, self.workers) if self.workers else fit)

    def submit(self, spec: RunSpec) -> None:
        ref = self.remote.options(name=f"compare {spec.id}").remote(str(self.out), spec.id, spec.digest())
        self.refs[ref] = spec.id

    def finished(self) -> dict[str, Outcome]:
        if not self.refs:
            return {}
        ready, _ = self.ray.wait(list(self.refs), num_returns=len(self.refs), timeout=0, fetch_local=False)
        return {self.refs.pop(ref): self._outcome(ref) for ref in ready}

    def _outcome(self, ref: Any) -> Outcome:
        exceptions = self.ray.exceptions
        try:
            value = self.ray.get(ref)
        except exceptions.RayTaskError as exc:  # the run raised: its traceback is in its worker.log
            cause = getattr(exc, "cause", None) or exc
            return Outcome(FAILED, f"{type(cause).__name__}: {str(cause).strip().splitlines()[-1]}")
        except exceptions.TaskCancelledError:
            return Outcome(FAILED, "its Ray task was cancelled")
        except exceptions.RayError as exc:  # the worker or node died MAX_RETRIES + 1 times
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            return Outcome(FAILED, f"its Ray worker died {MAX_RETRIES + 1} times ({type(exc).__name__}: {first})")
        return Outcome(BUSY if value.get("status") == BUSY else DONE)

    def stop(self) -> None:
        """Cancel every run still going (force: its worker process is killed; it resumes from its last epoch) and
        wait for them to end."""
        refs = list(self.refs)
        for ref in refs:
            self.ray.cancel(ref, force=True)
        if refs:
            self.ray.wait(refs, num_returns=len(refs), timeout=STOP_TIMEOUT_S, fetch_local=False)
        self.refs.clear()

    def close(self) -> None:
        try:
            if self.refs:
                self.stop()
        finally:
            if self.owned:
                self.ray.shutdown()  # ends this driver's job: Ray kills whatever of it is left
