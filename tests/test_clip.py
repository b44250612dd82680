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
    (tmp_path / "latin1.txt").write_bytes("un caf\u00e9\n".encode("latin-1"))
    r = cli("embed", run, "--texts", tmp_path / "latin1.txt", "--out", tmp_path / "u")
    assert r.returncode == 1 and "latin1.txt: not UTF-8 text (bad byte 0xe9" in r.stderr and not (tmp_path / "u.npy").exists()
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
    (tmp_path / "latin1.csv").write_bytes("image,caption\n00.png,caf\u00e9\n".encode("latin-1"))  # not UTF-8
    r = cli("train", "clip", "--data", folder, "--out", tmp_path / "bad2", "--max-steps", "1", *CLIP_SETS,
            "--set", f"data.clip.captions={tmp_path / 'latin1.csv'}")
    assert r.returncode == 1 and "latin1.csv: not UTF-8 text (bad byte 0xe9" in r.stderr and len(r.stderr.strip().splitlines()) == 1


# ---- text to image -----------------------------------------------------------------------------------


def test_a_text_conditioned_unet_reads_the_caption_and_a_zero_caption_is_the_null_one():
    from genlab.models.unet import UNet, UNetConfig
    from genlab.objectives.diffusion import Denoising
    from genlab.sampling.diffusion import NoiseSchedule

    torch.manual_seed(0)
    net = UNet(UNetConfig(channels=8, heads=1, timesteps=10, condition="text", text_dim=6), (1, 8, 8))
    with torch.no_grad():  # zero-initialized output convolutions: give every weight a value, so the output shows the condition
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([3, 3])
    a, b = torch.nn.functional.normalize(torch.randn(2, 6), dim=1)
    with torch.no_grad():
        assert not torch.allclose(net(x, t, torch.stack([a, a])), net(x, t, torch.stack([b, b])))
        torch.nn.init.normal_(net.null_text)
        no_caption = net(x, t, torch.zeros(2, 6))
        assert not torch.allclose(no_caption, net(x, t, torch.stack([a, a])))
    objective = Denoising(net, NoiseSchedule("cosine", 10), p_uncond=0.999)
    seen = []
    net.forward = lambda x_t, t_, y: seen.append(y) or torch.zeros_like(x_t)
    list(objective.losses((x, torch.stack([a, b]))))
    assert torch.equal(seen[0], torch.zeros(2, 6))  # dropped captions are all zeros


def test_text_to_image_from_the_cli_draws_the_prompt_with_guidance(cli, tmp_path):
    clip = tmp_path / "clip"
    assert cli("train", "clip", "--data", "digits", "--out", clip, "--max-steps", "10", "--batch-size", "32", *CLIP_SETS).returncode == 0
    run = tmp_path / "t2i"
    r = cli("train", "image", "--data", "digits", "--model", "ddpm", "--out", run, "--max-steps", "8", "--quiet",
            "--set", "train.ema_decay=0.0", "--set", "train.lr=0.01", "--set", "train.warmup_steps=0",
            "--set", "model.condition=text", "--set", f"model.text_encoder={clip}", "--set", "model.channels=8",
            "--set", "model.heads=1", "--set", "model.timesteps=20", "--set", "data.image.grid_samples=10",
            "--set", "train.eval_interval=2", "--set", "train.eval_batches=1")
    assert r.returncode == 0, r.stderr
    assert json.loads((run / "data" / "captions.json").read_text())["classes"][7] == "7"
    assert "val_loss" in (run / "metrics.jsonl").read_text()
    from genlab.api import load

    gen = load(run, device="cpu")
    sevens = gen.generate_array(2, seed=1, prompt="a handwritten seven", steps=5, guidance=3.0)
    assert np.array_equal(sevens, gen.generate_array(2, seed=1, prompt="a handwritten seven", steps=5, guidance=3.0))
    assert not np.array_equal(sevens, gen.generate_array(2, seed=1, prompt="a handwritten seven", steps=5, guidance=1.0))
    assert not np.array_equal(sevens, gen.generate_array(2, seed=1, prompt="a photo of a two", steps=5, guidance=3.0))
    r = cli("sample", run, "--prompt", "a seven", "--n", "4", "--steps", "5", "--guidance", "3", "--out", tmp_path / "g.png")
    assert r.returncode == 0 and (tmp_path / "g.png").is_file()
    r = cli("sample", run, "--class", "3", "--out", tmp_path / "c.png")
    assert r.returncode != 0 and "--prompt" in r.stderr
    r = cli("train", "image", "--data", "digits", "--model", "ddpm", "--out", tmp_path / "bad", "--max-steps", "1",
            "--set", "model.condition=text", "--quiet")
    assert r.returncode != 0 and "model.text_encoder" in r.stderr


# ---- a pretrained CLIP from a local Hugging Face folder ------------------------------------------------


def save_tiny_clip(folder):
    """A random CLIPModel with a byte-level BPE tokenizer and an image processor, saved as safetensors."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import (CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPTextConfig, CLIPVisionConfig,
                              PreTrainedTokenizerFast)

    hf = Tokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.train_from_iterator(["a handwritten seven", "a photo of a three"] * 5, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<pad>", "<eos>"], show_progress=False, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=hf, pad_token="<pad>", eos_token="<eos>")
    torch.manual_seed(0)
    config = CLIPConfig(text_config=CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=16, intermediate_size=32,
                                                   num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=32,
                                                   pad_token_id=0, eos_token_id=1).to_dict(),
                        vision_config=CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                                       num_attention_heads=2, image_size=16, patch_size=8).to_dict(),
                        projection_dim=8)
    CLIPModel(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    CLIPImageProcessor(size={"shortest_edge": 16}, crop_size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


def test_a_local_hugging_face_clip_embeds_searches_and_classifies_like_a_clip_run(cli, tmp_path):
    from transformers import CLIPModel

    folder = save_tiny_clip(tmp_path / "hf-clip")
    from genlab.api import load

    gen = load(f"hf:{folder}", device="cpu")
    ours = gen.embed_texts(["a handwritten seven"])
    model, inputs = CLIPModel.from_pretrained(folder), gen.tokenizer(["a handwritten seven"], return_tensors="pt")
    with torch.no_grad():
        out = model.get_text_features(**inputs)
        theirs = torch.nn.functional.normalize(out if isinstance(out, torch.Tensor) else out.pooler_output, dim=-1).numpy()
    np.testing.assert_allclose(ours, theirs, atol=1e-5)  # the same numbers as transformers gives
    r = cli("search", f"hf:{folder}", "a seven", "--images", "digits", "--k", "4", "--out", tmp_path / "hits.png")
    assert r.returncode == 0, r.stderr
    r = cli("eval", f"hf:{folder}", "--data", "digits", "--out", tmp_path / "eval.json")
    assert r.returncode == 0, r.stderr
    assert 0 <= json.loads((tmp_path / "eval.json").read_text())["zero_shot_accuracy"] <= 1
    assert not (folder / "eval.json").exists()  # nothing written into the model's folder
    assert cli("embed", f"hf:{folder}", "--images", "digits", "--out", tmp_path / "e").returncode == 0
    assert np.load(tmp_path / "e.npy").shape == (1797, 8)


def test_the_server_embeds_texts_with_a_clip_run(cli, tmp_path):
    from fastapi.testclient import TestClient

    from genlab.api import load
    from genlab.server.app import create_app

    run = tmp_path / "clip"
    assert cli("train", "clip", "--data", "digits", "--out", run, "--max-steps", "3", "--batch-size", "16", *CLIP_SETS).returncode == 0
    gen = load(run, device="cpu")
    with TestClient(create_app({"clip": gen}), base_url="http://localhost") as http:
        answer = http.post("/v1/embeddings", json={"model": "clip", "input": ["a seven", "a photo of a 3"]}).json()
    vectors = np.array([row["embedding"] for row in answer["data"]])
    np.testing.assert_allclose(vectors, gen.embed_texts(["a seven", "a photo of a 3"]), atol=1e-6)
    assert answer["usage"]["prompt_tokens"] == len("a seven") + len("a photo of a 3")  # bytes are its tokens


def save_tiny_blip(folder):
    """A random BlipForImageTextRetrieval with a word-piece tokenizer and an image processor, saved as safetensors."""
    from transformers import (BertTokenizerFast, BlipConfig, BlipForImageTextRetrieval, BlipImageProcessor)

    folder.mkdir(parents=True)
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "handwritten", "digit", "seven", "three", "7", "3"]
    (folder / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"))
    torch.manual_seed(0)
    config = BlipConfig(text_config={"vocab_size": len(words), "hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                     "num_attention_heads": 2, "max_position_embeddings": 32, "encoder_hidden_size": 16},
                        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 16, "patch_size": 8},
                        image_text_hidden_size=8)
    BlipForImageTextRetrieval(config).save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    BlipImageProcessor(size={"height": 16, "width": 16}).save_pretrained(folder)
    return folder


def test_a_local_blip_embeds_with_its_contrastive_heads_and_reranks_search_hits_with_its_matching_head(cli, tmp_path):
    from transformers import BlipForImageTextRetrieval

    from genlab.api import load

    folder = save_tiny_blip(tmp_path / "hf-blip")
    gen = load(f"hf:{folder}", device="cpu")
    model = BlipForImageTextRetrieval.from_pretrained(folder).eval()
    every = gen.images_of("digits")[0]
    images = every[:6]
    text = gen.tokenizer(["a handwritten seven"], return_tensors="pt")
    pixels = gen._pixels(images)
    with torch.no_grad():  # transformers' own contrastive score: unit image vector . unit text vector
        theirs = model(input_ids=text["input_ids"], attention_mask=text["attention_mask"], pixel_values=pixels,
                       use_itm_head=False).itm_score[:, 0].numpy()
        matching = model(input_ids=text["input_ids"].repeat(6, 1), attention_mask=text["attention_mask"].repeat(6, 1),
                         pixel_values=pixels).itm_score.softmax(-1)[:, 1].numpy()
    np.testing.assert_allclose(gen.embed_images(images) @ gen.embed_texts(["a handwritten seven"])[0], theirs, atol=1e-5)
    np.testing.assert_allclose(gen.match_probability("a handwritten seven", images), matching, atol=1e-5)

    hits, scores, rows = gen.search("a handwritten seven", "digits", k=3)
    shortlist = np.argsort(-(gen.embed_images(every) @ gen.embed_texts(["a handwritten seven"])[0]))[:12]
    assert set(rows) <= set(shortlist)  # the matching head only re-orders the unit vectors' shortlist
    assert list(scores) == sorted(scores, reverse=True)
    np.testing.assert_allclose(scores, gen.match_probability("a handwritten seven", every[rows]), atol=1e-5)
    r = cli("search", f"hf:{folder}", "a seven", "--images", "digits", "--k", "4", "--out", tmp_path / "hits.png")
    assert r.returncode == 0, r.stderr
    r = cli("eval", f"hf:{folder}", "--data", "digits", "--out", tmp_path / "eval.json")
    assert r.returncode == 0, r.stderr
    assert 0 <= json.loads((tmp_path / "eval.json").read_text())["zero_shot_accuracy"] <= 1
