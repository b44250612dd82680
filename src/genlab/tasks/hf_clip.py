"""A pretrained CLIP from a local Hugging Face folder behind genlab's embed / search / eval: `genlab.load("hf:PATH")`
of a folder whose config.json says `model_type: clip`.

transformers' CLIPModel gives the two towers (`get_text_features`, `get_image_features`); the folder's
tokenizer and image processor (AutoTokenizer, AutoImageProcessor: what CLIPProcessor bundles) prepare the
inputs. Weights are read from safetensors only, offline. Images of any source genlab reads are decoded as RGB
at their own size and resized by the processor.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from genlab.datasets import resolve_source
from genlab.datasets.images import ImageStore
from genlab.distributed import pick_device
from genlab.errors import GenlabError
from genlab.tasks.clip import DualEncoder


def projected(output) -> torch.Tensor:
    """get_text_features / get_image_features: a tensor in older transformers, an output whose pooler_output
    holds the projection in newer ones."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


def is_hf_clip(path: str) -> bool:
    config = Path(path).expanduser() / "config.json"
    try:
        return config.is_file() and json.loads(config.read_text()).get("model_type") == "clip"
    except (OSError, ValueError):
        return False


class HFClipGenerator(DualEncoder):
    def __init__(self, path: str, device: str = "auto"):
        try:
            from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel
        except ImportError:
            raise GenlabError(f"hf:{path}: Hugging Face models need the `transformers` package") from None
        folder = Path(path).expanduser()
        self.device = pick_device(device)
        try:
            self.model = CLIPModel.from_pretrained(folder, local_files_only=True, use_safetensors=True).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GenlabError(f"hf:{path}: cannot load a CLIP model with safetensors weights ({first})") from None
        self.run, self.path = None, folder

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        inputs = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        features = projected(self.model.get_text_features(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"]))
        return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()

    @torch.no_grad()
    def embed_images(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        from PIL import Image

        parts = []
        for i in range(0, len(images), batch_size):
            pil = [Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).convert("RGB") for im in images[i: i + batch_size]]
            pixels = self.processor(images=pil, return_tensors="pt")["pixel_values"].to(self.device)
            parts.append(torch.nn.functional.normalize(projected(self.model.get_image_features(pixel_values=pixels)), dim=-1).cpu())
        return torch.cat(parts).numpy()

    def images_of(self, source: str | None, progress: bool = False) -> tuple[np.ndarray, np.ndarray | None, str]:
        if source is None:
            raise GenlabError(f"hf:{self.path}: a pretrained model has no data of its own; name the images (--images / --data)")
        self.classes = None
        with tempfile.TemporaryDirectory() as tmp:
            store = ImageStore.build(Path(tmp) / "data", resolve_source(source, progress), None, 3, 0.0, 0, progress)
            self.classes = store.classes
            return np.array(store.images), (np.array(store.labels) if store.labels is not None else None), source

    def evaluate(self, data: str | None = None, seed: int = 0, progress: bool = True) -> dict:
        """Zero-shot accuracy and class-level recall@1/5 on a labeled image source (`--data`)."""
        images, labels, where = self.images_of(data, progress)
        results = {"data": where, "images": len(images)}
        if labels is None:
            raise GenlabError(f"{data}: zero-shot evaluation needs labeled images (class folders, IDX with labels, ...)")
        return results | self.labeled_evaluation(self.embed_images(images), labels, self.classes)
