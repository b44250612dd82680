"""The public Python API; the CLI is a thin layer over it.

    run = genlab.train(config)          # a RunConfig, a dict, or a TOML path
    gen = genlab.load("runs/notes")     # a Generator for the run's modality
    gen.generate("Once", max_new_tokens=100, temperature=0.8)   # -> [TextSample(text=..., ...)]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from genlab.core.config import RunConfig, build_config, load_config, validate_config
from genlab.core.errors import GenlabError
from genlab.core.folders import discard
from genlab.core.runs import RunDir
from genlab.export import exported_format, load_export
from genlab.tasks import task_of
from genlab.tasks.driver import train_task
from genlab.tasks.hf import HFGenerator
from genlab.tasks.hf_clip import HFImageTextGenerator, hf_image_text_kind
from genlab.tasks.remote import RemoteGenerator


@dataclass
class Run:
    """A finished (or stopped) training run: where it is, how it was configured, how it ended."""

    path: Path
    config: RunConfig
    results: dict = field(default_factory=dict)

    def generator(self, device: str = "auto"):
        return load(self.path, device=device)


def train(config: RunConfig | dict | str | Path, progress: bool = True, overwrite: bool = False,
          continuing: bool = False, on_eval=None) -> Run:
    """Train the run `config` describes (resuming its checkpoint if `out` holds one; `continuing`: the caller
    goes on from a checkpoint it just made, and no resume is announced). `on_eval(step, results)` hears every
    periodic eval (a sweep prunes a trial from there by raising)."""
    if isinstance(config, (str, Path)):
        config = build_config(Path(config))
    elif isinstance(config, dict):
        config = validate_config(config)
    fresh = not Path(config.out).exists()
    try:
        config, results = train_task(task_of(config.task), config, progress=progress, overwrite=overwrite,
                                     continuing=continuing, on_eval=on_eval)
        return Run(Path(config.out), config, results)
    except GenlabError:
        # A folder this call created and that holds no checkpoint yet (bad data, bad config) is
        # removed again: a mistake leaves nothing behind.
        if fresh and RunDir(config.out).latest_checkpoint() is None:
            discard(Path(config.out))
        raise


def load(run: str | Path, device: str = "auto"):
    """The Generator of a run directory, of a folder `genlab export --format hf` wrote, or of a Hugging Face
    model given as `hf:PATH_OR_NAME`."""
    if str(run).startswith("remote:"):  # any OpenAI-compatible endpoint
        return RemoteGenerator(str(run))
    exported = exported_format(run) if not str(run).startswith("hf:") else None
    if exported in ("onnx", "int8", "web"):  # int8: ONNX with int8 weights, or a quantized PyTorch model
        return load_export(run)
    if str(run).startswith("hf:") and hf_image_text_kind(str(run).removeprefix("hf:")):
        return HFImageTextGenerator(str(run).removeprefix("hf:"), device=device)
    if str(run).startswith("hf:") or exported == "hf":
        return HFGenerator(str(run).removeprefix("hf:"), device=device)
    rd = RunDir(run).require()
    config = load_config(rd.config)
    return task_of(config.task).Generator(rd.path, device=device)
