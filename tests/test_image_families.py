"""The autoregressive PixelCNN and the style-based generator: their defining properties, and train -> sample ->
eval from the CLI on digits."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from genlab.api import load, train
from genlab.core.config import validate_config
from genlab.models.pixelcnn import PixelCNN, PixelCNNConfig
from genlab.core.runs import load_tensors


def tiny(out, model: dict, steps=4, **extra):
    train_cfg = {"max_steps": steps, "batch_size": 16, "eval_interval": 2, "checkpoint_interval": 2, "eval_batches": 1,
                 "progress": False, **extra.pop("train", {})}
    return validate_config({"task": "image", "out": str(out), "data": {"source": "digits", "image": {"grid_samples": 4}},
                            "model": model, "train": train_cfg, **extra})


PIXELCNN = {"name": "pixelcnn", "channels": 8, "n_layers": 2, "head_channels": 16}


# ---- PixelCNN ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
def test_changing_a_pixel_never_changes_the_predictions_for_it_or_earlier_pixels(channels):
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(channels=8, n_layers=3, kernel_size=3, levels=16), (channels, 7, 6), num_classes=3).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, channels, 7, 6, generator=g) * 2 - 1
    y = torch.tensor([0, 2])
    with torch.no_grad():
        base = model(x, y)  # (B, levels, C, H, W)
        for i, j in [(0, 0), (2, 3), (3, 0), (3, 5), (6, 5)]:
            changed = x.clone()
            changed[:, :, i, j] = -changed[:, :, i, j]
            after = model(changed, y)
            p = i * 6 + j
            flat_base, flat_after = base.flatten(3), after.flatten(3)  # raster order in the last axis
            assert torch.equal(flat_base[..., : p + 1], flat_after[..., : p + 1]), f"pixel ({i},{j}) leaked backwards"
            if p < 7 * 6 - 1:
                assert not torch.allclose(flat_base[..., p + 1:], flat_after[..., p + 1:]), f"pixel ({i},{j}) had no effect"


def test_the_vertical_stack_leaves_no_blind_spot():
    # A masked 3x3 PixelCNN never sees the pixels up and to the right beyond its cone; the two stacks do:
    # the prediction at (3, 1) depends on (0, 5), three rows up and four columns right.
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(channels=8, n_layers=4, kernel_size=3, levels=4), (1, 6, 6)).eval()
    x = torch.zeros(1, 1, 6, 6)
    changed = x.clone()
    changed[0, 0, 0, 5] = 1.0
    with torch.no_grad():
        assert not torch.allclose(model(x)[..., 3, 1], model(changed)[..., 3, 1])


def test_sampling_draws_each_pixel_by_inverting_its_cdf_at_the_noise():
    torch.manual_seed(0)
    model = PixelCNN(PixelCNNConfig(channels=8, n_layers=2, kernel_size=3, levels=4), (1, 3, 3), pixel_range=(0.0, 1.0)).eval()
    noise = torch.randn(5, 1, 3, 3, generator=torch.Generator().manual_seed(2))
    images = model.generate(noise)
    assert torch.equal(images, model.generate(noise))  # the noise fixes the image
    levels = torch.round(images * 3).long()
    with torch.no_grad():
        probs = model.logits(model.to_input(torch.zeros(5, 1, 3, 3, dtype=torch.long)), None)[:, :, 0, 0, 0].softmax(1)
    u = 0.5 * (1 + torch.erf(noise[:, 0, 0, 0] / 2 ** 0.5))
    expected = (probs.cumsum(1) < u[:, None]).sum(1).clamp(max=3)  # the first level whose CDF passes u
    assert torch.equal(levels[:, 0, 0, 0], expected)


def test_pixelcnn_trains_on_digits_and_reports_bits_per_dimension(tmp_path, cli):
    run = train(tiny(tmp_path / "p", PIXELCNN, steps=6, train={"lr": 3e-3}))
    rows = [json.loads(line) for line in (run.path / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_bits_per_dim" in r]
    assert evals and all(r["val_bits_per_dim"] == pytest.approx(r["val_loss"] / np.log(2), abs=1e-4) for r in evals)
    assert evals[-1]["val_bits_per_dim"] < 8.0  # below a uniform guess over 256 levels
    assert (run.path / "samples" / "step_000006.png").is_file()

    r = cli("eval", run.path, "--n", "8")
    assert r.returncode == 0, r.stderr
    report = json.loads((run.path / "eval.json").read_text())
    assert report["val_images"] > 100 and 0 < report["bits_per_dim"] < 8 and "fid" in report

    a = load(run.path, device="cpu").generate_array(4, seed=3, class_label=7)
    assert a.shape == (4, 8, 8, 1) and np.array_equal(a, load(run.path, device="cpu").generate_array(4, seed=3, class_label=7))


def test_binarized_pixelcnn_reports_nats_per_image_and_resumes_exactly(tmp_path):
    model = PIXELCNN | {"levels": 2}
    straight = train(tiny(tmp_path / "straight", model, steps=4))
    rows = [json.loads(line) for line in (straight.path / "metrics.jsonl").read_text().splitlines()]
    row = next(r for r in rows if "val_nats_per_image" in r)
    assert row["val_nats_per_image"] == pytest.approx(row["val_loss"] * 64, abs=1e-2)  # 8x8 digits, one channel
    train(tiny(tmp_path / "resumed", model, steps=2))
    resumed = train(tiny(tmp_path / "resumed", model, steps=4))
    a, b = (load_tensors(r.path / "model.safetensors") for r in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    images = load(straight.path, device="cpu").generate_array(3, seed=0)
    assert set(np.unique(images)) <= {0, 255}  # two levels: black and white


# ---- StyleGAN ----------------------------------------------------------------------------------------

STYLEGAN = {"name": "stylegan", "latent_dim": 16, "mapping_layers": 2, "channels": 8, "n_layers": 1}


def test_demodulation_makes_a_layer_blind_to_the_scale_of_its_style():
    from genlab.models.stylegan import ModulatedConv

    torch.manual_seed(0)
    x, w = torch.randn(2, 4, 6, 6), torch.randn(2, 8)
    demod, plain = ModulatedConv(4, 5, 3, 8), ModulatedConv(4, 5, 3, 8, demodulate=False)
    plain.load_state_dict(demod.state_dict())
    before = demod(x, w), plain(x, w)
    with torch.no_grad():
        for layer in (demod, plain):  # every style scaled by 3
            layer.style.weight.mul_(3)
            layer.style.bias.mul_(3)
    torch.testing.assert_close(demod(x, w), before[0])  # unit-norm weights whatever the style's scale
    torch.testing.assert_close(plain(x, w), 3 * before[1])
    # Demodulated, each output channel has the statistics of a unit-norm filter: per image, the sum of squared
    # modulated weights of each output channel is 1.
    s = demod.style(w)
    weight = demod.weight[None] * s[:, None, :, None, None]
    weight = weight * torch.rsqrt(weight.pow(2).sum(dim=(2, 3, 4), keepdim=True) + 1e-8)
    torch.testing.assert_close(weight.pow(2).sum(dim=(2, 3, 4)), torch.ones(2, 5))


def test_truncation_and_style_mixing_do_what_they_say(tmp_path):
    from genlab.models.stylegan import StyleGAN, StyleGANConfig

    torch.manual_seed(0)
    model = StyleGAN(StyleGANConfig(**STYLEGAN), (1, 8, 8)).eval()
    model.generator.w_avg.normal_()
    z = torch.randn(3, 16)
    at_average = model.generate(z, truncation=0.0)
    assert torch.allclose(at_average[0], at_average[1]) and torch.allclose(at_average[1], at_average[2])
    assert torch.equal(model.generate(z, truncation=1.0), model.generate(z))
    rows, cols = z[:1], z[1:]
    n = model.generator.synthesis.num_ws
    all_coarse = model.style_mix(rows, cols, coarse_layers=n)  # every style from the row: the row's image
    all_fine = model.style_mix(rows, cols, coarse_layers=0)  # every style from the column: the column's image
    torch.testing.assert_close(all_coarse[0, 1], model.generate(rows)[0])
    torch.testing.assert_close(all_fine[0, 1], model.generate(cols)[1])
    mixed = model.style_mix(rows, cols)[0, 1]
    assert not torch.allclose(mixed, model.generate(rows)[0]) and not torch.allclose(mixed, model.generate(cols)[1])


def test_stylegan_trains_with_r1_resumes_exactly_and_draws_the_mixing_grid(tmp_path, cli):
    straight = train(tiny(tmp_path / "straight", STYLEGAN, steps=4))
    rows = [json.loads(line) for line in (straight.path / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("r1", 0) > 0 for r in rows) and any("fid_genlab_features" in r for r in rows)
    train(tiny(tmp_path / "resumed", STYLEGAN, steps=2))
    resumed = train(tiny(tmp_path / "resumed", STYLEGAN, steps=4))
    a, b = (load_tensors(r.path / "model.safetensors") for r in (straight, resumed))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

    out = tmp_path / "mix.png"
    r = cli("sample", straight.path, "--style-mix", "--seed", "1", "--truncation", "0.7", "--out", out)
    assert r.returncode == 0, r.stderr
    from PIL import Image

    width, height = Image.open(out).size
    assert width / height == pytest.approx(7 / 5, rel=0.05)  # 6 columns + the row sources, 4 rows + the top
    gen = load(straight.path, device="cpu")
    assert np.array_equal(gen.generate_array(4, seed=2, truncation=0.5), gen.generate_array(4, seed=2, truncation=0.5))
    r = cli("sample", straight.path, "--truncation", "1.5", "--out", tmp_path / "x.png")
    assert r.returncode != 0 and "--truncation" in r.stderr


def test_compare_measures_image_runs_on_the_same_images(tmp_path, cli):
    runs = [train(tiny(tmp_path / name, model, steps=2)) for name, model in (("style", STYLEGAN), ("pixels", PIXELCNN))]
    r = cli("compare", *(run.path for run in runs), "--out", tmp_path / "cmp", "--n", "16", "--quiet")
    assert r.returncode == 0, r.stderr
    rows = json.loads((tmp_path / "cmp" / "compare.json").read_text())
    assert [row["family"] for row in rows] == ["stylegan", "pixelcnn"]
    assert all(row["n_generated"] == 16 and row["fid"] > 0 for row in rows)
    assert "bits_per_dim" in rows[1] and "FID" in r.stdout and (tmp_path / "cmp" / "fid.png").is_file()
    other = train(tiny(tmp_path / "other", STYLEGAN, steps=2, data={"source": "digits", "image": {"size": 16}}))
    r = cli("compare", runs[0].path, other.path, "--out", tmp_path / "cmp2", "--quiet")
    assert r.returncode != 0 and "differs" in r.stderr


def test_diff_augment_moves_blanks_and_recolours_each_image_and_lets_gradients_through():
    from genlab.objectives.augment import cutout, diff_augment, parse_policy, translation

    torch.manual_seed(0)
    dots = torch.zeros(64, 1, 16, 16)
    dots[:, 0, 8, 8] = 1.0  # one lit pixel per image
    shifted = translation(dots)
    where = shifted.flatten(1).argmax(1)
    dy, dx = where // 16 - 8, where % 16 - 8
    assert torch.equal(shifted.flatten(1).sum(1), torch.ones(64))  # moved, not lost or smeared
    assert dy.abs().max() <= 2 and dx.abs().max() <= 2 and len(set(zip(dy.tolist(), dx.tolist()))) > 5
    ones = torch.ones(64, 1, 16, 16)
    holes = 1 - cutout(ones)
    rows, cols = holes.amax(3)[:, 0].sum(1), holes.amax(2)[:, 0].sum(1)
    assert torch.equal(holes.flatten(1).sum(1), rows * cols)  # the blanked pixels form one rectangle per image
    assert rows.max() == 8 and cols.max() == 8 and rows.min() < 8  # half the side, clipped at the borders
    x = torch.randn(8, 1, 16, 16, requires_grad=True)
    out = diff_augment(x, parse_policy("color,translation,cutout"))
    assert out.shape == x.shape
    out.square().sum().backward()
    assert x.grad.abs().sum() > 0
    coloured = diff_augment(x.detach(), ("color",))  # per image an affine map of its pixels
    for a, b in zip(x.detach(), coloured):
        assert torch.corrcoef(torch.stack([a.flatten(), b.flatten()]))[0, 1].abs() > 0.9999
    assert diff_augment(x, ()) is x
    with pytest.raises(ValueError, match="'blur'"):
        parse_policy("color,blur")


def test_stylegan_with_path_length_regularization_and_diffaugment_trains_and_resumes_exactly(tmp_path, cli):
    from genlab.models.stylegan import StyleGAN, StyleGANConfig

    torch.manual_seed(0)
    model = StyleGAN(StyleGANConfig(**STYLEGAN), (1, 8, 8))
    lengths = model.path_lengths(torch.randn(4, 16))
    assert lengths.shape == (4,) and torch.isfinite(lengths).all() and (lengths > 0).all()
    lengths.sum().backward()  # the penalty reaches the mapping network and the synthesis
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.generator.parameters())

    regularized = STYLEGAN | {"pl_weight": 2.0, "pl_interval": 1, "augment": "color,translation,cutout"}
    straight = train(tiny(tmp_path / "straight", regularized, steps=4))
    rows = [json.loads(line) for line in (straight.path / "metrics.jsonl").read_text().splitlines()]
    assert any(r.get("path_length", 0) > 0 for r in rows)
    train(tiny(tmp_path / "resumed", regularized, steps=2))
    resumed = train(tiny(tmp_path / "resumed", regularized, steps=4))
    a, b = (load_tensors(r.path / "model.safetensors") for r in (straight, resumed))
    assert all(torch.equal(a[k], b[k]) for k in a)  # the running mean path length is in the checkpoint
    r = cli("train", "image", "--data", "digits", "--model", "stylegan", "--set", "model.augment=color,blur",
            "--out", tmp_path / "bad")
    assert r.returncode != 0 and "blur" in r.stderr and len(r.stderr.strip().splitlines()) == 1
