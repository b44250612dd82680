"""Augmentation of the train split: text (EDA) and images (Pillow), seeded per record.

With `--augment-factor F` every train record is followed by F-1 augmented
copies (column `augmented` true); val and test are never augmented. Copy k of
the record on input row r draws from its own random.Random (seeded by seed, r
and k), so the output does not depend on chunking.

Text ops (Wei & Zou's EDA; words are whitespace-separated, and an augmented
text is joined by single spaces). Each copy applies one op picked at random;
n = max(1, round(rate * words)):
    swap     swap two random words, n times
    delete   drop each word with probability `rate` (one word always stays)
    insert   insert a synonym of a random word (the word itself when the table
             has none) at a random position, n times
    synonym  replace up to n words that have synonyms by a random synonym
`eda` means all four (synonym only when --synonyms is given).

Synonym table (--synonyms): JSON {"word": ["syn", ...]}, or a text/CSV file
with one line per word: `word,syn1,syn2`. Lookup is by lowercased word;
the table is used as given (not made symmetric).

Image ops, all of those chosen applied to every copy, in this order:
    flip     horizontal mirror with probability 1/2
    rotate   uniform angle in [-15, 15] degrees, same size, black corners
    crop     a random 80-100% window (per side), resized back to the full size
    jitter   brightness, contrast and saturation factors uniform in [0.8, 1.2]
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from PIL import Image, ImageEnhance

from genlab.core.errors import GenlabError

TEXT_OPS = ("swap", "delete", "insert", "synonym")
IMAGE_OPS = ("flip", "rotate", "crop", "jitter")


def parse_ops(names: list[str], images: bool, has_synonyms: bool) -> tuple[str, ...]:
    """The ops `--augment` names, in canonical order; `eda` expands to the text ops."""
    allowed = IMAGE_OPS if images else TEXT_OPS
    chosen = set()
    for name in names:
        if name == "eda" and not images:
            chosen |= set(TEXT_OPS) if has_synonyms else set(TEXT_OPS) - {"synonym"}
        elif name in allowed:
            chosen.add(name)
        else:
            what = "images" if images else "text"
            raise GenlabError(f"--augment: {name!r} is not an op for {what} (choose from {', '.join(allowed)}"
                              f"{'' if images else ', eda'})")
    if "synonym" in chosen and not has_synonyms:
        raise GenlabError("--augment synonym needs a synonym table (--synonyms FILE)")
    return tuple(op for op in allowed if op in chosen)


def load_synonyms(path: Path) -> dict[str, list[str]]:
    """A synonym table as {lowercased word: [synonyms]} (formats: see the module docstring)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GenlabError(f"{path}: cannot read the synonym table ({e})") from None
    if path.suffix.lower() == ".json":
        try:
            table = json.loads(text)
        except ValueError as e:
            raise GenlabError(f"{path}: not valid JSON ({e})") from None
        if not isinstance(table, dict) or not all(
            isinstance(v, list) and all(isinstance(s, str) for s in v) for v in table.values()
        ):
            raise GenlabError(f'{path}: expected a JSON object like {{"word": ["synonym", ...]}}')
        return {word.lower(): list(synonyms) for word, synonyms in table.items() if synonyms}
    table = {}
    for number, line in enumerate(text.splitlines(), 1):
        words = [w.strip() for w in line.split(",") if w.strip()]
        if len(words) == 1:
            raise GenlabError(f"{path}: line {number}: a word without synonyms")
        if words:
            table[words[0].lower()] = words[1:]
    return table


def record_random(seed: int, row: int, copy: int) -> random.Random:
    """The generator for copy `copy` of input row `row`: distinct for every (seed, row, copy)."""
    # An int seed is much cheaper than a str one (no SHA-512); the fields cannot overlap
    # (rows < 2**48, copies < 2**16), and the sign of the seed is kept apart.
    return random.Random(((abs(seed) * 2 + (seed < 0)) << 64) | (row << 16) | copy)


class TextAugmenter:
    def __init__(self, ops: tuple[str, ...], rate: float, synonyms: dict[str, list[str]], seed: int):
        self.ops, self.rate, self.synonyms, self.seed = ops, rate, synonyms, seed

    def augment_text(self, text: str, row: int, copy: int) -> str:
        """Copy `copy` (1, 2, ...) of the text on input row `row`."""
        words = text.split()
        if not words:
            return text
        rng = record_random(self.seed, row, copy)
        op = rng.choice(self.ops)
        n = max(1, round(self.rate * len(words)))
        if op == "swap" and len(words) > 1:
            for _ in range(n):
                i, j = rng.sample(range(len(words)), 2)
                words[i], words[j] = words[j], words[i]
        elif op == "delete":
            kept = [w for w in words if rng.random() >= self.rate]
            words = kept or [rng.choice(words)]
        elif op == "insert":
            for _ in range(n):
                word = rng.choice(words)
                options = self.synonyms.get(word.lower())
                words.insert(rng.randrange(len(words) + 1), rng.choice(options) if options else word)
        elif op == "synonym":
            replaceable = [i for i, w in enumerate(words) if w.lower() in self.synonyms]
            for i in rng.sample(replaceable, min(n, len(replaceable))):
                words[i] = rng.choice(self.synonyms[words[i].lower()])
        return " ".join(words)


def _jitter(image: Image.Image, rng: random.Random) -> Image.Image:
    alpha = image.getchannel("A") if image.mode in ("LA", "RGBA") else None
    out = image.convert("RGB" if image.mode in ("RGB", "RGBA") else "L")
    out = ImageEnhance.Brightness(out).enhance(rng.uniform(0.8, 1.2))
    out = ImageEnhance.Contrast(out).enhance(rng.uniform(0.8, 1.2))
    if out.mode == "RGB":
        out = ImageEnhance.Color(out).enhance(rng.uniform(0.8, 1.2))
    if alpha is not None:
        out = out.convert(image.mode)
        out.putalpha(alpha)
    return out


class ImageAugmenter:
    def __init__(self, ops: tuple[str, ...], seed: int):
        self.ops, self.seed = ops, seed

    def augment_image(self, image: Image.Image, row: int, copy: int) -> Image.Image:
        """Copy `copy` (1, 2, ...) of the image on input row `row`; same size and mode."""
        rng = record_random(self.seed, row, copy)
        width, height = image.size
        if "flip" in self.ops and rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        if "rotate" in self.ops:
            image = image.rotate(rng.uniform(-15, 15), resample=Image.Resampling.BILINEAR)
        if "crop" in self.ops:
            w, h = max(1, round(width * rng.uniform(0.8, 1.0))), max(1, round(height * rng.uniform(0.8, 1.0)))
            left, top = rng.randint(0, width - w), rng.randint(0, height - h)
            image = image.crop((left, top, left + w, top + h)).resize((width, height), Image.Resampling.BICUBIC)
        if "jitter" in self.ops:
            image = _jitter(image, rng)
        return image
