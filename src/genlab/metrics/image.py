"""Image metrics on features of a feature extractor: FID, KID and k-NN precision/recall.

Inception weights cannot be downloaded everywhere, so by default the features
come from a small CNN classifier trained once on the run's own data set and
cached under $GENLAB_CACHE/image-features/ keyed by the data's sha256 (the
usual practice for MNIST-like data). Data without labels trains the same CNN
to predict image rotations instead (self-supervised). A TorchScript Inception
(or any network mapping (B, 3, 299, 299) images in [0, 1] to (B, D)
features) can be given as a local file instead. Numbers from different
extractors are not comparable with each other.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from genlab.core.progress import progress_bar

from genlab.core.errors import GenlabError
from genlab.core.runs import load_tensors, save_tensors

EXTRACTOR_VERSION = "cnn-v1"  # part of the cache key: a changed network is retrained


# ---- the statistics ---------------------------------------------------------------------


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """features (N, D) -> mean (D,), covariance (D, D), in float64."""
    f = np.asarray(features, dtype=np.float64)
    return f.mean(0), np.cov(f, rowvar=False)


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray) -> float:
    """||mu1 - mu2||^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2)): the Frechet distance of two Gaussians."""
    from scipy import linalg

    with warnings.catch_warnings():  # singular products (dead features) are handled just below
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        covmean = linalg.sqrtm(sigma1 @ sigma2)
    if not np.isfinite(covmean).all():  # near-singular product: regularize as pytorch-fid does
        offset = np.eye(sigma1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((sigma1 + offset) @ (sigma2 + offset))
    covmean = covmean.real
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * np.trace(covmean))


def fid(real: np.ndarray, fake: np.ndarray) -> float:
    """Frechet Inception Distance between two feature sets (N, D) and (M, D)."""
    return frechet_distance(*gaussian_stats(real), *gaussian_stats(fake))


def kid(real: np.ndarray, fake: np.ndarray, subsets: int = 100, subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """Kernel Inception Distance (Binkowski et al. 2018): unbiased MMD^2 with the cubic polynomial
    kernel k(x, y) = (x.y / D + 1)^3, averaged over random subsets -> (mean, std)."""
    rng = np.random.default_rng(seed)
    real, fake = np.asarray(real, np.float64), np.asarray(fake, np.float64)
    m = min(subset_size, len(real), len(fake))
    d = real.shape[1]
    values = []
    for _ in range(subsets):
        x = real[rng.choice(len(real), m, replace=False)]
        y = fake[rng.choice(len(fake), m, replace=False)]
        kxx, kyy, kxy = (x @ x.T / d + 1) ** 3, (y @ y.T / d + 1) ** 3, (x @ y.T / d + 1) ** 3
        values.append((kxx.sum() - np.trace(kxx)) / (m * (m - 1)) + (kyy.sum() - np.trace(kyy)) / (m * (m - 1)) - 2 * kxy.mean())
    return float(np.mean(values)), float(np.std(values))


def _kth_neighbour_radii(x: torch.Tensor, k: int) -> torch.Tensor:
    d = torch.cdist(x, x)  # (N, N)
    return d.kthvalue(k + 1, dim=1).values  # +1: the point itself is its own nearest neighbour


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkaanniemi et al. 2019) with k-NN balls as the manifold estimate.

    precision: the share of fakes inside some real sample's k-NN ball (quality);
    recall: the share of reals inside some fake sample's k-NN ball (diversity).
    """
    r = torch.from_numpy(np.asarray(real, np.float32))
    f = torch.from_numpy(np.asarray(fake, np.float32))
    r_radii, f_radii = _kth_neighbour_radii(r, k), _kth_neighbour_radii(f, k)
    d = torch.cdist(f, r)  # (M, N)
    precision = (d <= r_radii[None, :]).any(dim=1).float().mean().item()
    recall = (d.T <= f_radii[None, :]).any(dim=1).float().mean().item()
    return precision, recall


def image_metrics(real_features: np.ndarray, fake_features: np.ndarray, k: int = 3) -> dict:
    kid_mean, kid_std = kid(real_features, fake_features)
    precision, recall = precision_recall(real_features, fake_features, k)
    return {"fid": fid(real_features, fake_features), "kid": kid_mean, "kid_std": kid_std, "precision": precision, "recall": recall}


# ---- feature extractors -------------------------------------------------------------------


class FeatureCNN(nn.Module):
    """A small classifier; `features` is its penultimate layer (B, 128), the stand-in for Inception's pool3."""

    def __init__(self, channels: int, classes: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2, ceil_mode=True),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.Conv2d(64, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(2),
            nn.Flatten(), nn.Linear(256, 128), nn.ReLU(),
        )
        self.head = nn.Linear(128, classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


def _as_input(images: np.ndarray) -> torch.Tensor:
    """(N, H, W, C) uint8 -> (N, C, H, W) float in [-1, 1]."""
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1


def _rotations(x: torch.Tensor, g: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    k = torch.randint(0, 4, (x.shape[0],), generator=g)
    return torch.stack([torch.rot90(img, int(r), dims=(1, 2)) for img, r in zip(x, k)]), k


def train_feature_cnn(images: np.ndarray, labels: np.ndarray | None, num_classes: int, device: torch.device,
                      progress: bool = True, seed: int = 0) -> tuple[FeatureCNN, float]:
    """Train the feature CNN on (N, H, W, C) uint8 images: on their labels, or on rotations without labels.

    Returns the network and its accuracy on a held-out tenth. Leaves the caller's random state and grad mode
    as they were (a training run may build it at an eval, inside no_grad, and must resume exactly).
    """
    with torch.random.fork_rng(devices=[]), torch.enable_grad():
        torch.manual_seed(seed)  # the initial weights: the same network for the same data, whoever asks
        return _train_feature_cnn(images, labels, num_classes, device, progress, seed)


def _train_feature_cnn(images, labels, num_classes: int, device: torch.device, progress: bool, seed: int):
    g = torch.Generator().manual_seed(seed)
    n = len(images)
    order = torch.randperm(n, generator=g).numpy()
    held, train = order[: max(1, n // 10)], order[max(1, n // 10):]
    classes = num_classes if labels is not None else 4
    model = FeatureCNN(images.shape[-1], classes).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    batch = 128
    steps = int(min(2000, max(300, 5 * len(train) / batch)))
    model.train()
    for _ in progress_bar(range(steps), desc="training the feature extractor", unit="step", enabled=progress, leave=False):
        rows = np.sort(train[torch.randint(0, len(train), (batch,), generator=g).numpy()])
        x = _as_input(images[rows])
        y = torch.from_numpy(np.asarray(labels[rows], dtype=np.int64)) if labels is not None else None
        if y is None:
            x, y = _rotations(x, g)
        loss = F.cross_entropy(model(x.to(device)), y.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        x = _as_input(images[np.sort(held)])
        y = torch.from_numpy(np.asarray(labels[np.sort(held)], dtype=np.int64)) if labels is not None else None
        if y is None:
            x, y = _rotations(x, g)
        accuracy = (model(x.to(device)).argmax(1).cpu() == y).float().mean().item()
    return model, accuracy


class FeatureExtractor:
    """`extractor(images (N, H, W, C) uint8) -> (N, D) float features`; `name` says which network."""

    def __init__(self, forward: Callable[[torch.Tensor], torch.Tensor], prepare: Callable[[np.ndarray], torch.Tensor],
                 name: str, device: torch.device, info: dict | None = None):
        self.forward, self.prepare, self.name, self.device, self.info = forward, prepare, name, device, info or {}

    @torch.no_grad()
    def __call__(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        out = []
        for i in range(0, len(images), batch_size):
            out.append(self.forward(self.prepare(images[i: i + batch_size]).to(self.device)).float().cpu())
        return torch.cat(out).numpy()


def classifier_extractor(store, device: torch.device, cache: Path, progress: bool = True) -> FeatureExtractor:
    """The cached feature CNN of `store`'s data set (an ImageStore), trained on first use."""
    path = Path(cache) / "image-features" / f"{EXTRACTOR_VERSION}-{store.sha256[:24]}.safetensors"
    labels = store.labels if store.labels is not None else None
    num_classes = len(store.classes) if store.classes else 0
    model = FeatureCNN(store.shape[2], num_classes if labels is not None else 4)
    if path.is_file():
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            info = json.loads(f.metadata()["info"])
        model.load_state_dict(load_tensors(path))
        model = model.to(device).eval()
    else:
        if progress:
            print(f"training the feature extractor for FID on this data set (once; cached in {path.parent})")
        images = np.asarray(store.images)
        model, accuracy = train_feature_cnn(images, None if labels is None else np.asarray(labels), num_classes, device, progress)
        info = {"task": "classes" if labels is not None else "rotations", "held_out_accuracy": round(accuracy, 4)}
        path.parent.mkdir(parents=True, exist_ok=True)
        save_tensors(path, model.state_dict(), metadata={"info": json.dumps(info)})
    return FeatureExtractor(model.features, _as_input, f"genlab-cnn ({info['task']})", device, info)


def torchscript_extractor(path: Path, device: torch.device) -> FeatureExtractor:
    """A local TorchScript feature network taking (B, 3, 299, 299) floats in [0, 1] (e.g. a traced Inception).

    TorchScript runs code from the file: load only files you trust.
    """
    path = Path(path)
    if not path.is_file():
        raise GenlabError(f"{path}: no such feature-extractor file")
    try:
        net = torch.jit.load(str(path), map_location=device).eval()
    except (RuntimeError, ValueError) as e:
        raise GenlabError(f"{path}: not a TorchScript module ({str(e).splitlines()[0]})") from None

    def prepare(images: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 255.0
        if x.shape[1] == 1:
            x = x.repeat(1, 3, 1, 1)
        return F.interpolate(x, size=(299, 299), mode="bilinear", align_corners=False)

    def forward(x: torch.Tensor) -> torch.Tensor:
        out = net(x)
        out = out[-1] if isinstance(out, (list, tuple)) else out
        return out.flatten(1)

    return FeatureExtractor(forward, prepare, f"torchscript:{path.name}", device)


def subsample(n_total: int, n: int, seed: int) -> np.ndarray:
    """n sorted row numbers out of n_total, drawn by seed (all rows when n >= n_total)."""
    if n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, n, replace=False))

