"""Data parallelism across processes (torchrun): gloo on CPU, NCCL on GPU, multi-node included.

Every rank draws the same global batch from identically seeded samplers and
trains on its own slice of it; gradients are averaged across ranks before each
optimizer step. So N processes compute what one process would with the same
global batch, and rank 0 alone writes the run directory.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from genlab.errors import GenlabError


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.size > 1


def world() -> World:
    """This process's place among the ranks torchrun started (a world of one without torchrun)."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size == 1:
        return World()
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend)
    return World(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def barrier(w: World) -> None:
    if w.active:
        dist.barrier()


def shard(batch: tuple[torch.Tensor, ...], w: World) -> tuple[torch.Tensor, ...]:
    """This rank's equal slice (dim 0) of a global batch."""
    if not w.active:
        return batch
    n = batch[0].shape[0]
    if n % w.size:
        raise ValueError(f"train.batch_size {n} must be divisible by the number of processes {w.size}")
    per = n // w.size
    return tuple(t[w.rank * per : (w.rank + 1) * per] for t in batch)


def average_gradients(params: list[torch.nn.Parameter], w: World) -> None:
    """Mean of each parameter's gradient over the ranks (one flat all-reduce)."""
    if not w.active:
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= w.size
    offset = 0
    for g in grads:
        g.copy_(flat[offset : offset + g.numel()].view_as(g))
        offset += g.numel()


def average_scalars(values: dict[str, float], w: World) -> dict[str, float]:
    if not w.active or not values:
        return values
    t = torch.tensor(list(values.values()), dtype=torch.float64)
    dist.all_reduce(t)
    return dict(zip(values, (t / w.size).tolist()))


def pick_device(choice: str, local_rank: int = 0) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise GenlabError("train.device: cuda was asked for, but no CUDA GPU is available")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(f"cuda:{local_rank}") if choice == "cuda" else torch.device(choice)
