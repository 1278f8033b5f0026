"""Images for the ImageNet models: the photos shipped offline, calibration images, labelled folders,
and accuracy measured batch by batch.

Top-k accuracy of a classifier f on labelled images (x_i, y_i), i = 1..N:

    top-k = (1/N) Σ_i [y_i ∈ the k largest logits of f(x_i)]

and the *agreement* of a compressed model f̃ with the reference f is (1/N) Σ_i [argmax f̃(x_i) = argmax f(x_i)]
— it needs no labels, and it is the fraction of decisions compression left unchanged.

`wilson_interval` (from labkit.stats, re-exported here): measured on n images, a fraction p̂ = k/n is uncertain by about ±z·√(p̂(1−p̂)/n): 23 of 28 is
0.82, but the same int8 model could agree on 0.64 or 0.92 of another 28 images alike. The Wilson
score interval (Wilson 1927; Brown, Cai & DasGupta 2001, https://doi.org/10.1214/ss/1009213286)
keeps its 95 % coverage at small n and near p = 1, where p̂ ± z·√(p̂(1−p̂)/n) does not:

    (p̂ + z²/2n ± z·√(p̂(1−p̂)/n + z²/4n²)) / (1 + z²/n)       z = 1.96 for 95 %

A labelled folder has the ImageNet val layout, root/<class>/<image>, the class named by its wnid
(n01440764) or its index (0–999). `compare` reads it `batch_size` images at a time, so 50,000
images need the memory of one batch, not 30 GB.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from ..stats import wilson_interval  # noqa: F401  (notebook 08 and tests use images.wilson_interval)
from ..validate import message, check_float, check_int, check_path
from .mobilenet import preprocess, wnids

SUFFIXES = (".jpeg", ".jpg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm")

# ---------------------------------------------------------------- photos shipped in wheels (offline)
PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "camera", "clock", "coins", "moon", "grass",
          "gravel", "brick", "hubble_deep_field", "retina", "immunohistochemistry")   # scikit-image


def photos(names=PHOTOS) -> dict[str, np.ndarray]:
    """{name: (H, W[, 3]) uint8} of scikit-image's sample photos: the images notebook 08 scores."""
    import skimage.data

    return {n: getattr(skimage.data, n)() for n in names}


def calibration_photos() -> dict[str, np.ndarray]:
    """12 images that are NOT among `photos()`, for calibrating int8 ranges without touching the
    images int8 is scored on: scikit-learn's two sample photos, matplotlib's two, and eight of
    scikit-image's other samples (a stereo pair, cells, a retina scan, text, a logo, a colour wheel)."""
    import matplotlib
    import skimage.data
    from PIL import Image
    from sklearn.datasets import load_sample_images

    sample = Path(matplotlib.get_data_path()) / "sample_data"
    china, flower = load_sample_images().images
    left, right, _ = skimage.data.stereo_motorcycle()
    out = {"china": china, "flower": flower,
           "grace_hopper": np.array(Image.open(sample / "grace_hopper.jpg").convert("RGB")),
           "present": np.array(Image.open(sample / "Minduka_Present_Blue_Pack.png").convert("RGB")),
           "motorcycle_left": left, "motorcycle_right": right}
    for n in ("colorwheel", "cell", "microaneurysms", "page", "text"):
        out[n] = getattr(skimage.data, n)()
    out["logo"] = skimage.data.logo()[..., :3]
    return out


def calibration_images(n: int = 16, seed: int = 0) -> torch.Tensor:
    """(n, 3, 224, 224) preprocessed views of `calibration_photos()`: each photo's centre crop
    first, then random views (shorter side resized to 224–400, random 224 crop, random mirror)."""
    n = check_int(n, "n", "calibration_images", low=1, high=4096)
    seed = check_int(seed, "seed", "calibration_images", low=0)
    g = torch.Generator().manual_seed(seed)
    images = list(calibration_photos().values())
    out = []
    for i in range(n):
        image = images[i % len(images)]
        out.append(preprocess(image) if i < len(images) else _random_view(image, g))
    return torch.stack(out)


def _random_view(image: np.ndarray, g: torch.Generator) -> torch.Tensor:
    """Shorter side to a random r in 224–400, a random 224×224 crop of the central r×r square,
    mirrored with probability 1/2."""
    r = int(torch.randint(224, 401, (1,), generator=g))
    x = preprocess(image, resize=r, crop=r)                       # (3, r, r)
    i = int(torch.randint(0, x.shape[1] - 223, (1,), generator=g))
    j = int(torch.randint(0, x.shape[2] - 223, (1,), generator=g))
    x = x[:, i:i + 224, j:j + 224]
    return x.flip(-1) if torch.rand(1, generator=g) < 0.5 else x


# ---------------------------------------------------------------- image files on disk
def _folder(root, func: str) -> Path:
    if not isinstance(root, (str, Path)):
        raise TypeError(message("root", func, "a str or Path", type(root).__name__))
    root = Path(root)
    if not root.is_dir():
        raise ValueError(message("root", func, "an existing folder", str(root)))
    return root


def _is_image(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in SUFFIXES and not p.name.startswith(".")


def image_files(root, limit: int | None = None) -> list[tuple[Path, int]]:
    """[(path, label)] of the images under `root`/<class>/, the ImageNet val layout: folder names
    are wnids (n01440764) or class indices (0–999); files with an image suffix only, sorted;
    `limit` caps the images per class."""
    root = _folder(root, "image_files")
    if limit is not None:
        limit = check_int(limit, "limit", "image_files", low=1)
    index = {w: i for i, w in enumerate(wnids())}
    out = []
    for folder in sorted(p for p in root.iterdir() if p.is_dir()):
        name = folder.name
        label = index.get(name, int(name) if name.isdigit() and int(name) < 1000 else None)
        if label is None:
            raise ValueError(message("root", "image_files", "a folder whose sub-folders are wnids "
                                      "or class indices 0–999", f"sub-folder {name!r}"))
        out += [(f, label) for f in sorted(filter(_is_image, folder.iterdir()))[:limit]]
    if not out:
        raise ValueError(message("root", "image_files", "a folder with at least one image", str(root)))
    return out


def sample_files(root, n: int, seed: int = 0) -> list[Path]:
    """`n` image files drawn without replacement (seeded) from everything under `root`, any layout —
    e.g. calibration images from an ImageNet train folder."""
    root = _folder(root, "sample_files")
    seed = check_int(seed, "seed", "sample_files", low=0)
    files = sorted(filter(_is_image, root.rglob("*")))
    n = check_int(n, "n", "sample_files", low=1, high=max(1, len(files)))
    if not files:
        raise ValueError(message("root", "sample_files", "a folder with at least one image", str(root)))
    pick = torch.randperm(len(files), generator=torch.Generator().manual_seed(seed))[:n]
    return [files[i] for i in sorted(pick.tolist())]


def load_images(paths) -> torch.Tensor:
    """(N, 3, 224, 224): `preprocess` of each image file (PIL opens it). paths: a non-empty list
    (or any iterable) of paths; a missing file is a FileNotFoundError naming it."""
    from PIL import Image

    if isinstance(paths, (str, os.PathLike, torch.Tensor)) or not hasattr(paths, "__iter__"):
        raise TypeError(message("paths", "load_images", "a list of image paths", type(paths).__name__))
    paths = list(paths)
    if not paths:
        raise ValueError(message("paths", "load_images", "a non-empty list of image paths", paths))
    for p in paths:
        check_path(p, "paths", "load_images")
    out = []
    for p in paths:
        with Image.open(p) as im:
            out.append(preprocess(im))
    return torch.stack(out)


def image_folder(root, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All of `image_files(root, limit)` in memory: X (N, 3, 224, 224) and y (N,) int64.
    For more than a few thousand images use `compare`, which reads batch by batch."""
    files = image_files(root, limit)
    return load_images(f for f, _ in files), torch.tensor([y for _, y in files], dtype=torch.int64)


# ---------------------------------------------------------------- accuracy, batch by batch
def compare(models: dict, files, batch_size: int = 64) -> pd.DataFrame:
    """Top-1 and top-5 accuracy of each `models[name]` (a callable (N, 3, 224, 224) → (N, 1000)
    logits) on `files` ([(path, label)], as `image_files` returns), reading `batch_size` images
    at a time. The first model is the reference: `agreement` is each model's top-1 agreement
    with it and `delta_top1` its top-1 minus the reference's, in points. One row per model."""
    if not isinstance(models, dict) or not models or not all(callable(m) for m in models.values()):
        raise TypeError(message("models", "compare", "a non-empty dict of name → callable", type(models).__name__))
    files = list(files)
    if not files:
        raise ValueError(message("files", "compare", "a non-empty list of (path, label)", files))
    batch_size = check_int(batch_size, "batch_size", "compare", low=1)
    top5 = {name: [] for name in models}
    for start in range(0, len(files), batch_size):
        X = load_images(f for f, _ in files[start:start + batch_size])
        with torch.no_grad():
            for name, f in models.items():
                top5[name].append(f(X).topk(5, 1).indices)
    y = torch.tensor([label for _, label in files])
    ref = torch.cat(next(iter(top5.values())))[:, 0]
    rows = {}
    for name, parts in top5.items():
        t5 = torch.cat(parts)
        rows[name] = dict(images=len(y), top1=(t5[:, 0] == y).float().mean().item(),
                          top5=(t5 == y[:, None]).any(1).float().mean().item(),
                          agreement=(t5[:, 0] == ref).float().mean().item())
    table = pd.DataFrame(rows).T
    table["images"] = table["images"].astype(int)
    table["delta_top1"] = 100 * (table.top1 - table.top1.iloc[0])
    return table
