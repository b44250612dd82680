"""Tasks: one module per modality, each with a `TASK` (the protocol in driver.py) and its Generator.

Text, code, music and audio share the sequence stack (sequence.py) and differ only in their data source,
tokenizer and metrics; images have their own. `driver.train_task` trains any of them.

Other packages add tasks without changing genlab: an entry point in the group `genlab.tasks` names a module
whose `TASK` is the task (docs/families.md, "Adding a task"). Built-in names win over a plugin's. This
package's own module imports nothing heavy, so the config can check a task's name against it.
"""

from __future__ import annotations

from functools import cache

from genlab.core.errors import GenlabError
from genlab.core.plugins import entries, load_entry

ENTRY_POINTS = "genlab.tasks"

BUILTIN: dict[str, str] = {
    "text": "genlab.tasks.text",
    "code": "genlab.tasks.code",
    "music": "genlab.tasks.music",
    "audio": "genlab.tasks.audio",
    "image": "genlab.tasks.image",
    "clip": "genlab.tasks.clip",
}


@cache
def registry() -> dict[str, str]:
    """Every task name -> the module holding its TASK: genlab's own, then those of installed plugins."""
    return entries(BUILTIN, ENTRY_POINTS)


def task_names() -> list[str]:
    return list(registry())


def task_of(task: str):
    """The TASK object of a modality (imported on first use, so `genlab --help` stays fast)."""
    module = registry().get(task)
    if module is None:
        raise GenlabError(f"task: unknown task {task!r} (known: {', '.join(registry())})")
    found = load_entry(module, "task", task)
    if getattr(found, "TASK", None) is None:
        raise GenlabError(f"task: {module!r} registers task {task!r} but holds no TASK")
    return found.TASK
