"""Data parallelism across processes (torchrun): gloo on CPU, NCCL on GPU, multi-node included.

Every rank draws the same global batch from identically seeded samplers and
trains on its own slice of it; torch's DistributedDataParallel engine averages
the gradients (bucketed all-reduces overlapped with the backward pass). So N
processes compute what one process would with the same global batch, and rank
0 alone writes the run directory. docs/distributed.md says how to launch it.
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


def replicate(module: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Put torch's DDP gradient engine on `module` in place: its parameters' gradients are averaged over the
    ranks during the backward pass of every forward made while gradient sync is on (`set_gradient_sync`).

    In place (the composable form of DDP), not a wrapper: objectives call their modules directly, and a
    GAN's objective calls two of them, so the module must stay the object they hold. The trainer turns a
    player's sync off once it has stepped, so a later forward that only feeds another player's loss (the
    GAN's frozen discriminator during the generator's step) asks for no all-reduce."""
    from torch.distributed._composable.replicate import replicate as ddp

    return ddp(module, device_ids=[device.index] if device.type == "cuda" else None)


def set_gradient_sync(modules, on: bool) -> None:
    """Gradient accumulation: micro-batches before the last run without all-reduce (DDP's no_sync)."""
    for module in modules:
        module.set_requires_gradient_sync(on)


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
