"""Pictures: loss curves from metrics.jsonl, and the one way genlab draws and saves a figure.

Figures are bare `matplotlib.figure.Figure` objects (the object API): no pyplot, so genlab never
switches the backend of a user's notebook or leaves figures open in pyplot's registry.
"""

from __future__ import annotations

import io
from pathlib import Path
from genlab.core.files import atomic_write_bytes


def new_figure(width: float, height: float, columns: int = 1):
    """A (figure, axes) pair drawn without pyplot; with `columns`, the axes side by side as a list."""
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    return figure, (figure.subplots() if columns == 1 else list(figure.subplots(1, columns)))


def png_bytes(figure) -> bytes:
    """The figure as PNG; no software version stamp, so the same data gives the same bytes."""
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", metadata={"Software": None})
    return buffer.getvalue()


def save_figure(figure, dest: Path) -> None:
    """Write a figure as PNG, atomically."""
    atomic_write_bytes(dest, png_bytes(figure))


def plot_losses(rows: list[dict], dest: Path) -> None:
    """Every `*loss` series in the metrics against step, train and eval in one PNG."""
    series: dict[str, tuple[list, list]] = {}
    for row in rows:
        for key, value in row.items():
            if key.endswith("loss") and isinstance(value, (int, float)):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(row["step"])
                ys.append(value)
    if not series:
        return
    fig, ax = new_figure(7, 4)
    for key, (xs, ys) in sorted(series.items()):
        ax.plot(xs, ys, label=key, marker="o" if key.startswith(("val", "eval")) else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, dest)
