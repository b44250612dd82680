"""REINFORCE fine-tuning of a sequence run against a reward, held near where it started by a KL penalty.

    for each step:
        draw `batch` continuations of the prompts from the policy (temperature 1)
        r_i     = reward(text_i)                                  (genlab.rl.rewards)
        kl_i    = sum_t [log pi(y_t) - log pi_start(y_t)]        (a one-sample estimate of KL(pi || pi_start))
        A_i     = r_i - kl * kl_i - baseline                      (baseline: a moving average of r - kl * kl)
        loss    = - mean_i A_i * sum_t log pi(y_t)               (Williams 1992)

The policy starts as the run's model; the start model stays frozen beside it. The result is a run folder
like any other (the start run's config, tokenizer and data, new weights), so sample, eval, compare and serve
work on it. metrics.jsonl gets the mean reward and KL every `eval_every` steps, and rl.png plots both.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from genlab.api import load
from genlab.core.config import Count, NonNegative, Positive, PositiveFloat, Probability, Section
from genlab.core.errors import GenlabError
from genlab.core.folders import claim
from genlab.core.generators import SamplingParams
from genlab.core.progress import progress_bar
from genlab.core.runs import RunDir, save_tensors
from genlab.core.weights import weights_of
from genlab.media.plots import new_figure, save_figure
from genlab.rl.rewards import load_reward
from genlab.sampling.engine import Request, decode
from genlab.training.runlog import RunLog
from genlab.tasks.sequence import SequenceGenerator


class RLConfig(Section):
    reward: str
    reward_options: dict[str, str] = {}
    steps: Positive = 200
    batch: Positive = 8
    max_new_tokens: Positive = 64
    kl: NonNegative = 0.1  # weight of the KL penalty to the start model
    lr: PositiveFloat = 1e-4
    baseline_decay: Probability = 0.9
    eval_every: Positive = 10
    seed: Count = 0
    prompts: tuple[str, ...] = ()  # cycled through the batch; the problems' prompts for code-passes
    log: tuple[str, ...] = ()  # experiment trackers that get every row too (tensorboard, mlflow)


def sequence_logprobs(model, prompt: list[int], tokens: list[int], device) -> torch.Tensor:
    """log p(tokens | prompt) of each generated token, (len(tokens),), with gradients where the model has them."""
    ids = torch.tensor([prompt + tokens], device=device)
    logits = model(ids[:, :-1])[0, len(prompt) - 1:]  # the positions that predict the generated tokens
    return F.log_softmax(logits.float(), -1).gather(1, ids[0, len(prompt):, None])[:, 0]


def copy_run(start: Path, out: Path) -> None:
    """The start run's config, tokenizer and token store in a new run folder (files hard-linked where the
    file system allows, else copied); the weights are written by the caller."""
    if claim(out, "run"):
        raise GenlabError(f"--out {out}: already a run; choose a new folder for the fine-tuned run")
    for name in ("config.toml", "tokenizer.json"):
        shutil.copy2(start / name, out / name)
    (out / "data").mkdir()
    for f in (start / "data").iterdir():
        if f.is_file():
            try:
                os.link(f, out / "data" / f.name)
            except OSError:
                shutil.copy2(f, out / "data" / f.name)


def plot_rl(rows: list[dict], dest: Path) -> None:
    fig, ax = new_figure(8, 4)
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["reward"] for r in rows], marker="o", color="tab:green", label="mean reward")
    ax.set_xlabel("step")
    ax.set_ylabel("mean reward")
    other = ax.twinx()
    other.plot(steps, [r["kl"] for r in rows], marker="s", color="tab:red", label="KL to the start model")
    other.set_ylabel("KL (nats per sequence)")
    lines = ax.get_lines() + other.get_lines()
    ax.legend(lines, [line.get_label() for line in lines], loc="upper left")
    save_figure(fig, dest)


def reinforce(start: Path | str, out: Path | str, cfg: RLConfig, device: str = "auto", progress: bool = True) -> dict:
    """Fine-tune the run at `start` into a new run at `out`; returns the first and last logged rows.

    Its own loop, not the Trainer's: a step is rollouts drawn by the step engine, scored by a reward, then one
    policy-gradient update against a frozen reference; there is no batch iterator to checkpoint or val split to
    score. It records through the Trainer's run log (metrics.jsonl, trackers) and writes safetensors weights."""
    # Long on purpose: one REINFORCE loop (draw, score, update, log) read top to bottom.
    start, out = Path(start), Path(out)
    gen = load(start, device=device)
    if not isinstance(gen, SequenceGenerator) or gen.modality not in ("text", "code"):  # not a remote: model
        raise GenlabError(f"{start}: genlab rl fine-tunes text and code runs")
    reward = load_reward(cfg.reward)
    policy, device = gen.model, gen.device
    reference = copy.deepcopy(policy).eval()
    for p in reference.parameters():
        p.requires_grad_(False)
    prompts = list(cfg.prompts) or [gen.config.sample.prompt]
    encoded = [gen.encode_prompt(p) for p in prompts]
    limit = getattr(policy, "max_context", None)
    if limit is not None and max(map(len, encoded)) + cfg.max_new_tokens > limit:
        raise GenlabError(f"--max-new-tokens: a prompt plus {cfg.max_new_tokens} tokens exceeds the model's context ({limit})")
    stops = gen.default_stop()
    copy_run(start, out)
    torch.manual_seed(cfg.seed)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=0.0)
    baseline, rows, logged = None, [], {"reward": [], "kl": []}
    t0 = time.perf_counter()
    log = RunLog(RunDir(out), True, list(cfg.log), {"rl": cfg.model_dump(mode="json"), "start": str(start)}, resumed_at=None)
    for step in progress_bar(range(1, cfg.steps + 1), desc="rl", unit="step", enabled=progress):
        which = [(step * cfg.batch + i) % len(prompts) for i in range(cfg.batch)]
        policy.eval()  # drawing: no dropout
        engine = gen.engine()
        d = SamplingParams(max_new_tokens=cfg.max_new_tokens, temperature=1.0, top_k=0, top_p=1.0)
        slots = decode(engine, [Request(encoded[w], d, seed=cfg.seed * 1_000_003 + step * cfg.batch + i, stop=stops)
                                for i, w in enumerate(which)])
        tokens = [engine.tokens(s) for s in slots]
        texts = [engine.text(s) for s in slots]  # up to the run's stop strings (code: where the function ends)
        rewards = torch.tensor(reward(texts, [prompts[w] for w in which], **cfg.reward_options), dtype=torch.float32)
        # Scored in eval mode too (no dropout): the log-probabilities of the distribution the tokens came from.
        logps = [sequence_logprobs(policy, encoded[w], t, device) for w, t in zip(which, tokens)]
        with torch.no_grad():
            kls = torch.stack([(lp.detach() - sequence_logprobs(reference, encoded[w], t, device)).sum()
                               for lp, w, t in zip(logps, which, tokens)]).cpu()
        shaped = rewards - cfg.kl * kls
        baseline = float(shaped.mean()) if baseline is None else cfg.baseline_decay * baseline + (1 - cfg.baseline_decay) * float(shaped.mean())
        advantages = (shaped - baseline).to(device)
        loss = -torch.stack([a * lp.sum() for a, lp in zip(advantages, logps)]).mean()
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 1.0)
        optimizer.step()
        logged["reward"].append(float(rewards.mean()))
        logged["kl"].append(float(kls.mean()))
        if step % cfg.eval_every == 0 or step == cfg.steps or step == 1:
            row = {"step": step, "elapsed": round(time.perf_counter() - t0, 3),
                   "reward": sum(logged["reward"]) / len(logged["reward"]), "kl": sum(logged["kl"]) / len(logged["kl"])}
            logged = {"reward": [], "kl": []}
            rows.append(row)
            log.write(row)
    policy.eval()
    save_tensors(out / "model.safetensors", weights_of({"model": policy}))
    plot_rl(rows, out / "rl.png")
    summary = {"start": str(start), "reward": cfg.reward, "first": rows[0], "last": rows[-1], "steps": cfg.steps}
    (out / "rl.json").write_text(json.dumps(summary, indent=2))
    log.finish()
    return summary
