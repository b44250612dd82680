"""Tasks: one module per modality, each with a `TASK` (the protocol in driver.py) and its Generator.

Text, code, music and audio share the sequence stack (sequence.py) and differ only in their data source,
tokenizer and metrics; images have their own. `driver.train_task` trains any of them.
"""

from __future__ import annotations

import importlib

from genlab.errors import GenlabError

TASKS: dict[str, str] = {
    "text": "genlab.tasks.text",
    "code": "genlab.tasks.code",
    "music": "genlab.tasks.music",
    "audio": "genlab.tasks.audio",
    "image": "genlab.tasks.image",
    "clip": "genlab.tasks.clip",
}


def task_of(task: str):
    """The TASK object of a modality (imported on first use, so `genlab --help` stays fast)."""
    if task not in TASKS:
        raise GenlabError(f"task: unknown task {task!r} (known: {', '.join(TASKS)})")
    try:
        return importlib.import_module(TASKS[task]).TASK
    except ModuleNotFoundError as e:
        if e.name == TASKS[task]:
            raise GenlabError(f"task {task!r} is not available in this version of genlab") from None
        raise
