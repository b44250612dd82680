"""Image and text together: the contrastive loss, captions from labels or a file, and train -> search -> embed
-> eval from the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from genlab.models.clip import contrastive_loss
from genlab.tasks.clip import class_words, encode_captions


def test_the_contrastive_loss_is_lowest_when_each_image_picks_its_own_caption():
    right = torch.eye(4) * 20
    wrong = torch.roll(right, 1, dims=1)
    assert contrastive_loss(right) < 1e-6 < contrastive_loss(wrong)
    # two images of one class: either caption of that class is right, so their pairs share the target
    groups = torch.tensor([0, 0, 1, 1])
    swapped = torch.tensor([[0, 20, 0, 0], [20, 0, 0, 0], [0, 0, 0, 20], [0, 0, 20, 0]], dtype=torch.float)
    assert contrastive_loss(swapped, groups) == pytest.approx(contrastive_loss(torch.eye(4) * 20, groups).item(), abs=1e-5)


def test_captions_are_bytes_and_numerals_have_their_words():
    ids = encode_captions(["a 7", "é"], 5)
    assert ids.tolist() == [[98, 33, 56, 0, 0], [196, 170, 0, 0, 0]]  # UTF-8 bytes + 1, 0 = padding
    assert class_words("7") == ["7", "seven"] and class_words("cat") == ["cat"]


CLIP_SETS = ["--set", "model.embed_dim=32", "--set", "model.image_channels=8", "--set", "model.text_width=32",
             "--set", "model.text_layers=1", "--set", "train.eval_interval=60", "--set", "train.lr=3e-3", "--quiet"]


def test_clip_on_digits_classifies_zero_shot_and_finds_sevens(cli, tmp_path):
    run = tmp_path / "clip"
    r = cli("train", "clip", "--data", "digits", "--out", run, "--max-steps", "120", "--batch-size", "64", *CLIP_SETS)
    assert r.returncode == 0, r.stderr
    assert cli("eval", run).returncode == 0
    report = json.loads((run / "eval.json").read_text())
    assert report["zero_shot_accuracy"] > 0.6 and report["text_to_image_recall@5"] > 0.6  # chance: 0.1
    r = cli("search", run, "a handwritten seven", "--k", "6", "--out", tmp_path / "hits.png")
    assert r.returncode == 0 and Image.open(tmp_path / "hits.png").size[0] > 6 * 8
    from genlab.api import load

    gen = load(run, device="cpu")
    _, _, rows = gen.search("a seven", None, 6)
    labels = np.asarray(gen.store.labels)[gen.store.indices("val")][rows]
    assert (labels == 7).mean() >= 0.5  # most hits are sevens
    (tmp_path / "q.txt").write_text("a seven\na photo of a 3\n")
    assert cli("embed", run, "--texts", tmp_path / "q.txt", "--out", tmp_path / "t").returncode == 0
    vectors = np.load(tmp_path / "t.npy", allow_pickle=False)
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    assert json.loads((tmp_path / "t.json").read_text())["texts"] == ["a seven", "a photo of a 3"]
    r = cli("sample", run, "--out", tmp_path / "x.png")
    assert r.returncode != 0 and "search" in r.stderr


def test_captions_from_a_file_follow_their_images(cli, tmp_path):
    folder = tmp_path / "pictures"
    folder.mkdir()
    rng = np.random.default_rng(0)
    rows = ["image,caption"]
    for i in range(40):
        bright = i % 2 == 0
        pixels = (rng.integers(150, 255, (8, 8)) if bright else rng.integers(0, 90, (8, 8))).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:02d}.png")
        rows.append(f"{i:02d}.png,{'a bright square' if bright else 'a dark square'} number {i}")
    (tmp_path / "captions.csv").write_text("\n".join(rows) + "\n")
    run = tmp_path / "run"
    r = cli("train", "clip", "--data", folder, "--out", run, "--max-steps", "4", "--batch-size", "8", *CLIP_SETS,
            "--set", f"data.clip.captions={tmp_path / 'captions.csv'}")
    assert r.returncode == 0, r.stderr
    captions = json.loads((run / "data" / "captions.json").read_text())["per_image"]
    assert captions[5] == "a dark square number 5"  # matched by file name, in the store's order
    (tmp_path / "short.csv").write_text("image,caption\n00.png,only one\n")
    r = cli("train", "clip", "--data", folder, "--out", tmp_path / "bad", "--max-steps", "1", *CLIP_SETS,
            "--set", f"data.clip.captions={tmp_path / 'short.csv'}")
    assert r.returncode != 0 and "no caption for 01.png" in r.stderr
