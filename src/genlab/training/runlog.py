"""What a run records as it trains: metrics.jsonl (every row), loss.png, and, where `train.log` asks, the same
rows in TensorBoard and MLflow through their own libraries, with the samples of each eval and the resolved config.

Only rank 0 writes. A resumed run goes on where its checkpoint was: metrics.jsonl is cut back to it, TensorBoard
is told to drop what it had past that step (purge_step), and MLflow continues the same run (its id is kept in
the run folder).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_text
from genlab.core.runs import RunDir
from genlab.media.plots import plot_losses

# loss.png is redrawn at most this often during training (drawing costs ~0.25 s), and always at the end.
PLOT_EVERY_SECONDS = 30.0
TRACKERS = ("tensorboard", "mlflow")
MLFLOW_RUN_ID = "mlflow_run_id.txt"  # in the run folder: a resumed run logs to the same MLflow run


def flat(tree: dict, prefix: str = "") -> dict:
    """{"train": {"lr": 1e-3}} -> {"train.lr": 1e-3}; lists and None as text (what trackers take as hyper-parameters)."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value if isinstance(value, (int, float, str, bool)) else str(value)
    return out


def scalars(row: dict) -> dict[str, float]:
    """The numbers of a metrics row (step aside): what trackers plot."""
    return {k: float(v) for k, v in row.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


class TensorBoard:
    def __init__(self, run: RunDir, config: dict, resumed_at: int | None):
        from torch.utils.tensorboard import SummaryWriter

        # purge_step: TensorBoard hides what an earlier process logged past the checkpoint (it is logged again).
        self.writer = SummaryWriter(log_dir=str(run.path / "tensorboard"),
                                    purge_step=resumed_at + 1 if resumed_at is not None else None)
        if resumed_at is None:
            from torch.utils.tensorboard.summary import hparams

            for summary in hparams(flat(config), {}):
                self.writer.file_writer.add_summary(summary)
            self.writer.add_text("config", "```\n" + json.dumps(config, indent=2) + "\n```", 0)

    def row(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self.writer.add_scalar(key, value, step)

    def sample(self, step: int, path: Path) -> None:
        suffix = path.suffix.lower()
        tag = "samples/" + path.stem.rsplit("_", 1)[0]
        if suffix == ".txt":
            self.writer.add_text(tag, path.read_text(errors="replace"), step)
        elif suffix == ".png":
            import numpy as np
            from PIL import Image

            self.writer.add_image(tag, np.asarray(Image.open(path).convert("RGB")), step, dataformats="HWC")
        elif suffix == ".wav":
            import soundfile

            audio, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
            self.writer.add_audio(tag, audio.mean(axis=1), step, sample_rate=rate)

    def finish(self, run: RunDir) -> None:
        self.writer.close()


class MLflow:
    """One MLflow run per genlab run: in $MLFLOW_TRACKING_URI, or a local store beside the run folder
    (PARENT/mlflow.db, artifacts in PARENT/mlartifacts: `mlflow ui --backend-store-uri sqlite:///PARENT/mlflow.db`)."""

    def __init__(self, run: RunDir, config: dict, resumed_at: int | None):
        import logging

        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # its database set-up is not the user's business
        parent = run.path.resolve().parent
        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{parent / 'mlflow.db'}"
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "genlab")
        experiment = self.client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(
            name, artifact_location=None if "MLFLOW_TRACKING_URI" in os.environ else (parent / "mlartifacts").as_uri())
        kept = run.path / MLFLOW_RUN_ID
        if resumed_at is not None and kept.is_file():
            self.run_id = kept.read_text().strip()
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(experiment_id, run_name=run.path.name).info.run_id
            atomic_write_text(kept, self.run_id + "\n")
            for key, value in flat(config).items():
                self.client.log_param(self.run_id, key, str(value)[:6000])

    def row(self, step: int, values: dict[str, float]) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        metrics = [Metric(key.replace("/", "_"), value, now, step) for key, value in values.items()]
        if metrics:
            self.client.log_batch(self.run_id, metrics=metrics)

    def sample(self, step: int, path: Path) -> None:
        self.client.log_artifact(self.run_id, str(path), "samples")

    def finish(self, run: RunDir) -> None:
        for path in (run.weights, run.config, run.loss_plot, run.path / "README.md"):
            if path.is_file():
                self.client.log_artifact(self.run_id, str(path))
        self.client.set_terminated(self.run_id)


class RunLog:
    def __init__(self, run: RunDir, is_main: bool, trackers: list[str], config: dict, resumed_at: int | None):
        self.run, self.is_main = run, is_main
        self.plotted = time.perf_counter()  # when loss.png was last drawn (first: 30 s in, or at the end)
        made = {"tensorboard": TensorBoard, "mlflow": MLflow}
        self.trackers = []
        for name in trackers if is_main else []:
            try:  # each tracker imports its library when asked for: neither is needed to train
                self.trackers.append(made[name](run, config, resumed_at))
            except ModuleNotFoundError as e:
                raise GenlabError(f"train.log: logging to {name} needs the `{e.name}` package (pip install 'genlab[tracking]')") from None
            except Exception as e:  # noqa: BLE001  (a bad tracking URI, a store it cannot open: the library's own errors)
                detail = (str(e).strip().splitlines() or [""])[0][:200]
                raise GenlabError(f"train.log: {name} cannot log there ({type(e).__name__}: {detail})") from None

    def write(self, row: dict) -> None:
        """One row: to metrics.jsonl, and its numbers to every tracker."""
        if not self.is_main:
            return
        with open(self.run.metrics, "a") as f:
            f.write(json.dumps(row) + "\n")
        values = scalars(row)
        for tracker in self.trackers:
            tracker.row(row["step"], values)

    def samples(self, step: int) -> None:
        """The files training wrote for this eval (samples/*_{step:06d}.*) to every tracker."""
        if not self.trackers or not self.run.samples.is_dir():
            return
        for path in sorted(self.run.samples.glob(f"*_{step:06d}.*")):
            for tracker in self.trackers:
                tracker.sample(step, path)

    def plot(self, final: bool = False) -> None:
        if self.is_main and (final or time.perf_counter() - self.plotted >= PLOT_EVERY_SECONDS):
            plot_losses(self.run.read_metrics(), self.run.loss_plot)
            self.plotted = time.perf_counter()

    def finish(self) -> None:
        for tracker in self.trackers:
            tracker.finish(self.run)
