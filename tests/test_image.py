"""Image generation: data sources, the four families, samplers, metrics and the CLI-facing generator."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import threading
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from genlab.api import load, train
from genlab.core.config import validate_config
from genlab.datasets.images import ImageStore, read_idx
from genlab.core.errors import GenlabError
from genlab.metrics.image import fid, frechet_distance, kid, precision_recall
from genlab.sampling.diffusion import NoiseSchedule, denoising_steps, sample


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_mnist(folder, n=40, side=8, seed=0):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, side, side), dtype=np.uint8)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    return images, labels


def tiny(out, model, steps=4, **extra):
    models = {
        "gan": {"name": "gan", "latent_dim": 8, "hidden": [16]},
        "dcgan": {"name": "dcgan", "latent_dim": 8, "channels": 8},
        "vae": {"name": "vae", "latent_dim": 4, "channels": 8},
        "ddpm": {"name": "ddpm", "channels": 8, "heads": 2, "timesteps": 50},
    }
    train_cfg = {"max_steps": steps, "batch_size": 16, "eval_interval": 2, "checkpoint_interval": 2, "eval_batches": 1,
                 "progress": False, **extra.pop("train", {})}
    return validate_config({"task": "image", "out": str(out), "data": {"source": "digits", "image": {"grid_samples": 12, "sample_steps": 5}},
                            "model": models[model], "train": train_cfg, **extra})


# ---- metrics ---------------------------------------------------------------------------------


def test_frechet_distance_matches_the_closed_form_of_two_gaussians():
    mu1, mu2 = np.array([0.0, 1.0, 2.0]), np.array([1.0, 1.0, 0.0])
    var1, var2 = np.array([1.0, 4.0, 9.0]), np.array([4.0, 1.0, 1.0])
    # Diagonal covariances commute: Tr(S1 + S2 - 2 sqrt(S1 S2)) = sum (sqrt(a) - sqrt(b))^2.
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(var1) - np.sqrt(var2)) ** 2)
    assert frechet_distance(mu1, np.diag(var1), mu2, np.diag(var2)) == pytest.approx(expected, rel=1e-9)
    # From samples the estimate converges to the same number.
    rng = np.random.default_rng(0)
    a = rng.normal(mu1, np.sqrt(var1), (200_000, 3))
    b = rng.normal(mu2, np.sqrt(var2), (200_000, 3))
    assert fid(a, b) == pytest.approx(expected, rel=0.02)
    assert fid(a, a) == pytest.approx(0.0, abs=1e-6)


def test_kid_is_near_zero_for_one_distribution_and_positive_for_two():
    rng = np.random.default_rng(1)
    a, b, c = rng.normal(0, 1, (600, 8)), rng.normal(0, 1, (600, 8)), rng.normal(0.5, 1, (600, 8))
    same, _ = kid(a, b, subsets=20, subset_size=300)
    different, _ = kid(a, c, subsets=20, subset_size=300)
    assert abs(same) < 0.01 and different > 0.1


def test_precision_recall_separate_quality_from_diversity():
    rng = np.random.default_rng(2)
    real = rng.normal(0, 1, (500, 4))
    p, r = precision_recall(real, real[:250] + 1e-3)
    assert p == 1.0 and r > 0.3
    collapsed = np.repeat(real[:1], 200, axis=0) + rng.normal(0, 1e-3, (200, 4))  # mode collapse: good but not diverse
    p, r = precision_recall(real, collapsed)
    assert p == 1.0 and r < 0.05
    far = rng.normal(10, 1, (200, 4))  # diverse garbage
    assert precision_recall(real, far)[0] == 0.0


# ---- sampling ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["epsilon", "v"])
def test_samplers_recover_the_single_point_of_a_one_point_data_set(kind, prediction):
    # For data that is one image x*, the exact noise predictor is (x_t - sqrt(ab) x*) / sqrt(1 - ab).
    schedule = NoiseSchedule(kind, 200)
    target = torch.tensor([[[[0.5, -0.25], [0.0, 0.75]]]])

    def oracle(x, t):
        ab = schedule.alpha_bar[t].view(-1, 1, 1, 1)
        eps = (x - ab.sqrt() * target) / (1 - ab).sqrt()
        return eps if prediction == "epsilon" else ab.sqrt() * eps - (1 - ab).sqrt() * target

    for sampler, steps in [("ddim", 10), ("ddim", 200), ("ddpm", 200), ("ddpm", 20)]:
        g = torch.Generator().manual_seed(0)
        out = sample(oracle, (3, 1, 2, 2), schedule, steps, sampler, prediction, generator=g)
        assert torch.allclose(out, target.expand(3, -1, -1, -1), atol=1e-4), (sampler, steps)
    # Step by step, a diffusion sample sharpens towards x0: one yield per step, the last the sample.
    x_T = torch.randn(3, 1, 2, 2, generator=torch.Generator().manual_seed(1))
    seen = list(denoising_steps(oracle, (3, 1, 2, 2), schedule, 10, "ddim", prediction, x_T=x_T))
    errors = [float((x - target).abs().max()) for x in seen]
    assert len(seen) == 10 and errors[-1] < 1e-4 < errors[0]
    assert torch.equal(seen[-1], sample(oracle, (3, 1, 2, 2), schedule, 10, "ddim", prediction, x_T=x_T))


def test_add_noise_keeps_unit_variance_and_steps_are_spaced():
    schedule = NoiseSchedule("linear", 1000)
    x0, noise = torch.randn(20000), torch.randn(20000)
    xt = schedule.add_noise(x0, noise, torch.full((20000,), 500))
    assert xt.var().item() == pytest.approx(1.0, abs=0.05)
    assert schedule.timesteps_for(10) == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert len(schedule.timesteps_for(1000)) == 1000


# ---- data ----------------------------------------------------------------------------------


def test_idx_files_gz_or_not_and_truncated_ones(tmp_path):
    images, labels = write_mnist(tmp_path / "mnist")
    store = ImageStore.build(tmp_path / "store", tmp_path / "mnist", None, None, 0.25, 0, progress=False)
    assert store.shape == (8, 8, 1) and np.array_equal(store.images[..., 0], images)
    assert np.array_equal(store.labels, labels) and store.classes == [str(i) for i in range(10)]
    assert len(store.indices("val")) == 10 and len(store.indices("train")) == 30
    raw = tmp_path / "raw-images-idx3-ubyte"
    raw.write_bytes(idx_bytes(images))
    assert np.array_equal(read_idx(raw), images)
    bad = tmp_path / "bad" / "t10k-images-idx3-ubyte.gz"
    bad.parent.mkdir()
    bad.write_bytes(gzip.compress(idx_bytes(images)[:-5]))
    with pytest.raises(GenlabError, match="t10k-images-idx3-ubyte.gz: truncated"):
        ImageStore.build(tmp_path / "s2", bad.parent, None, None, 0.1, 0, progress=False)


def test_image_folder_with_class_subfolders_resize_and_a_corrupt_file(tmp_path):
    from PIL import Image

    for cls, color in [("cats", (255, 0, 0)), ("dogs", (0, 0, 255))]:
        for i in range(3):
            (tmp_path / "pets" / cls / "sub").mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (10 + i, 12), color).save(tmp_path / "pets" / cls / "sub" / f"{i}.png")
    store = ImageStore.build(tmp_path / "store", tmp_path / "pets", 8, 3, 0.0, 0, progress=False)
    assert store.classes == ["cats", "dogs"] and list(store.labels) == [0, 0, 0, 1, 1, 1]
    assert store.shape == (8, 8, 3) and tuple(store.images[0, 4, 4]) == (255, 0, 0) and tuple(store.images[5, 4, 4]) == (0, 0, 255)
    grey = ImageStore.build(tmp_path / "grey", tmp_path / "pets", 8, 1, 0.0, 0, progress=False)
    assert grey.shape == (8, 8, 1) and grey.images[0, 0, 0, 0] == 76  # 0.299 * 255
    (tmp_path / "pets" / "dogs" / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(GenlabError, match="broken.jpg: corrupt or unreadable image"):
        ImageStore.build(tmp_path / "s3", tmp_path / "pets", 8, 3, 0.0, 0, progress=False)
    assert not (tmp_path / "s3").exists()  # nothing half-written
    (tmp_path / "pets" / "dogs" / "broken.jpg").unlink()
    Image.new("1", (20_000, 20_000)).save(tmp_path / "pets" / "dogs" / "bomb.png")  # 10 KB on disk, 400M pixels
    with pytest.raises(GenlabError, match="bomb.png: corrupt or unreadable image.*decompression bomb"):
        ImageStore.build(tmp_path / "s4", tmp_path / "pets", 8, 3, 0.0, 0, progress=False)
    assert not (tmp_path / "s4").exists()
    (tmp_path / "pets" / "dogs" / "bomb.png").unlink()
    os.mkfifo(tmp_path / "pets" / "dogs" / "pipe.png")  # a pipe or device among the images is passed over
    assert len(ImageStore.build(tmp_path / "s5", tmp_path / "pets", 8, 3, 0.0, 0, progress=False).images) == 6
    with pytest.raises(GenlabError, match="^/dev/zero: not a regular file or folder$"):
        ImageStore.build(tmp_path / "s6", Path("/dev/zero"), 8, 3, 0.0, 0, progress=False)


def test_mnist_download_from_a_local_server_is_cached_and_checked(tmp_path, monkeypatch):
    from genlab.datasets import images as image_data
    from genlab.datasets.named import resolve_source

    served = tmp_path / "served"
    write_mnist(served)
    for name in ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"]:
        (served / name).write_bytes((served / name.replace("train", "t10k")).read_bytes())
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("GENLAB_MNIST_URL", f"http://127.0.0.1:{server.server_address[1]}/")
        with pytest.raises(GenlabError, match="sha256 mismatch"):  # the fixture is not the real MNIST
            resolve_source("mnist", progress=False)
        sums = {n: hashlib.sha256((served / n).read_bytes()).hexdigest() for n in image_data.MNIST_SHA256}
        monkeypatch.setattr(image_data, "MNIST_SHA256", sums)
        folder = resolve_source("mnist", progress=False)
        assert sorted(p.name for p in folder.iterdir()) == sorted(sums)
    finally:
        server.shutdown()
    assert resolve_source("mnist", progress=False) == folder  # cached: no server needed any more


# ---- training and generation ---------------------------------------------------------------------


@pytest.mark.parametrize("family", ["gan", "dcgan", "vae", "ddpm"])
def test_each_family_trains_writes_grids_and_generates(tmp_path, family):
    run = train(tiny(tmp_path / family, family))
    samples = sorted(p.name for p in (run.path / "samples").glob("step_*.png"))
    assert samples == ["step_000002.png", "step_000004.png"]
    rows = [r for r in run.path.joinpath("metrics.jsonl").read_text().splitlines()]
    losses = {"gan": ["d_loss", "g_loss"], "dcgan": ["d_loss", "g_loss"], "vae": ["loss", "kl_loss"], "ddpm": ["loss"]}[family]
    assert all(f'"{k}"' in rows[0] for k in losses)
    assert (run.path / "loss.png").is_file()
    gen = load(run.path, device="cpu")
    samples = gen.generate(n=3, seed=5, class_label=7)
    images = [s.image() for s in samples]
    assert [im.size for im in images] == [(8, 8)] * 3 and images[0].mode == "L"
    assert [s.label for s in samples] == [7, 7, 7] and samples[0].pixels.shape == (8, 8, 1)
    again = gen.generate(n=3, seed=5, class_label=7)
    assert all(np.array_equal(a.pixels, b.pixels) for a, b in zip(samples, again))
    with pytest.raises(GenlabError, match="--class: 10 is not a class"):
        gen.generate(n=1, class_label=10)


def test_the_fixed_noise_grid_is_the_same_noise_at_every_eval(tmp_path):
    # With a learning rate far below float32's resolution the weights never change (0 is refused as a
    # config error), so grids from fixed noise must be identical.
    run = train(tiny(tmp_path / "r", "gan", train={"lr": 1e-30}))
    a, b = (run.path / "samples" / "step_000002.png").read_bytes(), (run.path / "samples" / "step_000004.png").read_bytes()
    assert a == b


def test_ddpm_resume_gives_the_weights_of_an_uninterrupted_run(tmp_path):
    straight = train(tiny(tmp_path / "straight", "ddpm", steps=4))
    tree = tiny(tmp_path / "resumed", "ddpm", steps=2)
    train(tree)
    resumed = train(tiny(tmp_path / "resumed", "ddpm", steps=4))
    from genlab.core.runs import load_tensors

    a, b = load_tensors(straight.path / "model.safetensors"), load_tensors(resumed.path / "model.safetensors")
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_ddpm_samplers_steps_and_guidance(tmp_path):
    run = train(tiny(tmp_path / "d", "ddpm", steps=6, train={"lr": 3e-3}))
    gen = load(run.path, device="cpu")
    ddim10 = gen.generate_array(4, seed=1, steps=10, sampler="ddim")
    assert np.array_equal(ddim10, gen.generate_array(4, seed=1, steps=10, sampler="ddim"))
    assert not np.array_equal(ddim10, gen.generate_array(4, seed=1, steps=10, sampler="ddpm"))
    noise, y = gen.pipeline.noise(4, 1), torch.arange(4)
    plain, guided = (gen.pipeline.images(noise, y, 1, 5, "ddim", g) for g in (1.0, 3.0))
    assert plain.shape == (4, 1, 8, 8) and not torch.equal(plain, guided)
    with pytest.raises(GenlabError, match="--sampler"):
        gen.generate_array(1, seed=1, sampler="euler")


def test_sample_writes_grid_single_images_and_interpolation(tmp_path, cli):
    from PIL import Image

    run = train(tiny(tmp_path / "v", "vae", steps=2))
    gen = load(run.path, device="cpu")
    assert cli("sample", run.path, "--n", "5", "--seed", "0", "--out", tmp_path / "grid.png").returncode == 0
    assert Image.open(tmp_path / "grid.png").size[0] > 32 and len(list((tmp_path / "grid").glob("*.png"))) == 5
    single = np.asarray(Image.open(tmp_path / "grid" / "0000.png"))
    assert single.shape == (8, 8) and np.array_equal(single, gen.generate(5, seed=0)[0].pixels[..., 0])
    assert cli("sample", run.path, "--n", "6", "--seed", "0", "--out", tmp_path / "strip.png", "--interpolate").returncode == 0
    strip = Image.open(tmp_path / "strip.png")
    assert strip.size[0] > 5 * strip.size[1]  # one row of 6 frames
    frames = gen.interpolate(0, 1, frames=3)
    assert np.array_equal(frames[0], gen.generate_array(1, seed=0, class_label=0)[0])


@pytest.mark.xdist_group("shared-caches")  # python-docs and the digits features, built once
def test_evaluate_reports_fid_kid_precision_recall_and_accepts_torchscript(tmp_path, monkeypatch):
    run = train(tiny(tmp_path / "g", "gan", steps=2))
    gen = load(run.path, device="cpu")
    r = gen.evaluate(n=100, progress=False)
    assert r["n_generated"] == 100 and r["n_real"] == 1797 and r["feature_extractor"] == "genlab-cnn (classes)"
    assert r["fid"] > 0 and 0 <= r["precision"] <= 1 and 0 <= r["recall"] <= 1 and r["feature_extractor_accuracy"] > 0.5
    assert gen.evaluate(n=100, progress=False)["fid"] == r["fid"]  # cached extractor, same seed: same number

    class Pool(torch.nn.Module):
        def forward(self, x):
            return torch.nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)

    path = tmp_path / "features.pt"
    torch.jit.script(Pool()).save(str(path))
    r2 = gen.evaluate(n=100, progress=False, features=str(path))
    assert r2["feature_extractor"] == "torchscript:features.pt" and r2["fid"] != r["fid"]
