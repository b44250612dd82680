"""How fast a run learns at each step, and with what: the learning-rate schedule (a time budget planned as a
step count), the optimizer, the compute dtype."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from genlab.core.config import TrainConfig

# Steps timed before a time budget is turned into a step count for the schedule.
PLAN_AFTER_STEPS = 10
# Under a time budget, warmup is at most this share of the planned steps: a short budget on a slow family (50
# steps of WaveNet in 150 s) otherwise never left a 100-step warmup, and learned nothing.
WARMUP_SHARE = 0.05


def warmup_steps(cfg: TrainConfig, total_steps: int | None = None) -> int:
    """train.warmup_steps, or under a time budget planned as `total_steps`, at most WARMUP_SHARE of them."""
    if total_steps is None:
        return cfg.warmup_steps
    return min(cfg.warmup_steps, max(1, round(WARMUP_SHARE * total_steps)))


def learning_rate(cfg: TrainConfig, step: int, total_steps: int | None = None) -> float:
    """Linear warmup, then cosine decay to lr*min_lr_ratio at `total_steps` (a time budget's plan; default:
    max_steps, with train.warmup_steps of warmup).

    A function of the step alone, so a resumed run follows exactly the schedule of one never stopped;
    a time budget becomes a step estimate once (see `plan_steps`), recorded in the checkpoint."""
    total = total_steps or cfg.max_steps
    warmup = warmup_steps(cfg, total_steps)
    if step < warmup:
        return cfg.lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    floor = cfg.lr * cfg.min_lr_ratio
    return floor + 0.5 * (cfg.lr - floor) * (1 + math.cos(math.pi * progress))


def plan_steps(cfg: TrainConfig, step: int, elapsed: float, since_step: int = 0, since_elapsed: float = 0.0) -> int:
    """How many steps fit in the time budget: at `step`, `elapsed` seconds in, timing the steps taken since
    `since_step` (`since_elapsed` seconds in). The first step a process takes is left out of the timing: it
    carries one-off costs (torch.compile compiles there: tens of seconds, against milliseconds a step)."""
    per_step = (elapsed - since_elapsed) / max(step - since_step, 1)
    return min(cfg.max_steps, max(step + 1, step + int((cfg.max_time - elapsed) / max(per_step, 1e-9))))


def compute_dtype(choice: str, device: torch.device) -> str:
    """train.dtype -> "float32" or "bfloat16" (autocast): `auto` takes bfloat16 on a CUDA GPU that has it."""
    if choice != "auto":
        return choice
    return "bfloat16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "float32"


def make_optimizer(module: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    # Decay matrices (weights, embeddings) but not biases and norm gains, as is usual for transformers.
    params = [p for p in module.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel updates every parameter in one pass (CPU and CUDA): on this project's CPU, timed side by
    # side with the foreach kernels, it took nanoGPT's CPU shape from 45 % to 54 % of the matmul peak.
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type in ("cpu", "cuda"))
