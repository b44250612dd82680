"""Images: a folder, IDX/CIFAR/npz files or a named data set, modelled by a GAN, DCGAN, VAE or diffusion U-Net.

    source -> ImageStore (decoded once, memmap) -> model (genlab.models) -> objective -> Trainer
    run dir -> ImageGenerator: generate / interpolate / evaluate (FID, KID, precision, recall)

At every eval the trainer writes `samples/step_<step>.png`, a grid drawn
from the same fixed noise each time, so one watches the same latents improve.
"""

from __future__ import annotations

import copy
import json
import math
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from genlab.core.config import RunConfig, load_config
from genlab.core.errors import GenlabError
from genlab.core.families import family_of, names
from genlab.core.files import atomic_write_json
from genlab.core.runs import RunDir
from genlab.core.samples import ImageSample
from genlab.core.weights import load_weights
from genlab.datasets import resolve_source
from genlab.datasets.batches import SeededBatches
from genlab.datasets.images import ImageBatches, ImageStore, to_model_range, to_uint8
from genlab.datasets.named import cache_dir
from genlab.datasets.records import dataset_images, is_table
from genlab.media.grids import make_grid, save_png
from genlab.metrics.image import classifier_extractor, fid, image_metrics, subsample, torchscript_extractor
from genlab.objectives.augment import parse_policy
from genlab.objectives.diffusion import Denoising
from genlab.objectives.gan import Adversarial
from genlab.objectives.likelihood import PixelLikelihood
from genlab.objectives.vae import ELBO
from genlab.sampling.diffusion import NoiseSchedule
from genlab.sampling.image_pipelines import DiffusionPipeline, pipeline_for
from genlab.tasks.clip import Captions, ClipGenerator, class_words
from genlab.tasks.driver import Training, load_trained

GRID_SEED = 1234  # the fixed noise of the per-eval grids
GAN_FID_IMAGES = 500  # a GAN's eval: FID (genlab features) of this many images from fixed noise
AUTOREGRESSIVE_FID_IMAGES = 256  # `genlab eval` of a PixelCNN: one forward pass per pixel makes sampling slow
AUTOREGRESSIVE_GRID = 16  # a PixelCNN's per-eval grid when data.image.grid_samples is left unset


# ---- pieces ------------------------------------------------------------------------------


def apply_family_defaults(config: RunConfig) -> None:
    """Fill the train fields the user left unset with the family's own defaults (e.g. Adam beta1=0.5 for GANs)."""
    for key, value in family_of(config).train_defaults.items():
        if key not in config.train.model_fields_set:
            setattr(config.train, key, value)


def prepare_store(config: RunConfig, run: RunDir, resume: bool, progress: bool) -> ImageStore:
    """The run's decoded images: built once from data.source, reused on resume."""
    if resume and (run.data / "header.json").is_file():
        return ImageStore(run.data)
    opts, data = config.data.image, config.data
    source = (dataset_images(data.source, opts.image_column, opts.label_column, data.dataset_split)
              if data.source.startswith("hf:") or is_table(data.source) else resolve_source(data.source, progress))
    return ImageStore.build(run.data, source, opts.size, opts.channels, data.val_fraction, config.train.seed, progress)


def num_classes_of(config: RunConfig, store: ImageStore) -> int:
    if is_text_conditioned(config):
        return 0
    return len(store.classes) if store.classes and config.data.image.use_labels else 0


def is_text_conditioned(config: RunConfig) -> bool:
    return getattr(config.model, "condition", "class") == "text"


def text_defaults(config: RunConfig) -> None:
    """A text-to-image run: its clip run must exist, and the U-Net takes that run's embedding width."""
    if not config.model.text_encoder:
        raise GenlabError('model.text_encoder: a text-conditioned run needs a clip run (--set model.text_encoder=runs/clip)')
    clip = load_config(RunDir(config.model.text_encoder).require().config)
    if clip.task != "clip":
        raise GenlabError(f"model.text_encoder: {config.model.text_encoder} is a {clip.task} run, not a clip run")
    config.model.text_dim = clip.model.embed_dim


class CaptionEmbeddings(SeededBatches):
    """Image batches with a caption drawn for each image and embedded by the clip run's text encoder:
    (images (B, C, H, W), caption embeddings (B, D))."""

    def __init__(self, images: ImageBatches, captions, encoder):
        super().__init__(0)
        self.images, self.captions, self.encoder = images, captions, encoder
        self.labels = np.asarray(images.labels) if images.labels is not None else None

    def __next__(self):
        pick = torch.randint(0, len(self.images.rows), (self.images.batch_size,), generator=self.images.generator).numpy()
        rows = np.sort(self.images.rows[pick])
        x = to_model_range(self.images.images[rows], self.images.pixel_range)
        texts = self.captions.for_rows(rows, self.labels[rows] if self.labels is not None else None, self.generator)
        return x, torch.from_numpy(self.encoder.embed_texts(texts))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"images": self.images.generator.get_state(), "captions": self.generator.get_state()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.images.generator.set_state(state["images"])
        self.generator.set_state(state["captions"])


def check_family(config: RunConfig) -> None:
    if family_of(config).kind != "image":
        raise GenlabError(f"model: {config.model.name!r} is not an image model (choose from {', '.join(names('image'))})")


def build_model(config: RunConfig, store: ImageStore) -> torch.nn.Module:
    check_family(config)
    h, w, c = store.shape
    return family_of(config).model(config.model, (c, h, w), num_classes_of(config, store), tuple(config.data.image.pixel_range))


def build_objective(config: RunConfig, model: torch.nn.Module):
    m, sampler = config.model, family_of(config).sampler
    if sampler == "gan":
        return Adversarial(model, m.loss, getattr(m, "r1_gamma", 0.0), getattr(m, "r1_interval", 1),
                           getattr(m, "pl_weight", 0.0), getattr(m, "pl_interval", 4), parse_policy(getattr(m, "augment", "")))
    if sampler == "vae":
        return ELBO(model, m.kl_weight)
    if sampler == "autoregressive":
        return PixelLikelihood(model)

    conditional = model.num_classes or m.condition == "text"
    return Denoising(model, NoiseSchedule(m.schedule, m.timesteps), m.prediction, m.p_uncond if conditional else 0.0)


def likelihood_units(config: RunConfig, model, nats_per_dim: float) -> dict:
    """An autoregressive model's val loss in the units papers use: bits per dimension, and for binarized
    images nats per image."""
    if family_of(config).sampler != "autoregressive":
        return {}
    units = {"val_bits_per_dim": round(nats_per_dim / math.log(2), 5)}
    if model.levels == 2:
        units["val_nats_per_image"] = round(nats_per_dim * math.prod(model.shape), 3)
    return units


# ---- training ----------------------------------------------------------------------------


class ImageTask:
    """The task protocol (genlab.tasks.driver) for images."""

    name = "image"
    compiles = False

    @property
    def Generator(self) -> type:
        return ImageGenerator

    def defaults(self, config: RunConfig) -> RunConfig:
        check_family(config)
        config = config.model_copy(deep=True)
        apply_family_defaults(config)
        if is_text_conditioned(config):
            text_defaults(config)
        return config

    def prepare(self, config: RunConfig, run: RunDir, resume: bool, progress: bool) -> ImageStore:
        store = prepare_store(config, run, resume, progress)
        if is_text_conditioned(config) and not (run.data / "captions.json").is_file():
            atomic_write_json(run.data / "captions.json", Captions.build(config, store).data)
        return store

    def reopen(self, config: RunConfig, run: RunDir) -> ImageStore:
        return ImageStore(run.data)

    def build_model(self, config: RunConfig, store: ImageStore) -> torch.nn.Module:
        return build_model(config, store)

    def training(self, config: RunConfig, run: RunDir, store: ImageStore, model: torch.nn.Module, device: torch.device) -> Training:
        # Long because its hooks (evaluate, write_samples) are closures over the run's state, kept together.
        opts = config.data.image
        batches = ImageBatches(store, store.indices("train"), config.train.batch_size, config.train.seed, tuple(opts.pixel_range), opts.use_labels)
        objective = build_objective(config, model)
        sample_model = copy.deepcopy(model).to(device)  # holds the weights the grids are drawn with (EMA when on)
        generator = ImageGenerator.from_parts(run, config, store, sample_model, device)
        if generator.text_conditioned:
            batches = CaptionEmbeddings(batches, generator.captions, generator.text_encoder)
        val_rows = store.indices("val")

        gan_reference: dict = {}  # the feature extractor and the real images' features, made at the first eval

        sampler = family_of(config).sampler

        def gan_fid(weights: dict | None) -> dict:
            # GANs have no held-out likelihood, and their losses do not track quality: they are judged (and
            # their best weights kept) by FID on genlab's features, from the same noise at every eval, of the
            # weights samples are drawn with (the average, with train.ema_decay); at the end, of those kept.

            if not gan_reference:
                extractor = classifier_extractor(store, device, cache_dir(), progress=False)
                real = np.asarray(store.images)[subsample(len(store.images), 2000, 0)]
                gan_reference.update(extractor=extractor, real=extractor(real))
            judged = model
            if weights is not None:
                load_weights({"model": sample_model}, weights, run.weights)
                judged = sample_model.eval()
            pipeline = pipeline_for(family_of(config), judged, config, device)
            y = torch.arange(GAN_FID_IMAGES, device=device) % model.num_classes if model.num_classes else None
            fake = to_uint8(pipeline.images(pipeline.noise(GAN_FID_IMAGES, GRID_SEED), y, GRID_SEED), tuple(opts.pixel_range))
            return {"fid_genlab_features": round(fid(gan_reference["real"], gan_reference["extractor"](fake)), 4)}

        def evaluate(full: bool = False, weights: dict | None = None) -> dict:
            if sampler == "gan":  # judged by FID, having no likelihood
                return gan_fid(weights)
            if len(val_rows) == 0:
                return {}
            total, count = 0.0, 0
            rows_seen = len(val_rows) if full else min(len(val_rows), config.train.batch_size * config.train.eval_batches)
            with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
                torch.manual_seed(0)  # the same noise and timesteps at every eval: comparable numbers
                for i in range(0, rows_seen, config.train.batch_size):
                    rows = val_rows[i: i + config.train.batch_size]
                    x = to_model_range(store.images[rows], tuple(opts.pixel_range)).to(device)
                    if generator.text_conditioned:  # the captions of a fixed draw, the same at every eval
                        labels = np.asarray(store.labels[rows], dtype=np.int64) if store.labels is not None else None
                        texts = generator.captions.for_rows(rows, labels, torch.Generator().manual_seed(i))
                        y = torch.from_numpy(generator.text_encoder.embed_texts(texts)).to(device)
                    elif model.num_classes:
                        y = torch.from_numpy(np.asarray(store.labels[rows], dtype=np.int64)).to(device)
                    else:
                        y = torch.full((len(rows),), -1, device=device)
                    for _, loss, _ in objective.losses((x, y)):
                        total += loss.item() * len(rows)
                        count += len(rows)
            return {"val_loss": round(total / count, 5)} | likelihood_units(config, model, total / count)

        # A PixelCNN makes one forward pass per pixel: its grid is smaller unless the user asked for a size.
        grid_size = AUTOREGRESSIVE_GRID if sampler == "autoregressive" and "grid_samples" not in opts.model_fields_set else opts.grid_samples

        def write_samples(step: int, weights: dict) -> None:
            load_weights({"model": sample_model}, weights, run.weights)
            sample_model.eval()
            images = generator.generate_array(grid_size, seed=GRID_SEED)
            save_png(make_grid(images, generator.grid_columns(len(images))), run.samples / f"step_{step:06d}.png")
            if family_of(config).can("reconstruct") and len(val_rows):  # reconstructions: originals above, decoded means below
                rows = val_rows[: generator.grid_columns(opts.grid_samples)]
                originals = np.asarray(store.images[rows])
                labels = np.asarray(store.labels[rows]) if store.labels is not None else None
                pair = np.concatenate([originals, generator.reconstruct(originals, labels)])
                save_png(make_grid(pair, len(rows)), run.samples / f"reconstruction_{step:06d}.png")

        select = "fid_genlab_features" if sampler == "gan" else "val_loss"
        return Training(objective, batches, evaluate, write_samples, items_per_batch=config.train.batch_size, item_name="img",
                        select_metric=select, evaluate_takes_weights=sampler == "gan")


# ---- generation --------------------------------------------------------------------------


def slerp(a: torch.Tensor, b: torch.Tensor, w: float) -> torch.Tensor:
    """Spherical interpolation of two Gaussian noise tensors: stays on the shell where Gaussian samples live."""
    af, bf = a.flatten(), b.flatten()
    omega = torch.arccos(torch.clamp(torch.dot(af / af.norm(), bf / bf.norm()), -1.0, 1.0))
    if omega.abs() < 1e-6:
        return (1 - w) * a + w * b
    return (torch.sin((1 - w) * omega) * a + torch.sin(w * omega) * b) / torch.sin(omega)


def reference_images(store: ImageStore, data: str | None, progress: bool) -> tuple[np.ndarray, str]:
    """The real images a run's samples are compared with: its own data set, or `data` decoded like it."""
    if data is None:
        return np.asarray(store.images), f"run data ({len(store.images)} images)"
    h, w, c = store.shape
    with tempfile.TemporaryDirectory() as tmp:
        other = ImageStore.build(Path(tmp) / "data", resolve_source(data, progress), h, c, 0.0, 0, progress)
        if other.shape != store.shape:
            raise GenlabError(f"{data}: images are {other.shape}, the run's are {store.shape}")
        return np.array(other.images), data


class ImageGenerator:
    """Generate from an image run: `generate(n, seed, class_label, steps, sampler, guidance)` -> list[ImageSample]."""

    modality = "image"

    def __init__(self, run_dir: Path | str, device: str = "auto"):
        self._init(*load_trained(run_dir, device))

    @classmethod
    def from_parts(cls, run: RunDir, config: RunConfig, store: ImageStore, model, device) -> "ImageGenerator":
        self = cls.__new__(cls)
        self._init(run, config, store, model, device)
        return self

    def _init(self, run, config, store, model, device) -> None:
        self.run, self.config, self.store, self.model, self.device = run, config, store, model, device
        self.opts = config.data.image
        self.pixel_range = tuple(self.opts.pixel_range)
        self.family = family_of(config)
        self.pipeline = pipeline_for(self.family, model, config, device)  # how this kind of model samples
        if self.text_conditioned:
            self.text_encoder = ClipGenerator(config.model.text_encoder, str(device))
            self.captions = Captions(json.loads((run.data / "captions.json").read_text()))

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def is_diffusion(self) -> bool:
        return isinstance(self.pipeline, DiffusionPipeline)

    @property
    def schedule(self):
        """A diffusion run's noise schedule (its ONNX int8 export calibrates on noised images)."""
        return self.pipeline.schedule

    @property
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of the images it makes."""
        h, w, _ = self.store.shape
        return w, h

    @property
    def classes(self) -> list[str]:
        """The class names a class-conditional run was trained on ([] for others)."""
        return list(self.store.classes or []) if self.num_classes else []

    def grid_columns(self, n: int) -> int:
        """One column per class for class-conditional grids (labels, or a text run's default prompts, cycle through
        the classes), else square-ish."""
        if self.num_classes and n >= self.num_classes:
            return self.num_classes
        if self.text_conditioned and self.captions.classes and n >= len(self.captions.classes):
            return len(self.captions.classes)
        return max(1, math.ceil(math.sqrt(n)))

    @property
    def text_conditioned(self) -> bool:
        return is_text_conditioned(self.config)

    def default_prompts(self, n: int) -> list[str]:
        """What a text-conditioned run draws when no prompt is given: its classes in turn ("a handwritten seven"),
        or the captions of its first val images."""
        if self.captions.classes:
            return [f"a handwritten {class_words(self.captions.classes[i % len(self.captions.classes)])[-1]}" for i in range(n)]
        rows = self.store.indices("val")[:n] if len(self.store.indices("val")) else np.arange(n)
        return [self.captions.per_image[int(rows[i % len(rows)])] for i in range(n)]

    def check_condition(self, class_label: int | None, prompt) -> None:
        """A class for a text-conditioned run, or a prompt for another, is a one-line error."""
        if self.text_conditioned and class_label is not None:
            raise GenlabError("--class: this run is conditioned on text; give --prompt")
        if not self.text_conditioned and prompt is not None:
            raise GenlabError("--prompt: this image run is not conditioned on text (model.condition = \"text\")")

    def _labels(self, n: int, class_label: int | None, prompt: str | list[str] | None = None) -> torch.Tensor | None:
        """The condition of n samples: class ids (B,) for class-conditional runs, caption embeddings (B, D) for
        text-conditional ones, None for unconditional ones."""
        self.check_condition(class_label, prompt)
        if self.text_conditioned:
            prompts = self.default_prompts(n) if prompt is None else [prompt] * n if isinstance(prompt, str) else list(prompt)
            return torch.from_numpy(self.text_encoder.embed_texts(prompts)).to(self.device)
        if not self.num_classes:
            if class_label is not None:
                raise GenlabError("--class: this run was trained without labels")
            return None
        if class_label is None:
            return torch.arange(n, device=self.device) % self.num_classes
        if not 0 <= class_label < self.num_classes:
            names = ", ".join(f"{i}={c}" for i, c in enumerate(self.store.classes))
            raise GenlabError(f"--class: {class_label} is not a class of this run ({names})")
        return torch.full((n,), class_label, device=self.device, dtype=torch.long)

    def check_truncation(self, truncation: float | None) -> None:
        if truncation is not None and not self.family.can("truncation"):
            raise GenlabError(f"--truncation: only style-based runs (stylegan) have a w space to truncate, not {self.config.model.name}")
        if truncation is not None and not 0 <= truncation <= 1:
            raise GenlabError("--truncation: must be between 0 (the average image) and 1 (no truncation)")

    @torch.no_grad()
    def trajectory(self, n: int = 4, seed: int | None = None, class_label: int | None = None, steps: int | None = None,
                   sampler: str | None = None, guidance: float | None = None, frames: int = 4, prompt: str | None = None):
        """Yield (step, total steps, images (n, H, W, C) uint8) about `frames` times as a diffusion model's images
        sharpen, the last being exactly `generate_array(n, seed, ...)`; other families yield their images once."""
        seed = seed if seed is not None else int(torch.seed() % (1 << 31))
        y, noise = self._labels(n, class_label, prompt), self.pipeline.noise(n, seed)
        for i, total, x in self.pipeline.frames(noise, y, seed, steps, sampler, guidance, frames):
            yield i, total, to_uint8(x, self.pixel_range)

    def generate_array(self, n: int = 16, seed: int | None = None, class_label: int | None = None, steps: int | None = None,
                       sampler: str | None = None, guidance: float | None = None, batch_size: int = 500,
                       progress: bool = False, truncation: float | None = None, prompt: str | None = None) -> np.ndarray:
        """n images as (n, H, W, C) uint8; the same seed gives the same images. `truncation` (stylegan): psi;
        `prompt`: what a text-conditioned run draws."""
        self.check_truncation(truncation)
        seed = seed if seed is not None else int(torch.seed() % (1 << 31))
        labels, out = self._labels(n, class_label, prompt), []
        for b, start in enumerate(range(0, n, batch_size)):
            m = min(batch_size, n - start)
            y = labels[start: start + m] if labels is not None else None
            x = self.pipeline.images(self.pipeline.noise(m, seed + 7919 * b), y, seed + 7919 * b, steps, sampler, guidance,
                                     progress, truncation)
            out.append(to_uint8(x, self.pixel_range))
        return np.concatenate(out)

    def generate(self, n: int = 16, seed: int | None = None, class_label: int | None = None, steps: int | None = None,
                 sampler: str | None = None, guidance: float | None = None, progress: bool = False,
                 truncation: float | None = None, prompt: str | None = None) -> list[ImageSample]:
        """n images (`.pixels`, `.image()`). Diffusion: `sampler` ddpm|ddim with `steps`, `guidance` scale
        (class-conditional runs); stylegan: `truncation` psi; without class_label a conditional run cycles
        through the classes."""
        seed = seed if seed is not None else int(torch.seed() % (1 << 31))
        labels = None if self.text_conditioned else self._labels(n, class_label)
        images = self.generate_array(n, seed, class_label, steps, sampler, guidance, progress=progress, truncation=truncation,
                                     prompt=prompt)
        return [ImageSample(im, seed, int(labels[i]) if labels is not None else None) for i, im in enumerate(images)]

    @torch.no_grad()
    def interpolate(self, seed_a: int, seed_b: int, frames: int = 8, class_label: int | None = None, steps: int | None = None,
                    guidance: float | None = None) -> np.ndarray:
        """(frames, H, W, C) uint8 along a spherical path between the noise of two seeds (DDIM for diffusion)."""
        a, b = self.pipeline.noise(1, seed_a), self.pipeline.noise(1, seed_b)
        noise = torch.cat([slerp(a, b, i / max(1, frames - 1)) for i in range(frames)])
        y = self._labels(frames, class_label if class_label is not None else (0 if self.num_classes else None))
        x = self.pipeline.images(noise, y, seed_a, steps, "ddim", guidance)
        return to_uint8(x, self.pixel_range)

    @torch.no_grad()
    def style_mix(self, rows: int = 4, columns: int = 6, seed: int = 0, class_label: int | None = None,
                  truncation: float | None = None, coarse_layers: int | None = None) -> np.ndarray:
        """stylegan only: the style-mixing grid as ((rows + 1) * (columns + 1), H, W, C) uint8, row-major: a blank
        corner, the column sources across the top, the row sources down the left, and in cell (r, c) row r's
        coarse styles with column c's fine ones."""
        if not self.family.can("style_mix"):
            raise GenlabError(f"--style-mix: only style-based runs (stylegan) mix styles, not {self.config.model.name}")
        self.check_truncation(truncation)
        psi = 1.0 if truncation is None else truncation
        z = self.pipeline.noise(rows + columns, seed)
        y = self._labels(rows + columns, class_label)
        y_rows, y_cols = (y[:rows], y[rows:]) if y is not None else (None, None)
        m = self.model
        mixed = m.style_mix(z[:rows], z[rows:], y_rows, y_cols, psi, coarse_layers)  # (R, C, ch, H, W)
        row_src, col_src = m.generate(z[:rows], y_rows, psi), m.generate(z[rows:], y_cols, psi)
        blank = torch.full_like(row_src[:1], self.pixel_range[1])
        top = torch.cat([blank, col_src])  # (C + 1, ch, H, W)
        body = torch.cat([row_src[:, None], mixed], dim=1)  # (R, C + 1, ch, H, W)
        grid = torch.cat([top, body.flatten(0, 1)])
        return to_uint8(grid, self.pixel_range)

    @torch.no_grad()
    def reconstruct(self, images: np.ndarray, labels: np.ndarray | None = None) -> np.ndarray:
        """VAE only: (N, H, W, C) uint8 -> decoded posterior means, same shape."""
        if not self.family.can("reconstruct"):
            raise GenlabError(f"reconstruct: only a VAE reconstructs images, not {self.config.model.name}")
        x = to_model_range(images, self.pixel_range).to(self.device)
        y = torch.as_tensor(labels, dtype=torch.long, device=self.device) if labels is not None and self.num_classes else None
        if self.num_classes and y is None:
            y = torch.zeros(len(images), dtype=torch.long, device=self.device)
        mu, _ = self.model.encode(x, y)
        return to_uint8(self.model.decode(mu, y), self.pixel_range)

    # ---- evaluation --------------------------------------------------------------------

    def evaluate(self, data: str | None = None, seed: int = 0, n: int | None = None, steps: int | None = None,
                 sampler: str | None = None, guidance: float | None = None, features: str | None = None,
                 progress: bool = True, truncation: float | None = None) -> dict:
        """FID, KID and k-NN precision/recall of n generated images against the real ones (default: the run's
        data set, at most 10,000 images; n defaults to min(real, 2000)). `features` (or $GENLAB_INCEPTION)
        names a TorchScript feature network; by default a CNN trained on the run's data set is used."""
        import os

        real, where = reference_images(self.store, data, progress)
        real = real[subsample(len(real), 10_000, seed)]
        autoregressive = self.family.sampler == "autoregressive"
        n = n or min(len(real), AUTOREGRESSIVE_FID_IMAGES if autoregressive else 2000)
        features = features or os.environ.get("GENLAB_INCEPTION")
        extractor = torchscript_extractor(Path(features), self.device) if features else classifier_extractor(self.store, self.device, cache_dir(), progress)
        t0 = time.perf_counter()
        fake = self.generate_array(n, seed, steps=steps, sampler=sampler, guidance=guidance, progress=progress, truncation=truncation)
        if self.device.type == "cuda":
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        # Said beside the figures: FID on genlab's features is not comparable with an Inception FID.
        results = {"data": where, "n_real": len(real), "n_generated": n, "feature_extractor": extractor.name,
                   "fid_features": "genlab" if not features else "torchscript " + Path(features).name}
        if "held_out_accuracy" in extractor.info:
            results["feature_extractor_accuracy"] = extractor.info["held_out_accuracy"]
        results |= image_metrics(extractor(real), extractor(fake))
        results["sampling_images_per_s"] = n / seconds
        results |= self.pipeline.settings(steps, sampler)
        if truncation is not None:
            results["truncation"] = truncation
        if autoregressive and data is None:
            results |= self.likelihood()
        return results

    @torch.no_grad()
    def likelihood(self, batch_size: int = 256) -> dict:
        """An autoregressive run's exact likelihood of the whole val split (bits per dimension; nats per image
        when binarized)."""
        rows = self.store.indices("val")
        if len(rows) == 0:
            return {}
        self.model.eval()
        total = 0.0
        for i in range(0, len(rows), batch_size):
            part = rows[i: i + batch_size]
            x = to_model_range(self.store.images[part], self.pixel_range).to(self.device)
            y = torch.from_numpy(np.asarray(self.store.labels[part], dtype=np.int64)).to(self.device) if self.num_classes else None
            total += float(self.model.nll(x, y)) * len(part)
        units = likelihood_units(self.config, self.model, total / len(rows))
        return {"val_images": len(rows), **{k.removeprefix("val_"): v for k, v in units.items()}}


TASK = ImageTask()
