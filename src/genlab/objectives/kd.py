"""Knowledge distillation (Hinton et al. 2015), with an optional adversarial critic.

    loss = alpha * CE(student, data) + (1 - alpha) * T^2 * KL(softmax(teacher / T) || softmax(student / T))
           [+ adv_weight * softplus(-critic(student's draws))]

The teacher's logits come from the teacher model on the same windows, on the
fly, under no_grad. Softened by T, the teacher's distribution says which
wrong tokens are nearly right; T^2 keeps the soft term's gradients at the
scale of the hard one's as T changes.

The critic (adv_weight > 0) is a small convolutional network over token
embeddings that tells real windows from windows whose every token the
student drew given the real prefix. Its signal reaches the student through
the Gumbel-softmax relaxation (Jang et al. 2017) with the straight-through
estimator: the critic reads a one-hot draw, and the gradient flows through
the soft sample of the student's distribution. Why not a policy gradient:
the relaxation gives a gradient for every vocabulary entry at every position
from one draw, where REINFORCE gives one noisy scalar per sequence, and with
the teacher-forced prefix there is no free-running rollout to pay for (see
docs/distill.md). The Gumbel noise comes from the objective's own generator,
so a run with adv_weight = 0 makes exactly the student updates of plain
distillation, critic or not; the critic's weights and that generator are
part of the checkpoint.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def topk_distillation_loss(student: torch.Tensor, values: torch.Tensor, indices: torch.Tensor, temperature: float) -> torch.Tensor:
    """The soft term from a cache of the teacher's k largest logits: the teacher's distribution renormalized over
    those k tokens, the student's log-probabilities (over the whole vocabulary) at them. student (B, T, V);
    values, indices (B, T, k)."""
    p = F.softmax(values.float() / temperature, dim=-1)  # (B, T, k)
    log_q = F.log_softmax(student.float() / temperature, dim=-1).gather(-1, indices.long())  # (B, T, k)
    return (p * (p.clamp_min(1e-30).log() - log_q)).sum(-1).mean() * temperature ** 2


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float) -> torch.Tensor:
    """T^2 * KL(softmax(teacher/T) || softmax(student/T)), mean over positions. logits (B, T, V) each."""
    t = F.log_softmax(teacher.float() / temperature, dim=-1).flatten(0, 1)
    s = F.log_softmax(student.float() / temperature, dim=-1).flatten(0, 1)
    return F.kl_div(s, t, log_target=True, reduction="batchmean") * temperature ** 2


class SequenceCritic(nn.Module):
    """(B, T, V) one-hot (or relaxed) tokens -> (B,) logits: real text high, the student's draws low."""

    def __init__(self, vocab_size: int, width: int = 64):
        super().__init__()
        self.embed = nn.Linear(vocab_size, width, bias=False)  # a one-hot row picks an embedding; a soft row mixes them
        self.convs = nn.Sequential(nn.Conv1d(width, width, 5, padding=2), nn.LeakyReLU(0.2),
                                   nn.Conv1d(width, width, 5, padding=4, dilation=2), nn.LeakyReLU(0.2))
        self.head = nn.Linear(width, 1)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        h = self.convs(self.embed(tokens).transpose(1, 2))  # (B, width, T)
        return self.head(h.mean(dim=2)).squeeze(1)


class Distillation:
    def __init__(self, model: nn.Module, teacher: nn.Module, alpha: float, temperature: float, forward=None,
                 adv_weight: float = 0.0, critic: SequenceCritic | None = None, seed: int = 0):
        self.model, self.teacher = model, teacher.eval() if teacher is not None else None  # None: a top-k cache
        self.forward = forward or model
        self.alpha, self.temperature, self.adv_weight = alpha, temperature, adv_weight
        self.critic = critic
        self.modules = {"model": model}  # the run's weights: the student alone (sample, eval, serve read them)
        self.players = {"critic": critic, "model": model} if critic is not None else {"model": model}
        self.noise = torch.Generator().manual_seed(seed + 7)  # Gumbel noise, apart from the global generator

    def losses(self, batch):
        x, y = batch[:2]  # (B, T) inputs and next-token targets [, the cached teacher's (values, indices) (B, T, k)]
        logits = self.forward(x)  # (B, T, V)
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), y.reshape(-1), ignore_index=-1)
        if len(batch) == 4:
            kd = topk_distillation_loss(logits, batch[2].to(logits.device), batch[3].to(logits.device), self.temperature)
        else:
            with torch.no_grad():
                teacher = self.teacher(x)
            kd = distillation_loss(logits, teacher, self.temperature)
        loss = self.alpha * ce + (1 - self.alpha) * kd
        logs = {"ce": ce.item(), "kd": kd.item()}
        if self.critic is not None:
            real = F.one_hot(y.clamp(min=0), logits.size(-1)).float()  # (B, T, V)
            fake = self.gumbel_draw(logits)  # (B, T, V) one-hot forward, soft backward
            d_loss = F.softplus(-self.critic(real)).mean() + F.softplus(self.critic(fake.detach())).mean()
            yield "critic", d_loss, {"critic_loss": d_loss.item()}
            frozen = [p for p in self.critic.parameters() if p.requires_grad]
            for p in frozen:  # the critic has stepped: no stale gradient for it from the student's loss
                p.requires_grad_(False)
            try:
                adv = F.softplus(-self.critic(fake)).mean()
                loss = loss + self.adv_weight * adv
                logs["adv"] = adv.item()
            finally:
                for p in frozen:
                    p.requires_grad_(True)
        yield "model", loss, {"loss": loss.item(), **logs}

    def gumbel_draw(self, logits: torch.Tensor, tau: float = 1.0) -> torch.Tensor:
        u = torch.rand(logits.shape, generator=self.noise).to(logits.device).clamp(1e-10, 1 - 1e-10)
        soft = ((logits.float() - torch.log(-torch.log(u))) / tau).softmax(-1)
        hard = F.one_hot(soft.argmax(-1), logits.size(-1)).float()
        return hard + soft - soft.detach()  # straight through: the value of hard, the gradient of soft

    def state_dict(self) -> dict[str, torch.Tensor]:
        if self.critic is None:
            return {}
        return {**{f"critic.{k}": v.detach().cpu() for k, v in self.critic.state_dict().items()},
                "gumbel_generator": self.noise.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if self.critic is None or not state:
            return
        self.critic.load_state_dict({k.removeprefix("critic."): v for k, v in state.items() if k.startswith("critic.")})
        self.noise.set_state(state["gumbel_generator"])
