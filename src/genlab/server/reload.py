"""A served run's kept weights, re-read when training writes new ones (hot swap).

A run keeps its best weights in model.safetensors and replaces the file atomically at each improvement
(trainer.py, `train.keep`), with the step and the score in the file's metadata. The server checks the
file's signature before admitting work; when it changed, the text scheduler stops admitting, lets the rows
in flight finish on the old weights, loads the new ones and carries on (image and music requests swap
between two requests). Exports and hf: models have no run folder and never change.
"""

from __future__ import annotations

import logging
from pathlib import Path

from genlab.core.errors import GenlabError

log = logging.getLogger("genlab.server")


def weights_info(path: Path) -> dict:
    """The step (and score) a weights file records, as the trainer wrote them; {} for files without."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (OSError, ValueError, RuntimeError):
        return {}
    info = {}
    if "step" in meta:
        info["step"] = int(meta["step"])
    if "value" in meta:
        info[meta.get("metric", "val_loss")] = float(meta["value"])
    return info


class KeptWeights:
    def __init__(self, generator):
        self.generator = generator
        self.path: Path | None = generator.run.weights if generator.run is not None else None  # None: an export
        self.signature = self._signature()
        self.info = weights_info(self.path) if self.path is not None and self.path.is_file() else {}

    def _signature(self):
        try:
            st = self.path.stat() if self.path is not None else None
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size) if st is not None else None

    def changed(self) -> bool:
        return self.path is not None and self._signature() not in (self.signature, None)

    def reload(self) -> None:
        """Load the file into the served model, in place (call only when no request is using it). A file that
        cannot be (being replaced, corrupt, another config's) leaves the previous weights served, whole, and is
        not tried again until it changes."""
        self.signature = self._signature()  # one try per change of the file, whatever comes of it
        try:
            self.generator.load_weights(self.path)
        except GenlabError as e:
            log.warning("serving the previous weights: %s", e)
            return
        self.info = weights_info(self.path)
        log.info("reloaded %s (%s)", self.path, self.info)

    def note(self) -> None:
        """Take the file's step and score as served, without loading it (an engine process loads it)."""
        self.signature, self.info = self._signature(), weights_info(self.path)
