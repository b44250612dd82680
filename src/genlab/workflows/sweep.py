"""`genlab sweep`: a hyper-parameter search with Optuna over run config fields; each trial an ordinary run.

A space is `FIELD=VALUES`: `model.n_embd=128,256` (a choice), `train.lr=1e-4..3e-3` (a range; whole numbers at
both ends make an integer range) and `:log` after a range for a log scale; or the same as a TOML table
(`[space]`, `"train.lr" = "1e-4..3e-3:log"`). Trials report each eval's val loss (a GAN's FID) to Optuna, which
prunes those behind the others (median or Hyperband). The study lives in OUT/study.db: a stopped sweep run
again goes on with the trials it has not finished (an interrupted one is tried again with its parameters).
"""

from __future__ import annotations

import json
import math
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

import tomli_w

from genlab.api import train
from genlab.core.config import build_config, parse_set
from genlab.core.errors import GenlabError, Interrupted
from genlab.core.files import atomic_write_json, atomic_write_text, read_text_file
from genlab.core.folders import claim
from genlab.media.plots import new_figure, save_figure

PRUNERS = ("median", "hyperband", "none")


@dataclass
class Dimension:
    field: str
    choices: list | None = None  # a choice among these, or a range:
    low: float | None = None
    high: float | None = None
    log: bool = False
    integer: bool = False

    def suggest(self, trial):
        if self.choices is not None:
            return trial.suggest_categorical(self.field, self.choices)
        if self.integer:
            return trial.suggest_int(self.field, int(self.low), int(self.high), log=self.log)
        return trial.suggest_float(self.field, self.low, self.high, log=self.log)


def parse_dimension(item: str) -> Dimension:
    """`FIELD=a,b,c`, `FIELD=lo..hi` or `FIELD=lo..hi:log` -> a Dimension (one-line errors naming the item)."""
    field, _, raw = (part.strip() for part in item.partition("="))
    if not field or not raw:
        raise GenlabError(f"--space {item!r}: expected FIELD=a,b,c or FIELD=low..high[:log]")
    log = raw.endswith(":log")
    body = raw.removesuffix(":log")
    if ".." in body:
        low_text, high_text = body.split("..", 1)
        try:
            low, high = (parse_set(f"v={t.strip()}")[1] for t in (low_text, high_text))
        except GenlabError:
            low = high = None
        if (not all(isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in (low, high))
                or not low < high):
            raise GenlabError(f"--space {item!r}: a range is two finite numbers, low..high, low below high")
        if log and low <= 0:
            raise GenlabError(f"--space {item!r}: a log range must start above 0")
        return Dimension(field, low=low, high=high, log=log, integer=isinstance(low, int) and isinstance(high, int))
    if log:
        raise GenlabError(f"--space {item!r}: :log applies to a range (low..high)")
    choices = [parse_set(f"v={v.strip()}")[1] for v in body.split(",") if v.strip()]
    if len(choices) < 2:
        raise GenlabError(f"--space {item!r}: give two or more choices, or a range")
    return Dimension(field, choices=choices)


def read_space(path: Path) -> list[str]:
    """A TOML file's [space] table as FIELD=VALUES items."""
    try:
        table = tomllib.loads(read_text_file(path)).get("space", {})
    except GenlabError as e:
        raise GenlabError(f"--space-file {e}") from None
    except (tomllib.TOMLDecodeError, RecursionError) as e:
        raise GenlabError(f"--space-file {path}: not a readable TOML file ({e})") from None
    if not table:
        raise GenlabError(f"--space-file {path}: no [space] table")
    return [f"{k}={','.join(map(str, v)) if isinstance(v, list) else v}" for k, v in table.items()]


def make_pruner(name: str):
    import optuna

    if name not in PRUNERS:
        raise GenlabError(f"--pruner: {name!r} is not one of {', '.join(PRUNERS)}")
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner()
    return optuna.pruners.NopPruner()


def sweep(task: str, out: Path, space: list[str], trials: int, flags: dict, sets: list[str], config_file: Path | None = None,
          pruner: str = "median", study_time: float | None = None, progress: bool = True, seed: int = 0,
          sampler: str = "tpe") -> dict:
    """Run (or go on with) the study in `out`; returns its summary (also OUT/sweep.json)."""
    # Long on purpose: the checks, the study, its objective (a closure over both) and resuming, in the order they run.
    import optuna

    dims = [parse_dimension(item) for item in space]
    if not dims:
        raise GenlabError("--space: give at least one FIELD=VALUES to search")
    if len({d.field for d in dims}) < len(dims):
        raise GenlabError("--space: a field is given twice")
    for d in dims:  # refuse bad flags and fields now, not as every trial failing (each end of a range is checked)
        for value in d.choices or (d.low, d.high):
            build_config(config_file, {**flags, "out": str(out / "check")}, [*sets, f"{d.field}={json.dumps(value)}"],
                         base={"task": task})
    search = make_sampler(sampler, dims, seed)
    claim(out, "sweep")
    optuna.logging.set_verbosity(optuna.logging.ERROR)  # a failed trial is said in one line below, not a traceback
    study = optuna.create_study(study_name="genlab", storage=f"sqlite:///{out / 'study.db'}", load_if_exists=True,
                                direction="minimize", pruner=make_pruner(pruner),
                                sampler=search)
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # stopped mid-trial: tried again below
        study.enqueue_trial(stale.params)
    done = [t for t in study.trials if t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)]
    metric = {"name": None}

    def objective(trial) -> float:
        overrides = [f"{d.field}={json.dumps(d.suggest(trial))}" for d in dims]
        run_out = out / f"trial-{trial.number:03d}"
        cfg = build_config(config_file, {**flags, "out": str(run_out)}, [*sets, *overrides], base={"task": task})
        cfg.train.progress = progress  # --quiet: no bars, and no per-eval lines either
        if progress:
            print(f"trial {trial.number}: {', '.join(f'{k}={v}' for k, v in trial.params.items())}", flush=True)

        def report(step: int, results: dict) -> None:
            key = "fid_genlab_features" if "fid_genlab_features" in results else "val_loss"
            if key in results:
                metric["name"] = key
                trial.report(results[key], step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"step {step}: {key} {results[key]:.4f}")

        try:
            run = train(cfg, progress=progress, overwrite=True, on_eval=report)
        except GenlabError as e:
            if not any(t.state == optuna.trial.TrialState.COMPLETE for t in study.trials):
                raise SetupError(f"trial {trial.number}: {e}") from None  # bad data or flags: every trial would fail so
            print(f"trial {trial.number} failed: {e}", file=sys.stderr, flush=True)
            raise
        key = metric["name"] or "val_loss"
        value = run.results.get(key)
        if value is None or not math.isfinite(value):
            raise GenlabError(f"trial {trial.number}: no {key} to score it by (give the run a validation split)")
        trial.set_user_attr("run", str(run_out))
        return float(value)

    left = max(0, trials - len(done))
    if left:
        try:
            study.optimize(objective, n_trials=left, timeout=study_time, catch=(GenlabError,))
        except SetupError as e:
            raise GenlabError(str(e)) from None
        except KeyboardInterrupt:
            raise Interrupted(f"sweep stopped: {out / 'study.db'} keeps its trials; run the same command to go on", 2) from None
    return summarize(study, dims, out)


class SetupError(Exception):
    """A first trial's error that every trial would meet (the data, a flag): the sweep stops on it."""


def make_sampler(name: str, dims: list[Dimension], seed: int):
    """Optuna's TPE (a model of which values do well), or every combination of the choices once (`grid`)."""
    import optuna

    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed)
    if name != "grid":
        raise GenlabError(f"--sampler {name}: choose tpe or grid")
    ranged = [d.field for d in dims if d.choices is None]
    if ranged:
        raise GenlabError(f"--sampler grid: {ranged[0]} is a range; a grid takes lists of choices (FIELD=a,b,c)")
    return optuna.samplers.GridSampler({d.field: list(d.choices) for d in dims}, seed=seed)


def write_recipe(summary: dict, dest: Path) -> Path:
    """The best trial's resolved config as a recipe (`genlab train TASK --config DEST --out ...`): everything but
    its run folder, headed by what found it."""
    best = summary["best"]
    if best is None:
        raise GenlabError(f"--recipe {dest}: no trial finished, so there is no best to write")
    tree = tomllib.loads((Path(best["run"]) / "config.toml").read_text())
    tree.pop("out", None)
    searched = ", ".join(f"{k} = {v}" for k, v in best["params"].items())
    header = (f"# The best of {len(summary['trials'])} trials of `genlab sweep` ({time.strftime('%Y-%m-%d')}): "
              f"val {best['value']:.4f} with {searched}.\n# Train it: genlab train {tree.get('task', 'text')} "
              f"--config {Path(dest).name} --out runs/NAME\n")
    atomic_write_text(Path(dest), header + tomli_w.dumps(tree))
    return Path(dest)


def summarize(study, dims: list[Dimension], out: Path) -> dict:
    import optuna

    rows = [{"trial": t.number, "state": t.state.name.lower(), "value": t.value, **t.params,
             "run": t.user_attrs.get("run", str(out / f"trial-{t.number:03d}"))} for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = min(complete, key=lambda t: t.value) if complete else None
    summary = {"trials": rows, "best": {"trial": best.number, "value": best.value, "params": best.params,
                                        "run": best.user_attrs.get("run")} if best else None}
    atomic_write_json(out / "sweep.json", summary)
    plot_study(study, dims, out / "sweep.png")
    return summary


def plot_study(study, dims: list[Dimension], dest: Path) -> None:
    """The value of each trial in order (with the best so far), and the value against each searched field."""
    import optuna

    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    figure, axes = new_figure(4 * (1 + len(dims)), 3.2, columns=1 + len(dims))
    xs, ys = [t.number for t in complete], [t.value for t in complete]
    axes[0].plot(xs, ys, "o", label="trial")
    axes[0].plot(xs, [min(ys[: i + 1]) for i in range(len(ys))], "-", label="best so far")
    axes[0].set_xlabel("trial")
    axes[0].set_ylabel("objective (lower is better)")
    axes[0].legend()
    for ax, d in zip(axes[1:], dims):
        values = [t.params.get(d.field) for t in complete]
        ax.plot([str(v) for v in values] if d.choices is not None else values, ys, "o")
        if d.log:
            ax.set_xscale("log")
        ax.set_xlabel(d.field)
    save_figure(figure, dest)


def format_table(summary: dict) -> str:
    rows = summary["trials"]
    if not rows:
        return "(no trials)"
    keys = [k for k in rows[0] if k != "run"]
    shown = [[f"{r.get(k):.4g}" if isinstance(r.get(k), float) else str(r.get(k)) for k in keys] for r in rows]
    widths = [max(len(k), *(len(s[i]) for s in shown)) for i, k in enumerate(keys)]
    lines = ["  ".join(k.ljust(w) for k, w in zip(keys, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(s, widths)) for s in shown]
    if summary["best"]:
        lines.append(f"best: trial {summary['best']['trial']} ({summary['best']['value']:.4f}) in {summary['best']['run']}")
    return "\n".join(lines)
