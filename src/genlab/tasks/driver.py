"""The task protocol, and the one training driver every modality goes through.

A modality is one module in genlab.tasks, registered in `tasks.TASKS`, whose `TASK` object supplies:

    name                                  "text", "code", "music", "audio", "image"
    compiles                              whether `train.compile` applies (torch.compile of the training forward)
    defaults(config) -> config            what the modality decides when the user left it unset (data source,
                                          tokenizer kind, family defaults); refuses a model of another modality
    prepare(config, run, resume, progress) -> data
                                          its data under run.data (tokenizer + token store, decoded images):
                                          built once by rank 0, reused on resume
    reopen(config, run) -> data           the prepared data, read by the other ranks under torchrun
    build_model(config, data) -> module   a family from its spec (genlab.core.families)
    training(config, run, data, model, device) -> Training
                                          objective, batches, and the eval and sample hooks
    Generator                             the class `genlab.load(run)` returns: generate(...) -> list of typed
                                          samples (genlab.core.samples), evaluate(...) -> dict of metrics

`train_task` does the rest, the same for every modality: the run folder (genlab.core.folders: only a folder
genlab marked as a run is resumed or replaced), the rank-0 guard, `train.init_from`, the Trainer with its
checkpoints and exact resume. Adding a modality is one new module with a TASK, plus its families in
`genlab.families` (docs/architecture.md walks through it).
"""

from __future__ import annotations

import sys

from dataclasses import dataclass
from typing import Callable, Protocol

import torch

from genlab.core.cards import write_card
from genlab.core.config import RunConfig, load_config, save_config
from genlab.core.errors import GenlabError
from genlab.core.families import family_of
from genlab.core.folders import claim, empty
from genlab.core.runs import RunDir, load_tensors, save_tensors
from genlab.core.threads import use
from genlab.core.weights import check_shapes, load_weights, weights_of
from genlab.tasks import task_of
from genlab.training import distributed
from genlab.training.distributed import pick_device
from genlab.training.trainer import Trainer


@dataclass
class Training:
    """What a task hands the trainer."""

    objective: object  # genlab.objectives: modules, players, losses(batch)
    batches: object  # an endless iterator of batches with state_dict() (genlab.datasets.batches)
    # Held-out metrics: on eval_batches batches at every eval, on the whole split (full=True) at the end.
    evaluate: Callable[..., dict] | None = None
    write_samples: Callable[[int, dict], None] | None = None  # (step, weights to sample with) -> files in samples/
    items_per_batch: int = 1  # tokens or images per batch, for the throughput figure
    item_name: str = "tok"
    select_metric: str = "val_loss"  # the eval result (lower is better) that picks the weights kept
    # evaluate(full, weights=...) is handed the weights samples are drawn with (a GAN is judged by its samples:
    # with train.ema_decay, those of the average) at every periodic eval
    evaluate_takes_weights: bool = False


class Task(Protocol):
    name: str
    compiles: bool
    Generator: type

    def defaults(self, config: RunConfig) -> RunConfig: ...
    def prepare(self, config: RunConfig, run: RunDir, resume: bool, progress: bool): ...
    def reopen(self, config: RunConfig, run: RunDir): ...
    def build_model(self, config: RunConfig, data) -> torch.nn.Module: ...
    def training(self, config: RunConfig, run: RunDir, data, model: torch.nn.Module, device: torch.device) -> Training: ...


# Fields that may change between a run and its resumption: budgets, display, trackers, threads, compilation, the precision
# of the arithmetic (weights and optimizer state stay float32 under autocast: a run begun on a CPU may go on in
# bf16 on a GPU) and how ranks share the model (a checkpoint holds whole tensors under DDP and FSDP alike).
_RESUMABLE = {("train", "max_steps"), ("train", "max_time"), ("train", "patience"), ("train", "progress"),
              ("train", "threads"), ("train", "shard"), ("train", "compile"), ("train", "dtype"), ("train", "log")}


def _comparable(config: RunConfig) -> dict:
    d = config.model_dump()
    d.pop("out")
    for section, key in _RESUMABLE:
        d[section].pop(key)
    return d


def open_run(config: RunConfig, overwrite: bool) -> tuple[RunDir, bool]:
    """The run directory for `config`, and whether to resume what it holds.

    Only a folder genlab marked as a run is resumed or replaced (genlab.core.folders); a marked run that
    never reached its first checkpoint is emptied and started again."""
    run = RunDir(config.out)
    if claim(run.path, "run", overwrite=overwrite, inputs=[config.data.source, config.train.init_from]):
        if run.latest_checkpoint() is not None and run.config.is_file():
            saved = load_config(run.config)
            if _comparable(saved) != _comparable(config):
                raise GenlabError(f"{run.path}: holds a run with a different config; pass --overwrite or another --out")
            return run, True
        empty(run.path)
    return run, False


def train_task(task: Task, config: RunConfig, progress: bool = True, overwrite: bool = False,
               continuing: bool = False, on_eval=None) -> tuple[RunConfig, dict]:
    """Train (or resume) the run `config` describes with `task`; returns (the resolved config, results).
    `continuing`: the caller goes on from a checkpoint it just made (the demo's before and after), so a
    resume is not announced."""
    config = task.defaults(config)  # before anything is written
    if config.train.compile and not task.compiles:
        raise GenlabError(f"train.compile: the {task.name} task trains without torch.compile (text, code and music use it)")
    if config.train.threads is not None:
        use(config.train.threads, "train.threads")
    torch.manual_seed(config.train.seed)
    w = distributed.world()
    if w.is_main:  # under torchrun, rank 0 alone prepares the run folder; the others read it
        run, resume = open_run(config, overwrite)
        if not resume:  # a resumed run's config is rewritten once its checkpoint has loaded
            save_config(config, run.config)
        data = task.prepare(config, run, resume, progress)
    distributed.barrier(w)
    if not w.is_main:
        run = RunDir(config.out)
        resume, progress = run.latest_checkpoint() is not None, False
        data = task.reopen(config, run)
    model = task.build_model(config, data)
    if config.train.init_from and not resume:
        base = RunDir(config.train.init_from).require()
        load_weights({"model": model}, load_tensors(base.weights), base.weights)
    device = pick_device(config.train.device)
    if family_of(config).can("fit"):  # count-based families (n-gram) are fitted, not trained by gradient
        results = fit_counts(task, config, run, data, model, device)
        write_card(run.path, config, results, sum(p.numel() for p in model.parameters()))
        return config, results
    t = task.training(config, run, data, model, device)
    trainer = Trainer(t.objective, t.batches, config.train, run, t.evaluate, t.write_samples, t.items_per_batch, t.item_name,
                      t.select_metric, run_config=config.model_dump(mode="json"), on_eval=on_eval,
                      evaluate_takes_weights=t.evaluate_takes_weights)
    if resume:
        trainer.load_checkpoint()
        if w.is_main:
            save_config(config, run.config)  # the new budget
        spent, budget = trainer.state.elapsed, config.train.max_time
        if w.is_main and budget and spent >= budget:  # said whatever `progress` is: otherwise nothing happens silently
            print(f"{run.path} has already spent its time budget ({spent:.0f} s trained, --max-time {budget:g}): "
                  "no more steps; give a larger --max-time to train on", file=sys.stderr)
        elif progress and trainer.state.step and not continuing:
            print(f"resuming {run.path} from step {trainer.state.step}")
    results = trainer.fit()
    if w.is_main:
        write_card(run.path, config, results, sum(p.numel() for p in model.parameters()))
    return config, results


def load_trained(run_dir, device: str = "auto"):
    """What a Generator needs from a finished run: (run, config, its data as the task reopens it, the model with
    its saved weights on `device`, the device)."""
    run = RunDir(run_dir).require()
    config = load_config(run.config)
    task = task_of(config.task)
    data = task.reopen(config, run)
    dev = pick_device(device)
    try:
        with torch.device("meta"):  # the config's shapes without their memory, checked against the weights first
            planned = task.build_model(config, data)
    except Exception:  # noqa: BLE001 - a family that cannot be built there is checked as it loads
        planned = None
    if planned is not None:
        check_shapes({"model": planned}, run.weights, run.config)
    model = task.build_model(config, data)
    load_weights({"model": model}, load_tensors(run.weights), run.weights)
    return run, config, data, model.to(dev).eval(), dev


def fit_counts(task: Task, config: RunConfig, run: RunDir, data, model, device) -> dict:
    """Fit a count-based model on the training split in one pass; weights and one metrics row, no checkpoint."""
    import json
    import time

    started = time.perf_counter()
    t = task.training(config, run, data, model, device)
    model.fit(t.batches.tokens)
    save_tensors(run.weights, weights_of({"model": model}))
    results = {"step": 0, "elapsed": round(time.perf_counter() - started, 3)}
    results |= t.evaluate() if t.evaluate else {}
    with open(run.metrics, "a") as f:
        f.write(json.dumps(results) + "\n")
    return results
