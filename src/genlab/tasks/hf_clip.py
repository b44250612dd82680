"""Pretrained image-text models from a local Hugging Face folder behind genlab's embed / search / eval:
`genlab.load("hf:PATH")` of a folder whose config.json says `model_type: clip` or `model_type: blip`.

- CLIP (`CLIPModel`): two towers, `get_text_features` / `get_image_features`.
- BLIP (`BlipForImageTextRetrieval`): its contrastive heads (`vision_proj` on the image tower's [CLS],
  `text_proj` on the text encoder's [CLS], the `use_itm_head=False` path of its forward) give the shared
  space; its image-text matching head, a text encoder that cross-attends to the image patches (the
  single-stream fusion ViLBERT and ViLT stand for), re-ranks a search's shortlist, as BLIP retrieves:
  cheap unit vectors choose the candidates, the fused model orders them.

The folder's tokenizer and image processor (AutoTokenizer, AutoImageProcessor: what CLIPProcessor and
BlipProcessor bundle) prepare the inputs. Weights are read from safetensors only, offline. Images of any
source genlab reads are decoded as RGB at their own size and resized by the processor.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from genlab.datasets import resolve_source
from genlab.datasets.images import ImageStore
from genlab.training.distributed import pick_device
from genlab.core.errors import GenlabError
from genlab.tasks.clip import DualEncoder


def projected(output) -> torch.Tensor:
    """get_text_features / get_image_features: a tensor in older transformers, an output whose pooler_output
    holds the projection in newer ones."""
    return output if isinstance(output, torch.Tensor) else output.pooler_output


IMAGE_TEXT_MODELS = {"clip": "CLIPModel", "blip": "BlipForImageTextRetrieval"}  # model_type -> transformers class
RERANK = 4  # BLIP search: the matching head re-ranks the k * RERANK nearest images by the unit vectors


def hf_image_text_kind(path: str) -> str | None:
    """"clip" or "blip" when `path` is a Hugging Face folder of an image-text model genlab serves, else None."""
    config = Path(path).expanduser() / "config.json"
    try:
        kind = json.loads(config.read_text()).get("model_type") if config.is_file() else None
    except (OSError, ValueError):
        return None
    return kind if kind in IMAGE_TEXT_MODELS else None


class HFImageTextGenerator(DualEncoder):
    """A local CLIP or BLIP folder as a DualEncoder: embed_texts, embed_images, search, evaluate."""

    def __init__(self, path: str, device: str = "auto"):
        try:
            import transformers
            from transformers import AutoImageProcessor, AutoTokenizer
        except ImportError:
            raise GenlabError(f"hf:{path}: Hugging Face models need the `transformers` package") from None
        folder = Path(path).expanduser()
        self.kind = hf_image_text_kind(str(folder))
        if self.kind is None:
            raise GenlabError(f"hf:{path}: config.json names no image-text model genlab reads (clip, blip)")
        model_class = getattr(transformers, IMAGE_TEXT_MODELS[self.kind])
        self.device = pick_device(device)
        try:
            self.model = model_class.from_pretrained(folder, local_files_only=True, use_safetensors=True).to(self.device).eval()
            self.tokenizer = AutoTokenizer.from_pretrained(folder, local_files_only=True)
            self.processor = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        except (OSError, ValueError) as e:
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise GenlabError(f"hf:{path}: cannot load a {self.kind.upper()} model with safetensors weights ({first})") from None
        self.run, self.path = None, folder

    def _texts(self, texts: list[str]) -> dict:
        inputs = self.tokenizer(texts, padding=True, truncation=True, return_tensors="pt").to(self.device)
        return {"input_ids": inputs["input_ids"], "attention_mask": inputs["attention_mask"]}

    def _pixels(self, images: np.ndarray) -> torch.Tensor:
        from PIL import Image

        pil = [Image.fromarray(im[..., 0] if im.shape[-1] == 1 else im).convert("RGB") for im in images]
        return self.processor(images=pil, return_tensors="pt")["pixel_values"].to(self.device)

    @torch.no_grad()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        if self.kind == "blip":
            features = self.model.text_proj(self.model.text_encoder(**self._texts(texts)).last_hidden_state[:, 0, :])
        else:
            features = projected(self.model.get_text_features(**self._texts(texts)))
        return torch.nn.functional.normalize(features, dim=-1).cpu().numpy()

    @torch.no_grad()
    def embed_images(self, images: np.ndarray, batch_size: int = 64) -> np.ndarray:
        parts = []
        for i in range(0, len(images), batch_size):
            pixels = self._pixels(images[i: i + batch_size])
            if self.kind == "blip":
                features = self.model.vision_proj(self.model.vision_model(pixel_values=pixels).last_hidden_state[:, 0, :])
            else:
                features = projected(self.model.get_image_features(pixel_values=pixels))
            parts.append(torch.nn.functional.normalize(features, dim=-1).cpu())
        return torch.cat(parts).numpy()

    @torch.no_grad()
    def match_probability(self, text: str, images: np.ndarray) -> np.ndarray:
        """BLIP's image-text matching head: P(the text describes the image) for each image, the text read with
        cross-attention to the image's patches."""
        inputs = self._texts([text] * len(images))
        logits = self.model(pixel_values=self._pixels(images), use_itm_head=True, **inputs).itm_score
        return logits.softmax(-1)[:, 1].cpu().numpy()

    def search(self, query: str, source: str | None = None, k: int = 8) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """CLIP: the k nearest by unit vectors. BLIP: the k * RERANK nearest, re-ranked by the matching head's
        probability (the scores returned)."""
        if self.kind != "blip":
            return super().search(query, source, k)
        images, scores, rows = super().search(query, source, k * RERANK)
        matched = self.match_probability(query, images)
        order = np.argsort(-matched, kind="stable")[:k]
        return images[order], matched[order], rows[order]

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
