"""Pictures of a run: loss curves from metrics.jsonl."""

from __future__ import annotations

from pathlib import Path


def plot_losses(rows: list[dict], dest: Path) -> None:
    """Every `*loss` series in the metrics against step, train and eval in one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series: dict[str, tuple[list, list]] = {}
    for row in rows:
        for key, value in row.items():
            if key.endswith("loss") and isinstance(value, (int, float)):
                xs, ys = series.setdefault(key, ([], []))
                xs.append(row["step"])
                ys.append(value)
    if not series:
        return
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    for key, (xs, ys) in sorted(series.items()):
        ax.plot(xs, ys, label=key, marker="o" if key.startswith(("val", "eval")) else None, markersize=3)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend()
    save_figure(fig, dest)


def save_figure(fig, dest: Path) -> None:
    """Write a matplotlib figure as PNG, atomically, and free it."""
    import io

    import matplotlib.pyplot as plt

    from genlab.runs import atomic_write_bytes

    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write_bytes(dest, buf.getvalue())
