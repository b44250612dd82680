"""`genlab sweep TASK`: search config fields with Optuna; each trial an ordinary run folder."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads
from genlab.cli.train import trackers


@app.command(no_args_is_help=True)
def sweep(
    task: str = typer.Argument(..., help="What to model: text, code, music, audio or image."),
    space: list[str] = typer.Option([], "--space", help="A field to search: model.n_embd=128,256 (choices) or train.lr=1e-4..3e-3:log (a range; :log for a log scale). Repeatable."),
    space_file: Optional[Path] = typer.Option(None, "--space-file", help="A TOML file whose [space] table holds FIELD = \"VALUES\" items."),
    trials: int = typer.Option(10, "--trials", help="Trials in the study (those already finished in --out count)."),
    max_time: Optional[float] = typer.Option(None, "--max-time", help="Seconds of training per trial."),
    study_time: Optional[float] = typer.Option(None, "--study-time", help="Stop starting trials after this many seconds."),
    pruner: str = typer.Option("median", "--pruner", help="Stop trials whose val loss lags: median, hyperband or none."),
    out: Path = typer.Option(Path("runs/sweep"), "--out", help="The study (study.db), one run folder per trial, sweep.json and sweep.png."),
    data: Optional[str] = typer.Option(None, "--data", help="Training data, the same for every trial."),
    model: Optional[str] = typer.Option(None, "--model", help="Model family, the same for every trial."),
    max_steps: Optional[int] = typer.Option(None, "--max-steps", help="Optimizer steps per trial."),
    config: Optional[Path] = typer.Option(None, "--config", help="A TOML run config every trial starts from."),
    set_: list[str] = typer.Option([], "--set", help="A config field fixed for every trial (repeatable)."),
    log: Optional[str] = typer.Option(None, "--log", help="Log every trial to tensorboard, mlflow or both."),
    seed: int = typer.Option(0, "--seed", help="Seed of the search (Optuna's TPE sampler)."),
    sampler: str = typer.Option("tpe", "--sampler", help="How trials pick values: tpe (Optuna's model of what does well) or grid (every combination of the choices once)."),
    recipe: Optional[Path] = typer.Option(None, "--recipe", help="Write the best trial's config here as a recipe (genlab train TASK --config FILE)."),
    quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    threads: str = threads_option(),
) -> None:
    """Search hyper-parameters with Optuna: each trial trains an ordinary run with its values, reports every eval's
    val loss (pruned when it lags), and the study ends with a table, sweep.json and a plot. Run it again to go on."""
    use_threads(threads)
    from genlab.core.errors import GenlabError, check_range
    from genlab.workflows.sweep import format_table, read_space, write_recipe
    from genlab.workflows.sweep import sweep as run_sweep

    check_range("--trials", trials, 1, 10_000)
    items = [*space, *(read_space(space_file) if space_file else [])]
    flags = dict(data=data, model=model, max_steps=max_steps, max_time=max_time, log=trackers(log))
    if recipe is not None and recipe.suffix != ".toml":
        raise GenlabError(f"--recipe {recipe}: a recipe is a .toml file")
    summary = run_sweep(task, out, items, trials, flags, set_, config, pruner, study_time, progress=not quiet, seed=seed,
                        sampler=sampler)
    print(format_table(summary))
    print(f"wrote {out / 'sweep.json'} and {out / 'sweep.png'}")
    if recipe is not None:
        print(f"wrote {write_recipe(summary, recipe)}: genlab train {task} --config {recipe} --out runs/NAME")
