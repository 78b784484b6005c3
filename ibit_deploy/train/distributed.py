"""Multi-process training under ``torchrun``: process-group setup from the environment, sharding and reductions.

One code path serves one process and many: with ``WORLD_SIZE`` unset (or 1) every helper degrades to a no-op.
gloo on CPU, nccl on CUDA (one GPU per local rank).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Sampler


@dataclass(frozen=True)
class DistEnv:
    """Where this process sits: rank, world size, local rank and its device."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def resolve_device(preference: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; ``cuda`` without a GPU is an error, not a silent CPU run."""
    if preference == "cpu":
        return torch.device("cpu")
    if preference == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' was requested but torch sees no CUDA device; use device='cpu' or 'auto'")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def init_distributed(device_preference: str = "auto") -> DistEnv:
    """Join the process group described by torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_preference, local)
    if world <= 1:
        return DistEnv(0, 1, 0, device)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo", init_method="env://")
    return DistEnv(rank, world, local, device)


def cleanup_distributed(env: DistEnv) -> None:
    if env.distributed and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce_sum(values: torch.Tensor, env: DistEnv) -> torch.Tensor:
    """Sum a float64 tensor over all ranks (returned on CPU)."""
    if not env.distributed:
        return values
    # nccl reduces only device tensors; gloo only CPU ones.
    tensor = values.to(env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu()


def any_rank(flag: bool, env: DistEnv) -> bool:
    """True when ``flag`` is true on any rank (every rank gets the same answer, so they stop together)."""
    if not env.distributed:
        return flag
    tensor = torch.tensor([1.0 if flag else 0.0], device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MAX)
    return bool(tensor.item() > 0)


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj`` in rank order (pickled internally by torch; used for RNG states only)."""
    if not env.distributed:
        return [obj]
    out: list[Any] = [None] * env.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: Any, env: DistEnv) -> Any:
    """Rank 0's ``obj`` on every rank."""
    if not env.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(env: DistEnv) -> None:
    if env.distributed:
        dist.barrier()


class EpochShuffleSampler(Sampler[int]):
    """A seeded permutation per epoch, sharded across ranks; with ``shuffle=False`` a plain shard (for validation).

    Shuffled shards are padded by wrapping around so every rank runs the same number of steps (DDP needs that);
    evaluation shards are not padded so every sample counts exactly once in the reduced metrics. The permutation
    depends only on (seed, epoch), so a resumed run visits the samples in the same order as an uninterrupted one.
    """

    def __init__(self, length: int, env: DistEnv, shuffle: bool, seed: int = 0) -> None:
        self.length = length
        self.rank, self.world = env.rank, env.world_size
        self.shuffle = shuffle
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _indices(self) -> list[int]:
        if not self.shuffle:
            return list(range(self.rank, self.length, self.world))
        gen = torch.Generator()
        gen.manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.length, generator=gen).tolist()
        per_rank = -(-self.length // self.world)
        order += order[: per_rank * self.world - self.length]
        return order[self.rank :: self.world]

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices())

    def __len__(self) -> int:
        if not self.shuffle:
            return len(range(self.rank, self.length, self.world))
        return -(-self.length // self.world)
