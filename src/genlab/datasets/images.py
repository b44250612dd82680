"""Image data: sources read once and decoded into a memory-mapped uint8 store.

Sources (`data.source`):
    a folder of PNG/JPEG files, searched recursively; when every image sits in a
        first-level subfolder, the subfolder names are the class labels
    MNIST-format IDX files (`*-images-idx3-ubyte[.gz]`, labels beside them), one
        file or a folder of them
    CIFAR-10 binary batches (`*.bin`, as in cifar-10-binary.tar.gz), a folder
    an `.npz` with `images` (N, H, W[, C]) and optionally `labels` (N,)
    named datasets: `digits` (offline), `mnist`, `fashion-mnist`, `cifar10`

The store (the run's `data/` folder):
    header.json   shape [N, H, W, C], classes (or null), sha256 of the content
    images.u8     (N, H, W, C) uint8, in source order
    labels.i16    (N,) int16 class ids, when the data has labels
    split.u8      (N,) 0 = train, 1 = val (drawn by seed)
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from genlab.core.progress import progress_bar

from genlab.datasets.download import fetch
from genlab.datasets.batches import SeededBatches
from genlab.core.errors import GenlabError
from genlab.core.files import atomic_write_bytes, atomic_write_json, neither_file_nor_folder
from genlab.core.folders import replacing
from genlab.core.runs import read_header

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg")

MNIST_URL = "https://storage.googleapis.com/cvdf-datasets/mnist/"
MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}
FASHION_MNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
FASHION_MNIST_SHA256 = {
    "train-images-idx3-ubyte.gz": "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc",
    "train-labels-idx1-ubyte.gz": "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc",
    "t10k-images-idx3-ubyte.gz": "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229",
    "t10k-labels-idx1-ubyte.gz": "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf",
}
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR10_SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ---- named datasets ------------------------------------------------------------------


def build_digits(cache: Path, progress: bool = True) -> Path:
    """`digits`: scikit-learn's embedded 1797 8x8 handwritten digits (0..16 grey levels -> 0..255), offline."""
    dest = cache / "digits.npz"
    if dest.is_file():
        return dest
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)  # (1797, 8, 8)
    buf = io.BytesIO()
    np.savez(buf, images=images, labels=d.target.astype(np.int64), classes=np.array([str(i) for i in range(10)]))
    atomic_write_bytes(dest, buf.getvalue())
    return dest


def _fetch_idx_set(cache: Path, name: str, base_url: str, checksums: dict[str, str], progress: bool) -> Path:
    folder = cache / name
    for filename, sha in checksums.items():
        fetch(base_url.rstrip("/") + "/" + filename, folder / filename, sha, max_bytes=64 << 20, progress=progress)  # the largest is 26 MB
    return folder


def fetch_mnist(cache: Path, progress: bool = True) -> Path:
    """`mnist`: the four IDX files (60k train + 10k test), downloaded once; GENLAB_MNIST_URL overrides the base URL."""
    return _fetch_idx_set(cache, "mnist", os.environ.get("GENLAB_MNIST_URL", MNIST_URL), MNIST_SHA256, progress)


def fetch_fashion_mnist(cache: Path, progress: bool = True) -> Path:
    """`fashion-mnist`: Zalando's IDX files, downloaded once; GENLAB_FASHION_MNIST_URL overrides the base URL."""
    return _fetch_idx_set(cache, "fashion-mnist", os.environ.get("GENLAB_FASHION_MNIST_URL", FASHION_MNIST_URL),
                          FASHION_MNIST_SHA256, progress)


def fetch_cifar10(cache: Path, progress: bool = True) -> Path:
    """`cifar10`: the binary (not pickled) archive, downloaded once and unpacked; GENLAB_CIFAR10_URL overrides the URL."""
    folder = cache / "cifar10"
    if (folder / "test_batch.bin").is_file():
        return folder
    archive = fetch(os.environ.get("GENLAB_CIFAR10_URL", CIFAR10_URL), cache / "cifar-10-binary.tar.gz", CIFAR10_SHA256,
                    max_bytes=256 << 20, progress=progress)  # it is 163 MiB
    with replacing(folder, "dataset") as tmp, tarfile.open(archive, "r:gz") as tar:
        for member in tar.getmembers():  # only the batch files, by base name: no path from the archive is trusted
            name = Path(member.name).name
            if member.isfile() and (name.endswith(".bin") or name == "batches.meta.txt"):
                (tmp / name).write_bytes(tar.extractfile(member).read())
    return folder


# ---- readers -------------------------------------------------------------------------


@dataclass
class ImageSource:
    """Images to decode: `count` of them, `read(i)` -> (H, W, C) uint8, labels (N,) or None."""

    count: int
    read: object  # Callable[[int], np.ndarray]
    labels: np.ndarray | None
    classes: list[str] | None
    native_shape: tuple[int, int, int]  # (H, W, C) of the first image


def _open_maybe_gz(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise GenlabError(f"{path}: cannot read ({e})") from None


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST format, gzipped or not) -> uint8 array of the shape its header gives."""
    raw = _open_maybe_gz(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise GenlabError(f"{path}: not an IDX file of unsigned bytes (bad magic number)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise GenlabError(f"{path}: truncated IDX header")
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    expected = int(np.prod(dims)) if dims else 0
    if len(raw) - header != expected:
        raise GenlabError(f"{path}: truncated or corrupt IDX file ({len(raw) - header} bytes of data, header says {expected})")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _labels_file_for(images_path: Path) -> Path | None:
    name = images_path.name.replace("images-idx3", "labels-idx1").replace("images.idx3", "labels.idx1")
    candidate = images_path.with_name(name)
    return candidate if candidate != images_path and candidate.is_file() else None


def _array_source(images: np.ndarray, labels: np.ndarray | None, classes: list[str] | None, origin: Path) -> ImageSource:
    if images.ndim == 3:
        images = images[..., None]
    if images.ndim != 4:
        raise GenlabError(f"{origin}: images must be (N, H, W) or (N, H, W, C), got shape {tuple(images.shape)}")
    if images.shape[-1] not in (1, 3) and images.shape[1] in (1, 3):
        images = images.transpose(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
    if images.shape[-1] not in (1, 3):
        raise GenlabError(f"{origin}: images need 1 or 3 channels, got shape {tuple(images.shape)}")
    if images.dtype != np.uint8:
        values = images.astype(np.float64)
        if values.min() < 0 or values.max() > 255:
            raise GenlabError(f"{origin}: image values must lie in [0, 1] or [0, 255]")
        images = np.round(values * 255 if values.max() <= 1.0 else values).astype(np.uint8)
    if len(images) == 0:
        raise GenlabError(f"{origin}: no images")
    if labels is not None:
        labels = np.asarray(labels).astype(np.int64).reshape(-1)
        if len(labels) != len(images):
            raise GenlabError(f"{origin}: {len(labels)} labels for {len(images)} images")
        if labels.min() < 0:
            raise GenlabError(f"{origin}: labels must be non-negative class ids")
        if classes is None:
            classes = [str(i) for i in range(int(labels.max()) + 1)]
    return ImageSource(len(images), lambda i: images[i], labels, classes, tuple(images.shape[1:]))


def _idx_source(files: list[Path], origin: Path) -> ImageSource:
    arrays, labels = [], []
    for f in files:
        images = read_idx(f)
        if images.ndim != 3:
            raise GenlabError(f"{f}: expected an IDX image file of shape (N, H, W), got {images.shape}")
        arrays.append(images)
        lf = _labels_file_for(f)
        labels.append(read_idx(lf) if lf else None)
        if lf is not None and len(labels[-1]) != len(images):
            raise GenlabError(f"{lf}: {len(labels[-1])} labels for {len(images)} images in {f.name}")
    have = [l is not None for l in labels]
    label_array = np.concatenate(labels) if all(have) else None
    classes = FASHION_CLASSES if "fashion" in str(origin).lower() and label_array is not None else None
    return _array_source(np.concatenate(arrays), label_array, classes, origin)


def _cifar_source(files: list[Path], origin: Path) -> ImageSource:
    record = 1 + 32 * 32 * 3
    arrays, labels = [], []
    for f in files:
        raw = f.read_bytes()
        if len(raw) == 0 or len(raw) % record:
            raise GenlabError(f"{f}: truncated or corrupt CIFAR-10 batch ({len(raw)} bytes is not a multiple of {record})")
        rows = np.frombuffer(raw, dtype=np.uint8).reshape(-1, record)
        labels.append(rows[:, 0].astype(np.int64))
        arrays.append(rows[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    meta = origin / "batches.meta.txt"
    classes = [c for c in meta.read_text().split() if c] if meta.is_file() else CIFAR10_CLASSES
    return _array_source(np.concatenate(arrays), np.concatenate(labels), classes, origin)


def _npz_source(path: Path) -> ImageSource:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            key = next((k for k in ("images", "x", "x_train") if k in keys), None)
            if key is None:
                raise GenlabError(f"{path}: no `images` array (arrays: {', '.join(sorted(keys)) or 'none'})")
            images = z[key]
            lkey = next((k for k in ("labels", "y", "y_train") if k in keys), None)
            labels = z[lkey] if lkey else None
            classes = [str(c) for c in z["classes"]] if "classes" in keys else None
    except (OSError, ValueError, EOFError) as e:
        raise GenlabError(f"{path}: not a readable .npz file ({e})") from None
    return _array_source(images, labels, classes, path)


def image_pixels(im) -> np.ndarray:
    """A PIL image -> (H, W, C) uint8 with C = 1 (grey modes) or 3 (everything else, as RGB)."""
    im = im.convert("L") if im.mode in ("1", "L", "I", "I;16", "F") else im.convert("RGB")
    arr = np.asarray(im, dtype=np.uint8)
    return arr[..., None] if arr.ndim == 2 else arr


def decode_image_file(path: Path) -> np.ndarray:
    """A PNG/JPEG -> (H, W, C) uint8 with C = 1 (grey) or 3 (RGB); a broken file is a one-line error naming it."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            return image_pixels(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise GenlabError(f"{path}: corrupt or unreadable image ({e})") from None


def folder_image_files(root: Path) -> list[Path]:
    """The image files of a folder in the order their images are stored (captions files are matched by it)."""
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith("."))


def _folder_source(root: Path) -> ImageSource:
    files = folder_image_files(root)
    if not files:
        raise GenlabError(f"{root}: no PNG or JPEG images found")
    rel = [f.relative_to(root) for f in files]
    labelled = all(len(r.parts) >= 2 for r in rel)
    classes = sorted({r.parts[0] for r in rel}) if labelled else None
    labels = np.array([classes.index(r.parts[0]) for r in rel], dtype=np.int64) if labelled else None
    first = decode_image_file(files[0])
    return ImageSource(len(files), lambda i: decode_image_file(files[i]), labels, classes, tuple(first.shape))


def open_image_source(path: Path) -> ImageSource:
    """What `path` holds, as an ImageSource (nothing decoded yet for folders of image files)."""
    if path.is_file():
        name = path.name.lower()
        if name.endswith(".npz"):
            return _npz_source(path)
        if "idx3" in name or name.endswith((".idx", ".idx.gz")):
            return _idx_source([path], path)
        if name.endswith(".bin"):
            return _cifar_source([path], path.parent)
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            raise GenlabError(f"{path}: a single image is not a dataset; pass its folder")
        raise GenlabError(f"{path}: not an image dataset (expected a folder of PNG/JPEG, IDX files, CIFAR .bin or .npz)")
    if not path.is_dir():
        raise GenlabError(neither_file_nor_folder(path))
    idx = sorted(p for p in path.iterdir() if "images-idx3" in p.name or "images.idx3" in p.name)
    if idx:
        return _idx_source(idx, path)
    bins = sorted(p for p in path.iterdir() if p.name.endswith(".bin") and "batch" in p.name)
    if bins:
        return _cifar_source(bins, path)
    return _folder_source(path)


# ---- the store -----------------------------------------------------------------------


def _convert(image: np.ndarray, size: int | None, channels: int) -> np.ndarray:
    """(H, W, C) uint8 -> (size, size, channels) uint8: grey<->RGB and a bilinear resize (Pillow)."""
    from PIL import Image

    if image.shape[-1] != channels:
        image = np.repeat(image, 3, axis=-1) if channels == 3 else np.round(
            image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.uint8)[..., None]
    if size is not None and image.shape[:2] != (size, size):
        im = Image.fromarray(image[..., 0] if channels == 1 else image)
        image = np.asarray(im.resize((size, size), Image.BILINEAR), dtype=np.uint8)
        image = image[..., None] if image.ndim == 2 else image
    return image


class ImageStore:
    """The decoded images of a run, memory-mapped: `images` (N, H, W, C) uint8, `labels`, `split`."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.header = read_header(self.folder, "image store")
        shape = tuple(self.header["shape"])
        self.images = np.memmap(self.folder / "images.u8", dtype=np.uint8, mode="r", shape=shape)
        self.labels = np.memmap(self.folder / "labels.i16", dtype=np.int16, mode="r", shape=(shape[0],)) if self.header["classes"] else None
        self.split = np.memmap(self.folder / "split.u8", dtype=np.uint8, mode="r", shape=(shape[0],))

    classes = property(lambda self: self.header["classes"])
    shape = property(lambda self: tuple(self.header["shape"][1:]))  # (H, W, C)
    sha256 = property(lambda self: self.header["sha256"])

    def indices(self, split: str) -> np.ndarray:
        """Row numbers of `train`, `val` or `all`."""
        if split == "all":
            return np.arange(len(self.split))
        return np.flatnonzero(self.split == (1 if split == "val" else 0))

    @classmethod
    def build(cls, dest: Path, source_path: Path, size: int | None, channels: int | None, val_fraction: float,
              seed: int, progress: bool = True) -> "ImageStore":
        """Decode every image of `source_path` (or of an ImageSource) once into `dest` (replaced atomically when done)."""
        source = source_path if isinstance(source_path, ImageSource) else open_image_source(Path(source_path))
        channels = channels or source.native_shape[2]
        height, width = (size, size) if size else source.native_shape[:2]
        with replacing(dest, "image-store") as tmp:
            images = np.memmap(tmp / "images.u8", dtype=np.uint8, mode="w+", shape=(source.count, height, width, channels))
            digest = hashlib.sha256(f"{height}x{width}x{channels}".encode())
            for i in progress_bar(range(source.count), desc="decoding images", unit="img", enabled=progress and source.count >= 2000):
                image = _convert(source.read(i), size, channels)
                if image.shape != (height, width, channels):
                    raise GenlabError(f"{source_path}: image {i} is {image.shape[1]}x{image.shape[0]}, the first is "
                                      f"{width}x{height}; set data.image.size to resize all to one size")
                images[i] = image
                digest.update(image.tobytes())
            images.flush()
            del images
            if source.labels is not None:
                np.asarray(source.labels, dtype=np.int16).tofile(tmp / "labels.i16")
                digest.update(np.asarray(source.labels, dtype=np.int16).tobytes())
            rng = np.random.default_rng(seed)
            split = np.zeros(source.count, dtype=np.uint8)
            n_val = int(round(source.count * val_fraction))
            if n_val:
                split[rng.permutation(source.count)[:n_val]] = 1
            split.tofile(tmp / "split.u8")
            atomic_write_json(tmp / "header.json", {"shape": [source.count, height, width, channels], "classes": source.classes,
                                                   "sha256": digest.hexdigest(), "source": str(source_path), "val": n_val})
        return cls(dest)


def to_model_range(images: np.ndarray, pixel_range: tuple[float, float]) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float32 in pixel_range."""
    lo, hi = pixel_range
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float()
    return x * ((hi - lo) / 255.0) + lo


def to_uint8(x: torch.Tensor, pixel_range: tuple[float, float]) -> np.ndarray:
    """(N, C, H, W) float in pixel_range -> (N, H, W, C) uint8, clamped."""
    lo, hi = pixel_range
    u = ((x.detach().float().cpu() - lo) * (255.0 / (hi - lo))).round().clamp(0, 255).to(torch.uint8)
    return u.permute(0, 2, 3, 1).numpy()


class ImageBatches(SeededBatches):
    """Random batches (images (B, C, H, W) in pixel_range, labels (B,); -1 without labels) from rows of a store.

    Draws from its own seeded generator, saved in each checkpoint (SeededBatches).
    """

    def __init__(self, store: ImageStore, rows: np.ndarray, batch_size: int, seed: int, pixel_range: tuple[float, float],
                 use_labels: bool = True):
        if len(rows) == 0:
            raise GenlabError("the training split has no images; lower data.val_fraction")
        # Small data sets (all of MNIST is 47 MB) are read into memory once; larger ones stay memory-mapped.
        self.images = np.asarray(store.images) if store.images.nbytes < (1 << 30) else store.images
        self.labels = np.asarray(store.labels, dtype=np.int64) if store.labels is not None and use_labels else None
        self.rows = rows
        self.batch_size = batch_size
        self.pixel_range = pixel_range
        super().__init__(seed)

    def __next__(self) -> tuple[torch.Tensor, torch.Tensor]:
        pick = torch.randint(0, len(self.rows), (self.batch_size,), generator=self.generator).numpy()
        rows = np.sort(self.rows[pick])
        x = to_model_range(self.images[rows], self.pixel_range)
        y = torch.from_numpy(self.labels[rows]) if self.labels is not None else torch.full((len(rows),), -1, dtype=torch.long)
        return x, y
