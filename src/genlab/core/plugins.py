"""Registries that other packages extend: genlab's own entries by name, then those of installed plugins, found
through an entry-point group (`genlab.families`, `genlab.tasks`). A built-in name always wins."""

from __future__ import annotations

import importlib
from importlib.metadata import entry_points

from genlab.core.errors import GenlabError


def entries(builtin: dict[str, str], group: str) -> dict[str, str]:
    """Every name -> where it lives ("module" or "module:attribute"): `builtin`, then the plugins' of `group`."""
    found = dict(builtin)
    for ep in entry_points(group=group):
        found.setdefault(ep.name, ep.value)
    return found


def load_entry(where: str, field: str, name: str):
    """The object `where` names (None for a missing attribute); a plugin's module that is not installed is one
    line naming the config field that asked for it."""
    module, _, attribute = where.partition(":")
    try:
        loaded = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name == module:
            raise GenlabError(f"{field}: {name!r} is registered by {module!r}, which is not installed") from None
        raise
    return getattr(loaded, attribute, None) if attribute else loaded
