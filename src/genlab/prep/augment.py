"""Augmentation of the train split: text (EDA) and images (Pillow), seeded per record.

With `--augment-factor F` every train record is followed by F-1 augmented
copies (column `augmented` true); val and test are never augmented. Copy k of
the record on input row r draws its numbers from a hash of (seed, r, k), so
the output does not depend on chunking or on the engine.

Text ops (Wei & Zou's EDA; words are whitespace-separated, and an augmented
text is joined by single spaces), run on a whole chunk's texts at once with
numpy. Each copy applies one op picked at random; n = max(1, round(rate * words)):
    swap     swap two random words, n times
    delete   drop each word with probability `rate` (one word always stays)
    insert   n times, a synonym of a random word of the original text (the word
             itself when the table has none) goes in at a random position of it
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

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
from PIL import Image, ImageEnhance

from genlab.core.errors import GenlabError
from genlab.core.files import read_text_file
from genlab.prep.clean import collapse_space_polars
from genlab.prep.dedupe import splitmix64

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
    text = read_text_file(path)
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


def _uniform(keys: np.ndarray, stream: int, index: np.ndarray | int) -> np.ndarray:
    """Floats in [0, 1): draw `index` of `stream` for each record key. A pure function of its inputs, so a
    record draws the same numbers whichever batch, chunk or engine it is augmented in."""
    salt = splitmix64((np.uint64(stream) << np.uint64(48)) | np.asarray(index, np.uint64))
    return (splitmix64(keys + salt) >> np.uint64(11)).astype(np.float64) * 2.0**-53


def _pick(keys: np.ndarray, stream: int, index: np.ndarray | int, size: np.ndarray) -> np.ndarray:
    """A uniform integer in [0, size) per record."""
    return np.minimum((_uniform(keys, stream, index) * size).astype(np.int64), size - 1)


def _positions(lengths: np.ndarray) -> np.ndarray:
    """[2, 3] -> [0, 1, 0, 1, 2]: each item's index within its group."""
    starts = np.cumsum(lengths) - lengths
    return np.arange(int(lengths.sum())) - np.repeat(starts, lengths)


BATCH = 16384  # texts augmented at a time

# Draw streams: what each random number is for (a record's draws in one stream are numbered 0, 1, ...).
OP, DROP, LAST_WORD, SWAP_I, SWAP_J, INSERT_WORD, INSERT_AT, INSERT_SYNONYM, RANK, SYNONYM = range(10)


class TextAugmenter:
    """EDA copies of many texts at once: numpy over all their words. Copy k of the text on input row r draws
    its numbers from a hash of (seed, r, k, stream, index), so it does not depend on the batch."""

    def __init__(self, ops: tuple[str, ...], rate: float, synonyms: dict[str, list[str]], seed: int,
                 collapsed: bool = False):
        """`collapsed`: the texts' whitespace is already collapsed (the collapse-space preset ran last), so
        it need not be again."""
        self.ops, self.rate, self.collapsed = ops, rate, collapsed
        self.seed_key = splitmix64(np.array([seed & (2**64 - 1)], np.uint64))[0]
        self.synonym_keys = pl.Series(list(synonyms), dtype=pl.String)
        self.option_counts = np.array([len(options) for options in synonyms.values()], np.int64)
        self.option_starts = np.cumsum(self.option_counts) - self.option_counts
        self.option_words = pl.Series([word for options in synonyms.values() for word in options], dtype=pl.String)

    def augment(self, texts: list[str | None], rows: np.ndarray, copies: np.ndarray) -> list[str | None]:
        """Copy `copies[i]` (1, 2, ...) of the text on input row `rows[i]`, for every i."""
        return self.augment_series(pl.Series("text", texts, dtype=pl.String), rows, copies).to_list()

    def augment_series(self, texts: pl.Series, rows: np.ndarray, copies: np.ndarray) -> pl.Series:
        """`augment` on a Polars String series. A text without words (or missing) comes back as it was; the
        others come back as their words joined by single spaces. Worked BATCH texts at a time, so that memory
        does not grow with the chunk (each text's draws are its own: batches do not change them)."""
        if len(texts) > BATCH:
            return pl.concat([self._augment(texts.slice(at, BATCH), rows[at : at + BATCH], copies[at : at + BATCH])
                              for at in range(0, len(texts), BATCH)])
        return self._augment(texts, rows, copies)

    def _augment(self, texts: pl.Series, rows: np.ndarray, copies: np.ndarray) -> pl.Series:
        spaced = texts if self.collapsed else (
            texts.rename("text").to_frame().select(collapse_space_polars(pl.col("text"))).to_series())
        words = spaced.str.split(" ")
        lengths = words.list.len().fill_null(0).to_numpy().astype(np.int64)
        lengths[(spaced == "").fill_null(True).to_numpy()] = 0  # "".split(" ") is [""], not []
        todo = np.flatnonzero(lengths > 0)
        if not todo.size:
            return texts
        flat = (words if len(todo) == len(words) else words.gather(todo)).explode()
        length = lengths[todo]
        starts = np.cumsum(length) - length
        keys = splitmix64(np.uint64(self.seed_key) ^ ((rows[todo].astype(np.uint64) << np.uint64(16))
                                                       | copies[todo].astype(np.uint64)))
        op = np.array(self.ops)[_pick(keys, OP, 0, np.int64(len(self.ops)))]
        n = np.maximum(1, np.round(self.rate * length)).astype(np.int64)
        options = self._options(flat)  # per word: its synonyms' index in the table, or -1

        record = np.repeat(np.arange(len(todo)), length)
        position = _positions(length)
        source = np.arange(len(flat))  # which word each output word is: flat words, then synonym options
        keep = np.ones(len(flat), bool)
        self._swap(source, keys, op == "swap", n, length, starts)
        self._delete(keep, keys, op == "delete", length, starts, record, position)
        self._replace(source, options, keys, op == "synonym", n, record, position, len(flat))
        inserted = self._insert(options, keys, op == "insert", n, length, starts, len(flat))

        # Output words in order: an inserted word goes before the original word at its position (after the
        # last one at position `length`), several at one position in the order they were drawn.
        record = np.concatenate([record[keep], inserted[0]])
        order_key = np.concatenate([2 * position[keep] + 1, 2 * inserted[1]])
        source = np.concatenate([source[keep], inserted[2]])
        # Stable: inserted words sharing a position keep their draw order. Nearly sorted already, so fast.
        order = np.argsort(record * (2 * int(length.max()) + 2) + order_key, kind="stable")
        table = pl.concat([flat, self.option_words]) if len(self.option_words) else flat
        words = table.gather(source[order]).to_arrow()
        offsets = np.concatenate([[0], np.cumsum(np.bincount(record, minlength=len(todo)))])
        lists = pa.LargeListArray.from_arrays(pa.array(offsets, pa.int64()), words)
        joined = pc.binary_join(lists, pa.scalar(" ", words.type))  # Arrow's join: measured 2.5x Polars'
        return texts.scatter(todo, pl.Series(joined))

    def _options(self, flat: pl.Series) -> np.ndarray:
        if not len(self.synonym_keys):
            return np.full(len(flat), -1, np.int64)
        found = flat.str.to_lowercase().replace_strict(self.synonym_keys, np.arange(len(self.synonym_keys)),
                                                       default=-1, return_dtype=pl.Int64)
        return found.to_numpy()

    def _synonym(self, options: np.ndarray, keys: np.ndarray, stream: int, index: np.ndarray, words: int) -> np.ndarray:
        """Per chosen word with synonyms: a random one of them, as an index into the output table."""
        counts = self.option_counts[options]
        return words + self.option_starts[options] + _pick(keys, stream, index, counts)

    @staticmethod
    def _swap(source, keys, chosen, n, length, starts) -> None:
        """Swap two random words, n times (in order: later swaps move words earlier ones moved)."""
        chosen &= length > 1
        for t in range(int(n[chosen].max(initial=0))):
            active = np.flatnonzero(chosen & (n > t))
            i = _pick(keys[active], SWAP_I, t, length[active])
            j = _pick(keys[active], SWAP_J, t, length[active] - 1)
            j += j >= i
            a, b = starts[active] + i, starts[active] + j
            source[a], source[b] = source[b], source[a].copy()

    def _delete(self, keep, keys, chosen, length, starts, record, position) -> None:
        """Drop each word with probability rate; a text that would lose every word keeps a random one."""
        words = chosen[record]
        keep[words] = _uniform(keys[record[words]], DROP, position[words]) >= self.rate
        left = np.bincount(record[keep & words], minlength=len(keys))
        empty = np.flatnonzero(chosen & (left == 0))
        keep[starts[empty] + _pick(keys[empty], LAST_WORD, 0, length[empty])] = True

    def _replace(self, source, options, keys, chosen, n, record, position, words) -> None:
        """Replace up to n random words that have synonyms by a random synonym each."""
        candidates = np.flatnonzero(chosen[record] & (options >= 0))
        if not candidates.size:
            return
        owner = record[candidates]
        priority = _uniform(keys[owner], RANK, position[candidates])
        order = np.lexsort((priority, owner))
        ranked, owner = candidates[order], owner[order]
        rank = _positions(np.bincount(owner, minlength=len(keys))[np.unique(owner)])
        replaced = ranked[rank < n[owner]]
        at = record[replaced]
        source[replaced] = self._synonym(options[replaced], keys[at], SYNONYM, position[replaced], words)

    def _insert(self, options, keys, chosen, n, length, starts, words):
        """n times: a synonym of a random word (the word itself if it has none) at a random position of the
        original text. -> (record, position, source) of each inserted word, in record then draw order."""
        count = np.where(chosen, n, 0)
        record = np.repeat(np.arange(len(keys)), count)
        t = _positions(count)
        k = keys[record]
        word = starts[record] + _pick(k, INSERT_WORD, t, length[record])
        at = _pick(k, INSERT_AT, t, length[record] + 1)
        source = word.copy()
        has = options[word] >= 0
        source[has] = self._synonym(options[word[has]], k[has], INSERT_SYNONYM, t[has], words)
        return record, at, source


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
