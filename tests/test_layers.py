"""Imports point down: cli -> api, workflows, server, export -> tasks -> engines -> core, and the import graph has no cycle.

Lazy imports inside functions count too: they are dependencies all the same."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "genlab"

# Layer of each package (or module), by longest matching prefix; a module may import its own layer or lower ones.
# The folders are the layers: core (0) <- engines (1) <- tasks (2) <- api, workflows, server, export, rl (3) <- cli (4).
LAYERS = {
    "genlab.core": 0,  # errors, files, run folders, config, families, generator protocols, weights, model cards
    "genlab.tasks": 0,  # the package's own module: the registry of task names (config checks a task against it)
    "genlab.media": 1, "genlab.models": 1, "genlab.tokenizers": 1, "genlab.datasets": 1, "genlab.objectives": 1,
    "genlab.sampling": 1, "genlab.metrics": 1, "genlab.training": 1, "genlab.prep": 1,
    "genlab.tasks.": 2,
    "genlab.api": 3, "genlab.workflows": 3, "genlab.rl": 3, "genlab.server": 3, "genlab.export": 3, "genlab": 3,
    "genlab.__main__": 4, "genlab.cli": 4,
}


def layer(module: str) -> int:
    best = max((p for p in LAYERS if module == p or (p.endswith(".") and module.startswith(p))
                or module.startswith(p + ".")), key=len)
    return LAYERS[best]


def modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def imports() -> dict[str, set[str]]:
    mods = modules()
    graph = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
                subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in mods]
                edges |= set(subs) | ({base} if len(subs) < len(node.names) and base in mods else set())
            elif isinstance(node, ast.Import):
                edges |= {a.name for a in node.names if a.name in mods}
        graph[name] = edges - {name}
    return graph


def test_imports_point_down():
    upward = [f"{a} (layer {layer(a)}) imports {b} (layer {layer(b)})"
              for a, targets in imports().items() for b in targets if layer(b) > layer(a)]
    assert upward == []


def test_the_import_graph_has_no_cycle():
    graph = imports()
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(node, path):
        state[node] = 1
        for nxt in graph[node]:
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = 2

    for start in graph:
        if start not in state:
            visit(start, [start])


def test_no_module_switches_the_matplotlib_backend():
    for name, path in modules().items():
        text = path.read_text()
        assert "matplotlib.use(" not in text and "import matplotlib.pyplot" not in text, name
        assert "from matplotlib import pyplot" not in text, name
