"""`genlab embed` and `genlab search`: a clip run's shared space of images and texts."""

from __future__ import annotations

# Commands import the engines they run inside their bodies, on purpose: `genlab --help` and a bad flag answer
# at once, before torch (seconds) loads.

import json
import sys
from pathlib import Path
from typing import Optional

import typer

from genlab.cli.root import app, threads_option, use_threads


@app.command(no_args_is_help=True)
def embed(
    run: str = typer.Argument(..., help="A clip run directory."),
    out: Path = typer.Option(..., "--out", help="Where to write the embeddings (.npy); an index .json is written beside it."),
    images: Optional[str] = typer.Option(None, "--images", help="Embed these images: any source `genlab train image` reads (folder, IDX, .npz, digits, mnist, ...)."),
    texts: Optional[Path] = typer.Option(None, "--texts", help="Embed these texts: a file with one text per line."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: str = threads_option(),
) -> None:
    """Embed images or texts into a clip run's shared space: OUT.npy (N, D) unit vectors and OUT.json (what each row is)."""
    use_threads(threads)
    import numpy as np

    from genlab.api import load
    from genlab.core.errors import GenlabError
    from genlab.core.files import atomic_write_bytes, atomic_write_text, read_text_file
    from genlab.core.folders import check_output_file

    if (images is None) == (texts is None):
        raise GenlabError("embed: give --images SOURCE or --texts FILE (one of them)")
    gen = load(run, device=device)
    if gen.modality != "clip":
        raise GenlabError(f"{run}: a {gen.modality} run; embed needs a clip run")
    out = out.with_suffix(".npy")
    check_output_file(out, "npy")
    if texts is not None:
        lines = [line for line in read_text_file(texts).splitlines() if line.strip()]
        vectors, index = gen.embed_texts(lines), {"kind": "texts", "source": str(texts), "texts": lines}
    else:
        pixels, labels, where = gen.images_of(images, progress=True)
        vectors = gen.embed_images(pixels)
        index = {"kind": "images", "source": where, "rows": len(pixels),
                 "labels": labels.tolist() if labels is not None else None}
    import io

    buffer = io.BytesIO()
    np.save(buffer, vectors.astype(np.float32), allow_pickle=False)
    atomic_write_bytes(out, buffer.getvalue())
    atomic_write_text(out.with_suffix(".json"), json.dumps({**index, "dim": int(vectors.shape[1])}))
    print(f"wrote {out} ({vectors.shape[0]} x {vectors.shape[1]}) and {out.with_suffix('.json')}", file=sys.stderr)


@app.command(no_args_is_help=True)
def search(
    run: str = typer.Argument(..., help="A clip run directory."),
    query: str = typer.Argument(..., help='What to look for, in words: "a handwritten seven".'),
    images: Optional[str] = typer.Option(None, "--images", help="Where to look: any image source (default: the run's val split)."),
    k: int = typer.Option(8, "--k", help="How many hits."),
    out: Path = typer.Option(Path("hits.png"), "--out", help="A picture of the hits, best first."),
    device: str = typer.Option("auto", "--device", help="auto, cpu or cuda."),
    threads: str = threads_option(),
) -> None:
    """The images closest to a text in a clip run's space, as a picture and a list of scores."""
    use_threads(threads)
    from genlab.api import load
    from genlab.core.errors import GenlabError, check_range
    from genlab.core.folders import check_output_file
    from genlab.media.grids import make_grid, save_png

    check_range("--k", k, 1, 1000)
    gen = load(run, device=device)
    if gen.modality != "clip":
        raise GenlabError(f"{run}: a {gen.modality} run; search needs a clip run")
    if out.suffix.lower() != ".png":
        raise GenlabError(f"--out {out}: the hits are drawn as .png")
    check_output_file(out, "png")
    hits, scores, rows = gen.search(query, images, k)
    save_png(make_grid(hits, min(k, 8)), out)
    for rank, (row, score) in enumerate(zip(rows, scores), 1):
        print(f"{rank:>3}  image {row:<6} similarity {score:.3f}")
    print(f"wrote {out}", file=sys.stderr)
