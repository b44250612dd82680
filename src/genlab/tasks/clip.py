"""Image and text together: a CLIP-style dual encoder trained on images and their captions.

    image source -> ImageStore (decoded once, split by seed) + captions -> CLIP (genlab.models.clip)
        -> symmetric InfoNCE -> Trainer
    run dir -> ClipGenerator: embed images / texts, search images by text, zero-shot classification, recall@k

Captions come from a file (`data.clip.captions`: CSV or JSONL with `image,caption`, image paths relative to
the image folder) or are made from the class labels with several templates ("a photo of a {}", "a handwritten
{}", ...; a class named by a numeral is also called by its word: "7" and "seven"), drawn afresh for each image
at each step. They follow the images' split, so no val image's caption is seen in training. Captions are read
as UTF-8 bytes (ids 1..256, 0 = padding): any query can be embedded.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import torch

from genlab.core.config import RunConfig
from genlab.core.errors import GenlabError
from genlab.core.families import family, names
from genlab.core.files import atomic_write_json, read_text_file
from genlab.core.runs import RunDir
from genlab.datasets import resolve_source
from genlab.datasets.batches import SeededBatches
from genlab.datasets.images import ImageStore, folder_image_files, to_model_range
from genlab.models.clip import contrastive_loss
from genlab.tasks.driver import Training, load_trained

TEMPLATES = ["a photo of a {}", "a picture of a {}", "an image of a {}", "a handwritten {}", "a drawing of a {}", "a {}"]
NUMBER_WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PIXEL_RANGE = (-1.0, 1.0)
VOCAB = 257  # bytes + padding


def encode_captions(texts: list[str], length: int) -> torch.Tensor:
    """Captions -> (N, length) byte ids + 1, 0-padded; a caption longer than `length` bytes is cut."""
    out = torch.zeros(len(texts), length, dtype=torch.long)
    for i, text in enumerate(texts):
        data = list(text.encode("utf-8")[:length])
        out[i, : len(data)] = torch.tensor(data, dtype=torch.long) + 1
    return out


def class_words(name: str) -> list[str]:
    """The names a class goes by in captions: its own, and a numeral's word ("7" -> "seven")."""
    return [name, NUMBER_WORDS[int(name)]] if name.isdigit() and int(name) < 10 else [name]


class Captions:
    """Either one caption per image (from a file) or templates over class names; `for_rows` draws them."""

    def __init__(self, data: dict):
        self.data = data
        self.per_image = data.get("per_image")
        self.classes = data.get("classes")

    @classmethod
    def build(cls, config: RunConfig, store: ImageStore) -> "Captions":
        path = config.data.clip.captions
        if path:
            return cls({"per_image": read_captions(Path(path), resolve_source(config.data.source, False), len(store.images))})
        if not store.classes:
            raise GenlabError(f"{config.data.source}: no labels to make captions from; give data.clip.captions "
                              "(a CSV or JSONL file of image,caption)")
        return cls({"classes": list(store.classes), "templates": TEMPLATES})

    def for_rows(self, rows: np.ndarray, labels: np.ndarray | None, generator: torch.Generator) -> list[str]:
        if self.per_image is not None:
            return [self.per_image[r] for r in rows]
        texts = []
        for label in labels:
            words = class_words(self.classes[int(label)])
            t = int(torch.randint(len(TEMPLATES), (1,), generator=generator))
            w = int(torch.randint(len(words), (1,), generator=generator))
            texts.append(TEMPLATES[t].format(words[w]))
        return texts


def read_captions(path: Path, root: Path, count: int) -> list[str]:
    """One caption per image of the folder `root`, from a CSV (header image,caption) or JSONL file."""
    if not path.is_file():
        raise GenlabError(f"{path}: no such captions file")
    if not root.is_dir():
        raise GenlabError(f"data.clip.captions: {root} is not a folder of image files")
    rows = []
    text = read_text_file(path)
    if path.suffix.lower() == ".jsonl":
        for number, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise GenlabError(f"{path}:{number}: not valid JSON ({e.msg})") from None
                except RecursionError:  # json's parser recurses: arrays nested thousands deep
                    raise GenlabError(f"{path}:{number}: JSON nested too deeply") from None
    else:
        rows = list(csv.DictReader(text.splitlines()))
    by_name = {}
    for number, row in enumerate(rows, 1):
        if not isinstance(row, dict) or not isinstance(row.get("image"), str) or not isinstance(row.get("caption"), str):
            raise GenlabError(f"{path}: row {number} needs the fields `image` and `caption`")
        by_name[Path(row["image"]).as_posix()] = row["caption"]
    names = [f.relative_to(root).as_posix() for f in folder_image_files(root)]
    missing = [n for n in names if n not in by_name]
    if missing:
        raise GenlabError(f"{path}: no caption for {missing[0]} (and {len(missing) - 1} more images)" if len(missing) > 1
                          else f"{path}: no caption for {missing[0]}")
    if len(names) != count:
        raise GenlabError(f"{path}: the folder holds {len(names)} images, the store {count}")
    return [by_name[n] for n in names]


class PairBatches(SeededBatches):
    """(images (B, C, H, W), caption ids (B, L), groups (B,): the class, or the row for per-image captions)."""

    def __init__(self, store: ImageStore, captions: Captions, rows: np.ndarray, batch_size: int, length: int, seed: int):
        if len(rows) == 0:
            raise GenlabError("the training split has no images; lower data.val_fraction")
        self.images = np.asarray(store.images)
        self.labels = np.asarray(store.labels, dtype=np.int64) if store.labels is not None else None
        self.captions, self.rows, self.batch_size, self.length = captions, rows, batch_size, length
        super().__init__(seed)

    def __next__(self):
        pick = torch.randint(0, len(self.rows), (self.batch_size,), generator=self.generator).numpy()
        rows = self.rows[pick]
        labels = self.labels[rows] if self.labels is not None else None
        texts = self.captions.for_rows(rows, labels, self.generator)
        groups = torch.from_numpy(labels if self.captions.per_image is None else rows.astype(np.int64))
        return to_model_range(self.images[rows], PIXEL_RANGE), encode_captions(texts, self.length), groups


class ContrastiveObjective:
    def __init__(self, model):
        self.model, self.loss_of = model, contrastive_loss
        self.modules = {"model": model}
        self.players = {"model": model}

    def losses(self, batch):
        x, ids, groups = batch
        logits = self.model(x, ids)
        loss = self.loss_of(logits, groups)
        yield "model", loss, {"loss": loss.item(), "temperature": 1 / self.model.logit_scale.exp().item()}


class ClipTask:
    name = "clip"
    compiles = False

    @property
    def Generator(self) -> type:
        return ClipGenerator

    def defaults(self, config: RunConfig) -> RunConfig:
        if family(config.model.name).kind != "clip":
            raise GenlabError(f"model: {config.model.name!r} is not a clip model (choose from {', '.join(names('clip'))})")
        return config

    def prepare(self, config: RunConfig, run: RunDir, resume: bool, progress: bool):
        if resume and (run.data / "captions.json").is_file():
            return self.reopen(config, run)
        opts = config.data.image
        store = ImageStore.build(run.data, resolve_source(config.data.source, progress), opts.size, opts.channels,
                                 config.data.val_fraction, config.train.seed, progress)
        captions = Captions.build(config, store)
        atomic_write_json(run.data / "captions.json", captions.data)
        return store, captions

    def reopen(self, config: RunConfig, run: RunDir):
        return ImageStore(run.data), Captions(json.loads((run.data / "captions.json").read_text()))

    def build_model(self, config: RunConfig, data):
        store, _ = data
        return family(config.model.name).model(config.model, store.shape[2], VOCAB)

    def training(self, config: RunConfig, run: RunDir, data, model, device) -> Training:
        store, captions = data
        length = config.model.max_caption
        batches = PairBatches(store, captions, store.indices("train"), config.train.batch_size, length, config.train.seed)
        generator = ClipGenerator.from_parts(run, config, store, captions, model, device)

        objective = ContrastiveObjective(model)
        val_rows = store.indices("val")

        def evaluate(full: bool = False) -> dict:
            if not len(val_rows):
                return {}
            # The contrastive loss over val batches, each image with a caption drawn by a fixed generator.
            g = torch.Generator().manual_seed(0)
            rows_seen = val_rows if full else val_rows[: config.train.batch_size * config.train.eval_batches]
            labels = np.asarray(store.labels, dtype=np.int64) if store.labels is not None else None
            total, count = 0.0, 0
            model.eval()
            with torch.no_grad():
                for i in range(0, len(rows_seen), config.train.batch_size):
                    rows = rows_seen[i: i + config.train.batch_size]
                    texts = captions.for_rows(rows, labels[rows] if labels is not None else None, g)
                    groups = torch.from_numpy(labels[rows] if captions.per_image is None else rows.astype(np.int64))
                    x = to_model_range(np.asarray(store.images)[rows], PIXEL_RANGE).to(device)
                    batch = (x, encode_captions(texts, length).to(device), groups.to(device))
                    for _, loss, _ in objective.losses(batch):
                        total, count = total + loss.item() * len(rows), count + len(rows)
            results = {"val_loss": round(total / count, 5)}
            if captions.classes is not None:
                results["val_zero_shot_accuracy"] = round(generator.zero_shot_accuracy(), 4)
            return results

        return Training(objective, batches, evaluate, None, items_per_batch=config.train.batch_size, item_name="pair")


class DualEncoder:
    """What embedding, search and zero-shot evaluation need of an image-text model: `embed_texts(texts)`,
    `embed_images(images)` (unit vectors), `images_of(source)` and the class names of its captions."""

    modality = "clip"

    def class_embeddings(self, classes: list[str]) -> np.ndarray:
        """(classes, D): each class's captions over every template and name, averaged and renormalized."""
        rows = []
        for name in classes:
            e = self.embed_texts([t.format(w) for t in TEMPLATES for w in class_words(name)]).mean(0)
            rows.append(e / np.linalg.norm(e))
        return np.stack(rows)

    def search(self, query: str, source: str | None = None, k: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The k images of `source` (default: a run's val split) closest to `query`: (images, scores, rows)."""
        images, _, _ = self.images_of(source)
        scores = self.embed_images(images) @ self.embed_texts([query])[0]
        best = np.argsort(-scores)[:k]
        return images[best], scores[best], best

    def retrieval(self, image_emb: np.ndarray, texts: list[str], same: np.ndarray) -> dict:
        """Image->text and text->image recall@1 and @5; `same[i, j]`: text j is a right answer for image i."""
        sim = image_emb @ self.embed_texts(texts).T  # (images, texts)
        results = {}
        for name, matrix, truth in (("image_to_text", sim, same), ("text_to_image", sim.T, same.T)):
            order = np.argsort(-matrix, axis=1)
            for k in (1, 5):
                results[f"{name}_recall@{k}"] = float(np.take_along_axis(truth, order[:, :k], axis=1).any(1).mean())
        return results

    def labeled_evaluation(self, image_emb: np.ndarray, labels: np.ndarray, classes: list[str]) -> dict:
        """Zero-shot accuracy against every class's captions, and class-level recall with one caption per image."""
        accuracy = float(((image_emb @ self.class_embeddings(classes).T).argmax(1) == labels).mean())
        texts = [TEMPLATES[0].format(class_words(classes[int(y)])[-1]) for y in labels]
        return {"zero_shot_accuracy": accuracy, **self.retrieval(image_emb, texts, labels[:, None] == labels[None, :])}


class ClipGenerator(DualEncoder):
    """Embed and search with a CLIP run: `embed_texts`, `embed_images`, `search`, `evaluate`."""

    def __init__(self, run_dir: Path | str, device: str = "auto"):
        run, config, (store, captions), model, dev = load_trained(run_dir, device)
        self._init(run, config, store, captions, model, dev)

    @classmethod
    def from_parts(cls, run, config, store, captions, model, device) -> "ClipGenerator":
        self = cls.__new__(cls)
        self._init(run, config, store, captions, model, device)
        return self

    def _init(self, run, config, store, captions, model, device) -> None:
        self.run, self.config, self.store, self.captions, self.model, self.device = run, config, store, captions, model, device

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        self.model.eval()
        ids = encode_captions(texts, self.config.model.max_caption).to(self.device)
        return self.model.encode_texts(ids).cpu().numpy()

    @torch.no_grad()
    def embed_images(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """(N, H, W, C) uint8 images of the run's shape -> (N, D) unit vectors."""
        self.model.eval()
        if tuple(images.shape[1:]) != self.store.shape:
            raise GenlabError(f"images are {tuple(images.shape[1:])}, the run's are {self.store.shape}")
        parts = [self.model.encode_images(to_model_range(images[i: i + batch_size], PIXEL_RANGE).to(self.device)).cpu()
                 for i in range(0, len(images), batch_size)]
        return torch.cat(parts).numpy()

    def images_of(self, source: str | None, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None, str]:
        """The images (and labels) of a source decoded like the run's, or the run's own val split."""
        import tempfile

        if source is None:
            rows = self.store.indices("val")
            labels = np.asarray(self.store.labels)[rows] if self.store.labels is not None else None
            return np.asarray(self.store.images)[rows], labels, "val split"
        h, w, c = self.store.shape
        with tempfile.TemporaryDirectory() as tmp:
            other = ImageStore.build(Path(tmp) / "data", resolve_source(source, progress), h, c, 0.0, 0, progress)
            if other.shape != self.store.shape:
                raise GenlabError(f"{source}: images are {other.shape}, the run's are {self.store.shape}")
            return np.array(other.images), (np.array(other.labels) if other.labels is not None else None), source

    def zero_shot_accuracy(self) -> float:
        images, labels, _ = self.images_of(None)
        predicted = (self.embed_images(images) @ self.class_embeddings(self.captions.classes).T).argmax(1)
        return float((predicted == labels).mean())

    def evaluate(self, data: str | None = None, seed: int = 0, progress: bool = True) -> dict:
        """Zero-shot accuracy (labeled data) and image->text / text->image recall@1 and @5 on the val split (or
        `data`); with captions made from labels a retrieved item counts when it has the right class."""
        images, labels, where = self.images_of(data, progress)
        image_emb = self.embed_images(images)
        results = {"data": where, "images": len(images)}
        if self.captions.classes is not None and labels is not None:
            return results | self.labeled_evaluation(image_emb, labels, self.captions.classes)
        if self.captions.per_image is not None and data is None:
            rows = self.store.indices("val")
            return results | self.retrieval(image_emb, [self.captions.per_image[r] for r in rows], np.eye(len(rows), dtype=bool))
        return results


TASK = ClipTask()
