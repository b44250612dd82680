"""Folders as records: a folder of text files or of images in, a folder of PNG images out.

Files are taken in sorted order of their path below the folder; hidden files
and folders (a name starting with ".") are skipped. When every file sits in
a subfolder one level down (`root/<class>/<file>`), the subfolder's name is
the record's `label`.

A text file becomes one record: `path`, `text` (the whole file, UTF-8),
`label`. An image becomes `path`, `source_sha256` (of its bytes: the key for
duplicate removal), `label`; the pixels are read only when the images are
written out.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pandas as pd
from PIL import Image, ImageOps, UnidentifiedImageError

from genlab.core.errors import GenlabError
from genlab.prep.formats import Chunks, Format, typed_frame

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"}


def folder_files(root: Path) -> list[Path]:
    """The files below `root` in sorted order, hidden ones left out."""
    files = []
    for path in root.rglob("*"):
        relative = path.relative_to(root)
        if path.is_file() and not any(part.startswith(".") for part in relative.parts):
            files.append(path)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def folder_kind(root: Path) -> str:
    """"images" when every file is an image, "textdir" when none is; a mix needs --input-format."""
    files = folder_files(root)
    if not files:
        raise GenlabError(f"{root}: empty folder")
    images = sum(p.suffix.lower() in IMAGE_EXTENSIONS for p in files)
    if images == len(files):
        return "images"
    if images == 0:
        return "textdir"
    raise GenlabError(f"{root}: holds {images} images and {len(files) - images} other files; "
                      "pass --input-format images or textdir")


def has_class_folders(root: Path, files: list[Path] | None = None) -> bool:
    """True when every file sits one level down, in `root/<class>/`."""
    files = folder_files(root) if files is None else files
    return bool(files) and all(len(p.relative_to(root).parts) == 2 for p in files)


def _records(root: Path, files: list[Path], chunk_rows: int, read) -> Chunks:
    labelled = has_class_folders(root, files)
    records = []
    for done, path in enumerate(files, 1):
        relative = path.relative_to(root)
        record = {"path": relative.as_posix(), **read(path)}
        if labelled:
            record["label"] = relative.parts[0]
        records.append(record)
        if len(records) == chunk_rows or done == len(files):
            yield typed_frame(records), done
            records = []


def _read_text(path: Path) -> dict:
    try:
        return {"text": path.read_bytes().decode("utf-8")}
    except UnicodeDecodeError as e:
        raise GenlabError(f"{path}: not UTF-8 text (byte {e.start})") from None


def _read_image_digest(path: Path) -> dict:
    return {"source_sha256": hashlib.sha256(path.read_bytes()).hexdigest()}


def read_text_folder(root: Path, chunk_rows: int) -> Chunks:
    """Every file that is not an image, one record each."""
    files = [p for p in folder_files(root) if p.suffix.lower() not in IMAGE_EXTENSIONS]
    return _records(root, files, chunk_rows, _read_text)


def read_image_folder(root: Path, chunk_rows: int) -> Chunks:
    """Every image file, one record each."""
    files = [p for p in folder_files(root) if p.suffix.lower() in IMAGE_EXTENSIONS]
    return _records(root, files, chunk_rows, _read_image_digest)


# Folder inputs: readable, never written as tables (images are written by ImageFolderWriter).
FOLDER_FORMATS = {
    "textdir": Format("textdir", "", read_text_folder, None, typed=True, fixed_columns=True,
                      progress_unit="files", identity_columns=("path",)),
    "images": Format("images", "", read_image_folder, None, typed=True, fixed_columns=True,
                     progress_unit="files", identity_columns=("path",)),
}


def load_image(path: Path) -> Image.Image:
    """An image as displayed (EXIF rotation applied), in L, LA, RGB or RGBA."""
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)
            image.load()
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise GenlabError(f"{path}: not a readable image ({e})") from None
    if image.mode in ("L", "LA", "RGB", "RGBA"):
        return image
    if image.mode in ("1", "I", "I;16", "F"):
        return image.convert("L")
    has_alpha = "A" in image.getbands() or "transparency" in image.info
    return image.convert("RGBA" if has_alpha else "RGB")


class ImageFolderWriter:
    """Writes a split's images as PNG into `<split>/<label>/<name>.png` and points `path` there.

    `name` is the source path below its class folder with "/" as "__"; an
    augmented copy k is `<name>.aug<k>.png`; a second file with a name already
    taken gets `_2`, `_3`, ... in the order the files come.
    """

    def __init__(self, out: Path, split: str, source_root: Path, label_col: str | None, augmenter=None):
        self.out = out
        self.split = split
        self.source_root = source_root
        self.label_col = label_col
        self.augmenter = augmenter
        self.taken: set[str] = set()

    def _target(self, source: str, label, copy: int) -> str:
        parts = Path(source).parts
        if self.label_col is not None and label is not None and len(parts) > 1 and parts[0] == str(label):
            parts = parts[1:]
        name = "__".join(parts)
        stem = name[: -len(Path(name).suffix)] if Path(name).suffix else name
        if copy:
            stem = f"{stem}.aug{copy}"
        folder = self.split if label is None else f"{self.split}/{label}"
        target, n = f"{folder}/{stem}.png", 1
        while target in self.taken:
            n += 1
            target = f"{folder}/{stem}_{n}.png"
        self.taken.add(target)
        return target

    def write(self, chunk: pd.DataFrame, rows, copies) -> pd.DataFrame:
        """Save the chunk's images; copy k > 0 of input row r is augmented (see genlab.prep.augment).

        Returns the chunk with `path` relative to the output folder.
        """
        labels = chunk[self.label_col].tolist() if self.label_col else [None] * len(chunk)
        targets = []
        for source, label, row, copy in zip(chunk["path"].tolist(), labels, rows, copies):
            image = load_image(self.source_root / source)
            if copy:
                image = self.augmenter.augment_image(image, int(row), int(copy))
            target = self._target(source, None if pd.isna(label) else label, int(copy))
            (self.out / target).parent.mkdir(parents=True, exist_ok=True)
            image.save(self.out / target, format="PNG")
            targets.append(target)
        chunk = chunk.copy()
        chunk["path"] = pd.Series(targets, index=chunk.index, dtype=object)
        return chunk
