"""Tasks: how each modality composes data, tokenizer/model, objective and trainer.

Text, code and music share the sequence stack (sequence.py) and differ only
in their data source, tokenizer and metrics; images have their own. Each
task module provides `train(config, progress) -> Run` and a Generator class.
"""

from __future__ import annotations

import importlib

from genlab.errors import GenlabError

TASKS: dict[str, str] = {
    "text": "genlab.tasks.text",
    "code": "genlab.tasks.code",
    "music": "genlab.tasks.music",
    "image": "genlab.tasks.image",
}


def task_module(task: str):
    if task not in TASKS:
        raise GenlabError(f"task: unknown task {task!r} (known: {', '.join(TASKS)})")
    try:
        return importlib.import_module(TASKS[task])
    except ModuleNotFoundError as e:
        if e.name == TASKS[task]:
            raise GenlabError(f"task {task!r} is not available in this version of genlab") from None
        raise
