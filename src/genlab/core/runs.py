"""The run directory: the artifact every verb shares, and atomic writes into it.

Layout (see docs/architecture.md):
    config.toml         fully resolved run config
    model.safetensors   weights (EMA weights where EMA is on)
    tokenizer.json      for sequence runs
    .genlab             marker: a folder genlab made (genlab.core.folders)
    checkpoint/         step-NNNNNNNN-xxxx/ folders (weights, optimizer, step, RNG: enough to resume bit
                        for bit) and `latest`, the pointer that names the current one
    metrics.jsonl       one JSON object per logged step or eval
    samples/            what the model made at each eval
    loss.png            loss curves
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_text, fsync_dir
from genlab.core.folders import remove


def crash_point(name: str) -> None:
    """A named instant inside a multi-step write. Does nothing; tests replace it to crash there
    (tests/test_checkpoints.py), which proves every such instant leaves a resumable run."""


def save_tensors(path: Path, tensors: dict, metadata: dict[str, str] | None = None) -> None:
    """Save tensors as safetensors, atomically; tensors are made contiguous CPU copies."""
    from safetensors.torch import save_file

    path = Path(path)
    flat = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file(flat, str(tmp), metadata=metadata)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


CHECKPOINT_POINTER = "latest"


def commit_checkpoint(built: Path, folder: Path, step: int) -> Path:
    """Make the complete checkpoint folder `built` (inside `folder`) the current one.

    It is renamed onto a fresh name, then the pointer file `latest` is replaced atomically, then
    older checkpoints go. A crash at any instant leaves the old checkpoint or the new one current,
    never neither (see `current_checkpoint`)."""
    final = folder / f"step-{step:08d}-{os.urandom(3).hex()}"
    fsync_dir(built)
    crash_point("checkpoint-written")
    os.replace(built, final)
    fsync_dir(folder)
    crash_point("checkpoint-renamed")
    atomic_write_text(folder / CHECKPOINT_POINTER, final.name + "\n")
    crash_point("checkpoint-pointed")
    for stale in folder.iterdir():
        if stale.name not in (final.name, CHECKPOINT_POINTER):
            remove(stale)
            crash_point("checkpoint-cleaned")
    return final


def checkpoint_folder_for_writing(folder: Path) -> Path:
    """A fresh folder inside `folder` to write a checkpoint into before `commit_checkpoint`."""
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=folder, prefix=".building-"))


def remove_stale_checkpoints(folder: Path) -> None:
    """Remove what a crash left half-written (never current); called by the one process resuming the run."""
    for stale in Path(folder).glob(".building-*"):
        remove(stale)


def current_checkpoint(folder: Path) -> Path | None:
    """The checkpoint to resume from: the one `latest` names, else the newest complete one left by
    a crash between a rename and the pointer's update; None when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    pointer = folder / CHECKPOINT_POINTER
    if pointer.is_file():
        named = folder / pointer.read_text(encoding="utf-8").strip()
        if named.name.startswith("step-") and (named / "state.json").is_file():
            return named
    complete = sorted(p for p in folder.glob("step-*") if (p / "state.json").is_file())
    return complete[-1] if complete else None


def load_tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{path}: no such weights file")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own types for corrupt headers
        raise GenlabError(f"{path}: not a readable safetensors file ({e})") from None


def read_header(folder: Path, what: str) -> dict:
    """The `header.json` of a data store folder; a missing one is an error naming the folder."""
    path = Path(folder) / "header.json"
    if not path.is_file():
        raise GenlabError(f"{folder}: no {what} here (header.json missing)")
    return json.loads(path.read_text())


def export_info(folder: Path | str) -> dict:
    """What `genlab export` recorded in a folder it wrote (genlab_export.json: format, task, ...); {} for any other."""
    info = Path(folder).expanduser() / "genlab_export.json"
    try:
        data = json.loads(info.read_text()) if info.is_file() else {}
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


class RunDir:
    """Paths inside one run directory; creating it is the trainer's job."""

    def __init__(self, path: Path | str):
        self.path = Path(path)

    config = property(lambda self: self.path / "config.toml")
    weights = property(lambda self: self.path / "model.safetensors")
    tokenizer = property(lambda self: self.path / "tokenizer.json")
    checkpoint = property(lambda self: self.path / "checkpoint")
    metrics = property(lambda self: self.path / "metrics.jsonl")
    samples = property(lambda self: self.path / "samples")
    loss_plot = property(lambda self: self.path / "loss.png")
    data = property(lambda self: self.path / "data")

    def latest_checkpoint(self) -> Path | None:
        return current_checkpoint(self.checkpoint)

    def require(self) -> "RunDir":
        """Fail with one line if this is not a finished run directory."""
        if not self.path.is_dir():
            raise GenlabError(f"{self.path}: no such run directory")
        if not self.config.is_file():
            raise GenlabError(f"{self.path}: not a genlab run (no config.toml)")
        return self

    def read_metrics(self) -> list[dict]:
        """Its rows; a last line cut short (a run killed as it wrote) is left out, any other bad line is one
        line of error naming the file."""
        if not self.metrics.is_file():
            return []
        try:
            lines = [line for line in self.metrics.read_text(encoding="utf-8").splitlines() if line.strip()]
        except (OSError, UnicodeDecodeError) as e:
            raise GenlabError(f"{self.metrics}: unreadable ({e})") from None
        rows = []
        for number, line in enumerate(lines, 1):
            try:
                row = json.loads(line)
            except (ValueError, RecursionError):
                row = None
            if not isinstance(row, dict):
                if number == len(lines):
                    break
                raise GenlabError(f"{self.metrics}: line {number} is not a JSON object")
            rows.append(row)
        return rows
