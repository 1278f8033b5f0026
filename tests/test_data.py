import gzip
import hashlib

import numpy as np
import pytest
import torch

from labkit import data


@pytest.fixture(scope="module")
def split():
    return data.load_mnist(seed=0)


def test_mnist_5k_is_the_real_subset(split):
    X, y = data.read_mnist_5k()
    assert X.shape == (5000, 784) and X.min() == 0 and X.max() == 255
    assert np.bincount(y).tolist() == [500] * 10
    assert split.sizes() == {"train": 3500, "val": 500, "test": 1000}
    assert split.X_train.shape == (3500, 1, 28, 28) and split.X_train.dtype == torch.float32
    assert split.y_test.dtype == torch.int64


def test_split_is_stratified_disjoint_and_deterministic():
    _, y = data.read_mnist_5k()
    tr, va, te = data.stratified_split(y, 0.2, 0.1, seed=3)
    assert len(set(tr) | set(va) | set(te)) == 5000
    assert not set(tr) & set(te) and not set(va) & set(te) and not set(tr) & set(va)
    assert np.bincount(y[te]).tolist() == [100] * 10 and np.bincount(y[va]).tolist() == [50] * 10
    again = data.stratified_split(y, 0.2, 0.1, seed=3)
    assert all(np.array_equal(a, b) for a, b in zip((tr, va, te), again))
    other = data.stratified_split(y, 0.2, 0.1, seed=4)
    assert not np.array_equal(te, other[2])


def test_standardization_uses_train_statistics_only(split):
    X, y = data.read_mnist_5k()
    tr, _, te = data.stratified_split(y, 0.2, 0.1, seed=0)
    assert split.mean == pytest.approx(float(X[tr].mean()), rel=1e-6)
    assert split.std == pytest.approx(float(X[tr].std()), rel=1e-6)
    assert split.mean != pytest.approx(float(X.mean()), rel=1e-6)          # not all data
    expected_test = (X[te].reshape(-1, 1, 28, 28) - split.mean) / split.std
    assert torch.allclose(split.X_test, torch.from_numpy(expected_test.astype(np.float32)))


def test_digits_tiny_dataset():
    s = data.load_digits()
    assert s.X_train.shape[1:] == (1, 8, 8)
    assert sum(s.sizes().values()) == 1797


def test_bad_split_parameters():
    with pytest.raises(ValueError, match="'test_size' parameter of load_mnist must be a float in the range \\(0, 1\\)"):
        data.load_mnist(test_size=1.0)
    with pytest.raises(ValueError, match="'val_size' parameter of load_mnist"):
        data.load_mnist(test_size=0.6, val_size=0.5)
    with pytest.raises(ValueError, match="'source' parameter of load_mnist must be one of '5k', 'full'"):
        data.load_mnist(source="mnist")
    with pytest.raises(TypeError, match="'download' parameter"):
        data.load_mnist(source="full", download="yes")
    with pytest.raises(ValueError, match="'seed' parameter of stratified_split"):
        data.stratified_split(np.arange(10) % 2, 0.2, 0.1, -1)
    with pytest.raises(ValueError, match="'test_size' parameter of stratified_split"):
        data.stratified_split(np.arange(10) % 2, 10**9, 0.1, 0)


def test_paths_and_digests_are_checked(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.gz"):
        data.sha256(tmp_path / "missing.gz")
    with pytest.raises(TypeError, match="'path' parameter of sha256 must be a path"):
        data.sha256(-1)                                    # not a file descriptor to read
    f = tmp_path / "a"
    f.write_bytes(b"abc")
    with pytest.raises(ValueError, match="'expected' parameter of verify must be a sha256 hex digest"):
        data.verify(f, "abc")
    with pytest.raises(ValueError, match="'expected_sha256' parameter of download"):
        data.download(f.as_uri(), tmp_path / "b", "x")
    assert not (tmp_path / "b").exists()


# --- full MNIST: download with sha256 check, from a local fixture (tests never use the network) ---

def _idx(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return gzip.compress(header + array.astype(np.uint8).tobytes())


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local 'mirror' with tiny IDX files, and MNIST_FILES pointing at their sums."""
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte.gz": rng.integers(0, 256, (40, 28, 28)),
              "train-labels-idx1-ubyte.gz": np.arange(40) % 10,
              "t10k-images-idx3-ubyte.gz": rng.integers(0, 256, (10, 28, 28)),
              "t10k-labels-idx1-ubyte.gz": np.arange(10)}
    src = tmp_path / "mirror"
    src.mkdir()
    sums = {}
    for name, a in arrays.items():
        blob = _idx(a)
        (src / name).write_bytes(blob)
        sums[name] = hashlib.sha256(blob).hexdigest()
    monkeypatch.setattr(data, "MNIST_FILES", sums)
    return src.as_uri() + "/", arrays


def test_full_mnist_missing_without_download_is_a_clear_error(tmp_path):
    with pytest.raises(data.DataMissingError, match="download=True"):
        data.load_mnist(source="full", cache_dir=tmp_path / "empty")


def test_full_mnist_download_verifies_and_caches(tmp_path, mirror):
    url, arrays = mirror
    cache = tmp_path / "cache"
    s = data.load_mnist(source="full", download=True, cache_dir=cache, mirror=url, val_size=0.25)
    assert s.sizes() == {"train": 30, "val": 10, "test": 10}
    assert s.y_test.tolist() == list(range(10))          # the official test set, untouched
    assert sorted(p.name for p in cache.iterdir()) == sorted(arrays)
    # cached: a second load needs no mirror
    s2 = data.load_mnist(source="full", cache_dir=cache, mirror="file:///nonexistent/", val_size=0.25)
    assert torch.equal(s.X_train, s2.X_train)


def test_download_rejects_a_file_with_the_wrong_sha256(tmp_path, mirror, monkeypatch):
    url, _ = mirror
    bad = dict(data.MNIST_FILES)
    bad["t10k-labels-idx1-ubyte.gz"] = "0" * 64
    monkeypatch.setattr(data, "MNIST_FILES", bad)
    cache = tmp_path / "cache"
    with pytest.raises(ValueError, match="sha256 mismatch"):
        data.load_mnist(source="full", download=True, cache_dir=cache, mirror=url)
    assert not (cache / "t10k-labels-idx1-ubyte.gz").exists()          # nothing bad kept
    assert not list(cache.glob("*.part"))                               # no partial file


def test_random_shift_moves_pixels_and_is_seeded():
    X = torch.zeros(3, 1, 6, 6)
    X[:, 0, 2, 3] = 1.0
    g1, g2 = torch.Generator().manual_seed(0), torch.Generator().manual_seed(0)
    a, b = data.random_shift(X, 2, g1), data.random_shift(X, 2, g2)
    assert torch.equal(a, b) and a.shape == X.shape
    assert (a.sum(dim=(1, 2, 3)) <= 1).all()             # a pixel moves (or falls off), never copies
    assert torch.equal(data.random_shift(X, 0, g1), X)
    with pytest.raises(ValueError, match="'X' parameter of random_shift"):
        data.random_shift(torch.zeros(3, 36), 1, g1)
