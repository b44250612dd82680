"""Text from records: a Hugging Face dataset saved with `save_to_disk` (`--data hf:FOLDER`), or a column of a
.jsonl, .parquet or .csv file (`--set data.column=NAME`); bad columns and splits are one line naming what exists."""

import json

import pandas as pd
import pytest

from conftest import make_corpus

TINY = ["--max-steps", "3", "--set", "model.n_layer=1", "--set", "model.n_head=2", "--set", "model.n_embd=32",
        "--set", "model.block_size=32", "--set", "train.eval_batches=1", "--quiet"]


@pytest.fixture
def rows():
    return [{"id": i, "body": make_corpus(300, seed=i).strip(), "stars": i % 5} for i in range(60)]


def test_a_saved_dataset_trains_on_its_column_and_split(rows, tmp_path, cli):
    import datasets

    data = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows),
                                 "validation": datasets.Dataset.from_list(rows[:5])})
    data.save_to_disk(str(tmp_path / "ds"))
    r = cli("train", "text", "--data", f"hf:{tmp_path / 'ds'}", "--set", "data.column=body", "--out", tmp_path / "run", *TINY)
    assert r.returncode == 0, r.stderr
    from genlab.core.runs import RunDir
    from genlab.tokenizers import load_tokenizer

    # Every character the model knows comes from the column's rows (the ids and stars are not text it saw).
    tokenizer = load_tokenizer(RunDir(tmp_path / "run").tokenizer)
    assert set(tokenizer.decode(list(range(tokenizer.vocab_size)))) <= set("".join(r["body"] for r in rows) + "\n")

    r = cli("train", "text", "--data", f"hf:{tmp_path / 'ds'}", "--out", tmp_path / "nocol", *TINY)
    assert r.returncode == 1 and r.stderr.strip() == (f"error: hf:{tmp_path / 'ds'}: no column 'text' (data.column; "
                                                      "the columns: id, body, stars)")
    r = cli("train", "text", "--data", f"hf:{tmp_path / 'ds'}", "--set", "data.column=body", "--set", "data.dataset_split=test",
            "--out", tmp_path / "nosplit", *TINY)
    assert r.returncode == 1 and r.stderr.strip() == (f"error: hf:{tmp_path / 'ds'}: no split 'test' (data.dataset_split; "
                                                      "the dataset has: train, validation)")
    assert not (tmp_path / "nocol").exists() or not any((tmp_path / "nocol").glob("model*"))


@pytest.mark.parametrize("suffix", [".jsonl", ".parquet", ".csv"])
def test_a_table_file_trains_on_a_column_as_a_dataset_does(rows, tmp_path, cli, suffix):
    table = tmp_path / f"rows{suffix}"
    if suffix == ".jsonl":
        table.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif suffix == ".parquet":
        pd.DataFrame(rows).to_parquet(table)
    else:
        pd.DataFrame(rows).to_csv(table, index=False)
    r = cli("train", "text", "--data", table, "--set", "data.column=body", "--out", tmp_path / "run", *TINY)
    assert r.returncode == 0, r.stderr
    from genlab.datasets.named import cache_dir
    from genlab.datasets.records import fingerprint

    made = cache_dir() / "records" / f"{fingerprint(str(table), 'body', 'train')}.txt"
    assert made.read_text() == "\n\n".join(r["body"] for r in rows)  # one document per row, in order
    r = cli("train", "text", "--data", table, "--set", "data.column=title", "--out", tmp_path / "bad", *TINY)
    assert r.returncode == 1 and "no column 'title' (data.column; the columns: id, body, stars)" in r.stderr
    assert not list((cache_dir() / "records").glob("*.partial"))


# A VAE small enough to train two steps in a moment on 8x8 images.
TINY_VAE = ["--model", "vae", "--set", "model.channels=8", "--set", "model.latent_dim=4", "--set", "data.image.grid_samples=4",
            "--max-steps", "2", "--set", "train.batch_size=8", "--quiet"]

def test_an_image_dataset_trains_on_its_image_and_label_columns(tmp_path, cli):
    """A saved dataset of PIL images with a ClassLabel column: the run's store holds exactly its pixels and its
    class names; a missing column is one line naming the ones there are."""
    import datasets
    import numpy as np
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images[:120] * 255 / 16).astype(np.uint8)
    features = datasets.Features({"img": datasets.Image(), "digit": datasets.ClassLabel(names=[f"d{i}" for i in range(10)])})
    data = datasets.Dataset.from_dict({"img": list(pixels), "digit": list(digits.target[:120])}, features=features)
    data.save_to_disk(str(tmp_path / "digits-ds"))
    source = f"hf:{tmp_path / 'digits-ds'}"
    r = cli("train", "image", "--data", source, "--set", "data.image.image_column=img",
            "--set", "data.image.label_column=digit", *TINY_VAE, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    from genlab.datasets.images import ImageStore

    store = ImageStore(tmp_path / "run" / "data")
    assert store.classes == [f"d{i}" for i in range(10)] and store.shape == (8, 8, 1)
    order = np.argsort([bytes(im) for im in pixels])  # the store keeps every image (in its own split order)
    kept = np.asarray(store.images)[..., 0]
    assert sorted(map(bytes, kept)) == [bytes(pixels[i]) for i in order]
    r = cli("train", "image", "--data", source, "--model", "vae", "--max-steps", "1", "--out", tmp_path / "bad", "--quiet")
    assert r.returncode == 1 and r.stderr.strip() == f"error: {source}: no column 'image' (data.image_column; the columns: img, digit)"


@pytest.mark.parametrize("name, content, message", [
    ("bad.parquet", b"not parquet", "bad.parquet: unreadable (ArrowInvalid"),
    ("bad.jsonl", b'{"body": "a"}\n[1, 2]\n', "bad.jsonl: unreadable ("),
    ("bad.csv", b'body\n"unterminated\n', "bad.csv: unreadable ("),
    ("empty.jsonl", b"", "empty.jsonl: no rows"),
    ("rows.txt", b"body\n", "data.column reads .jsonl, .parquet and .csv files"),
])
def test_a_broken_table_is_one_line_naming_it_and_leaves_nothing(name, content, message, tmp_path, cli):
    (tmp_path / name).write_bytes(content)
    r = cli("train", "text", "--data", tmp_path / name, "--set", "data.column=body", "--out", tmp_path / "run", *TINY)
    assert r.returncode == 1 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert not (tmp_path / "run").exists()
    from genlab.datasets.named import cache_dir

    assert not list((cache_dir() / "records").glob("*.partial"))


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_a_table_file_of_images_trains_on_its_image_and_label_columns(suffix, tmp_path, cli):
    """A Parquet file of PNG bytes, or a CSV of image paths beside it, with a label column: the store holds exactly
    its pixels, and its classes are the labels in sorted order."""
    import io

    import numpy as np
    import pandas as pd
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images[:60] * 255 / 16).astype(np.uint8)
    names = [("even", "odd")[int(t) % 2] for t in digits.target[:60]]
    if suffix == ".parquet":
        def png(a):
            out = io.BytesIO()
            Image.fromarray(a).save(out, format="PNG")
            return {"bytes": out.getvalue(), "path": None}
        pd.DataFrame({"picture": [png(a) for a in pixels], "kind": names}).to_parquet(tmp_path / "digits.parquet")
    else:
        (tmp_path / "img").mkdir()
        for i, a in enumerate(pixels):
            Image.fromarray(a).save(tmp_path / "img" / f"{i}.png")
        pd.DataFrame({"picture": [f"img/{i}.png" for i in range(60)], "kind": names}).to_csv(tmp_path / "digits.csv", index=False)
    table = tmp_path / f"digits{suffix}"
    r = cli("train", "image", "--data", table, "--set", "data.image.image_column=picture",
            "--set", "data.image.label_column=kind", *TINY_VAE, "--out", tmp_path / "run")
    assert r.returncode == 0, r.stderr
    from genlab.datasets.images import ImageStore

    store = ImageStore(tmp_path / "run" / "data")
    assert store.classes == ["even", "odd"] and store.shape == (8, 8, 1)
    assert sorted(map(bytes, np.asarray(store.images)[..., 0])) == sorted(map(bytes, pixels))
    r = cli("train", "image", "--data", table, "--model", "vae", "--max-steps", "1", "--out", tmp_path / "bad", "--quiet")
    assert r.returncode == 1 and "no column 'image' (data.image_column; the columns: picture, kind)" in r.stderr


def test_an_image_cell_that_is_a_decompression_bomb_is_one_line_naming_its_row(tmp_path):
    """A 10 KB PNG of 400 million pixels in a table of images: refused by Pillow's bound, said as the row's
    error rather than as an internal one."""
    from PIL import Image

    from genlab.core.errors import GenlabError
    from genlab.datasets.records import to_pixels

    Image.new("1", (20_000, 20_000)).save(tmp_path / "bomb.png")
    with pytest.raises(GenlabError, match=r"pictures.csv row 3: not an image \(DecompressionBombError\)"):
        to_pixels("bomb.png", "pictures.csv row 3", tmp_path)
