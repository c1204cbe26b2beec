"""llfc_utils.data: loaders, normalisation, subsets, padding, error messages, augmentation."""

from __future__ import annotations

import gzip
import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from llfc_utils import data

FMNIST_MEAN, FMNIST_STD = 0.2860, 0.3530


@pytest.fixture(scope="module")
def train_full(fashion_mnist):
    return data.load("fashion_mnist", "train", download=False)


@pytest.fixture(scope="module")
def test_full(fashion_mnist):
    return data.load("fashion_mnist", "test", download=False)


def _raw_idx(path, n):
    """The first n records of a gzipped IDX file, parsed independently of data._read_idx."""
    with gzip.open(path, "rb") as f:
        raw = f.read()
    ndim = raw[3]
    shape = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    per = int(np.prod(shape[1:])) if ndim > 1 else 1
    body = np.frombuffer(raw, np.uint8, count=n * per, offset=4 + 4 * ndim)
    return shape, body.reshape([n, *shape[1:]])


# ---------------------------------------------------------------- shapes, dtypes, values


def test_train_split_shapes_and_dtypes(train_full):
    x, y = train_full
    assert x.shape == (60000, 1, 28, 28)
    assert x.dtype == torch.float32
    assert y.shape == (60000,)
    assert y.dtype == torch.int64
    assert int(y.min()) == 0 and int(y.max()) == 9
    assert torch.bincount(y, minlength=10).tolist() == [6000] * 10  # Fashion-MNIST is balanced


def test_test_split_shapes_and_dtypes(test_full):
    x, y = test_full
    assert x.shape == (10000, 1, 28, 28)
    assert x.dtype == torch.float32
    assert y.dtype == torch.int64
    assert torch.bincount(y, minlength=10).tolist() == [1000] * 10


def test_train_split_is_normalised(train_full):
    x, _ = train_full
    assert abs(x.mean().item()) < 0.01
    assert abs(x.std().item() - 1) < 0.01


def test_test_split_uses_train_stats(test_full):
    x, _ = test_full
    assert abs(x.mean().item()) < 0.05
    # the darkest pixel maps to the normalised black of the *train* stats
    assert x.min().item() == pytest.approx(-FMNIST_MEAN / FMNIST_STD, abs=1e-6)


def test_values_match_the_raw_files(train_full):
    """Without a subset, the order and pixels are those of the IDX files, normalised."""
    x, y = train_full
    shape, imgs = _raw_idx(data.DEBIAN_FASHION_MNIST / "train-images-idx3-ubyte.gz", 5)
    _, labs = _raw_idx(data.DEBIAN_FASHION_MNIST / "train-labels-idx1-ubyte.gz", 5)
    assert shape == [60000, 28, 28]
    expect = (torch.from_numpy(imgs.astype(np.float32)) / 255 - FMNIST_MEAN) / FMNIST_STD
    torch.testing.assert_close(x[:5, 0], expect, rtol=0, atol=1e-6)
    assert y[:5].tolist() == labs.astype(int).tolist()


# ---------------------------------------------------------------- subsets


def test_subset_size_and_reproducible(fashion_mnist):
    x1, y1 = data.load("fashion_mnist", "test", subset=50)
    x2, y2 = data.load("fashion_mnist", "test", subset=50)
    assert x1.shape == (50, 1, 28, 28) and y1.shape == (50,)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    # "the first n of a fixed shuffle": a smaller subset is a prefix of a larger one
    x3, y3 = data.load("fashion_mnist", "test", subset=20)
    assert torch.equal(x3, x1[:20]) and torch.equal(y3, y1[:20])


def test_subset_rows_come_from_the_full_split(test_full):
    xs, ys = data.load("fashion_mnist", "test", subset=50)
    x, y = test_full
    flat = x.flatten(1)
    found = []
    for i in range(0, 50, 7):
        hits = (flat == xs[i].flatten()).all(1).nonzero().flatten()
        assert len(hits) >= 1, f"subset row {i} is not a row of the full split"
        assert ys[i] in y[hits]
        found.append(int(hits[0]))
    assert found != list(range(0, 50, 7))  # shuffled, not the first rows


def test_subset_larger_than_split_names_its_size(fashion_mnist):
    with pytest.raises(ValueError, match="10000"):
        data.load("fashion_mnist", "test", subset=10001)


@pytest.mark.parametrize("bad", [0, -3, 2.5])
def test_subset_must_be_positive_int(fashion_mnist, bad):
    with pytest.raises(ValueError, match="subset"):
        data.load("fashion_mnist", "test", subset=bad)


# ---------------------------------------------------------------- pad32


def test_pad32(fashion_mnist):
    xp, yp = data.load("fashion_mnist", "test", subset=10, pad32=True)
    x, y = data.load("fashion_mnist", "test", subset=10)
    assert xp.shape == (10, 1, 32, 32)
    assert torch.equal(yp, y)
    black = -FMNIST_MEAN / FMNIST_STD
    border = torch.ones(32, 32, dtype=torch.bool)
    border[2:30, 2:30] = False
    assert torch.allclose(xp[:, :, border], torch.full_like(xp[:, :, border], black), atol=1e-6)
    torch.testing.assert_close(xp[:, :, 2:30, 2:30], x, rtol=0, atol=1e-6)


def test_pad32_refuses_32x32_images(monkeypatch):
    rng = np.random.default_rng(0)
    fake = (rng.integers(0, 256, (4, 3, 32, 32), dtype=np.uint8), np.arange(4, dtype=np.uint8))
    monkeypatch.setattr(data, "_raw", lambda name, split, download: fake)
    x, _ = data.load("cifar10", "train")  # the fake source itself loads
    assert x.shape == (4, 3, 32, 32)
    with pytest.raises(ValueError, match="32x32"):
        data.load("cifar10", "train", pad32=True)


# ---------------------------------------------------------------- bad names, missing data


def test_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="imagenet") as e:
        data.load("imagenet", "train")
    for name in data.NAMES:
        assert name in str(e.value)


def test_unknown_split_lists_valid_splits():
    with pytest.raises(ValueError, match="val") as e:
        data.load("fashion_mnist", "val")
    assert "train" in str(e.value) and "test" in str(e.value)


@pytest.fixture
def offline(tmp_path, monkeypatch):
    """No data root, no Debian package, no network; records download attempts."""
    empty = tmp_path / "no_data"
    empty.mkdir()
    monkeypatch.setenv("LLFC_DATA", str(empty))
    monkeypatch.setattr(data, "DEBIAN_FASHION_MNIST", tmp_path / "not_installed")
    calls = []

    def fail(name, root):
        calls.append(name)
        raise OSError("offline")

    monkeypatch.setattr(data, "_download", fail)
    return calls


def test_fashion_mnist_unavailable_message(offline):
    with pytest.raises(data.DataUnavailable) as e:
        data.load("fashion_mnist", "test")
    msg = str(e.value)
    for needle in ("dataset-fashion-mnist", "LLFC_DATA", "download", "offline"):
        assert needle in msg, f"{needle!r} missing from:\n{msg}"
    assert offline == ["fashion_mnist"]
    assert isinstance(e.value.__cause__, OSError)


def test_mnist_unavailable_message(offline):
    with pytest.raises(data.DataUnavailable) as e:
        data.load("mnist", "train")
    msg = str(e.value)
    for needle in ("mnist", "LLFC_DATA", "download", "MNIST/raw"):
        assert needle in msg, f"{needle!r} missing from:\n{msg}"
    assert "dataset-fashion-mnist" not in msg  # no such package for MNIST
    assert offline == ["mnist"]


def test_no_download_when_not_allowed(offline):
    with pytest.raises(data.DataUnavailable):
        data.load("fashion_mnist", "train", download=False)
    assert offline == []


def test_data_root_in_torchvision_layout_is_used(tmp_path, monkeypatch):
    """Files under $LLFC_DATA/MNIST/raw are found before any download."""
    raw = tmp_path / "root" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    imgs = np.arange(3 * 28 * 28, dtype=np.uint32).reshape(3, 28, 28) % 256
    _write_idx(raw / "t10k-images-idx3-ubyte", imgs.astype(np.uint8))
    _write_idx(raw / "t10k-labels-idx1-ubyte", np.array([7, 0, 3], dtype=np.uint8))
    monkeypatch.setenv("LLFC_DATA", str(tmp_path / "root"))
    monkeypatch.setattr(data, "_download", lambda *a: pytest.fail("must not download"))
    monkeypatch.setitem(data.SIZES, "mnist", ({"train": 60_000, "test": 3}, (1, 28, 28)))
    x, y = data.load("mnist", "test")
    assert y.tolist() == [7, 0, 3]
    expect = (torch.from_numpy(imgs.astype(np.float32))[:, None] / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(x, expect, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- IDX reader


def _write_idx(path, arr, truncate=0):
    header = bytes([0, 0, 8, arr.ndim]) + b"".join(d.to_bytes(4, "big") for d in arr.shape)
    body = arr.astype(np.uint8).tobytes()
    blob = header + body[: len(body) - truncate]
    if str(path).endswith(".gz"):
        with gzip.open(path, "wb") as f:
            f.write(blob)
    else:
        path.write_bytes(blob)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_round_trip(tmp_path, suffix):
    arr = np.random.default_rng(1).integers(0, 256, (3, 4, 5), dtype=np.uint8)
    p = tmp_path / f"x-idx3-ubyte{suffix}"
    _write_idx(p, arr)
    np.testing.assert_array_equal(data._read_idx(p), arr)


@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_read_idx_truncated_raises(tmp_path, suffix):
    arr = np.zeros((3, 4, 5), dtype=np.uint8)
    p = tmp_path / f"x-idx3-ubyte{suffix}"
    _write_idx(p, arr, truncate=7)
    with pytest.raises(ValueError, match="truncated"):
        data._read_idx(p)


def test_read_idx_rejects_non_idx(tmp_path):
    p = tmp_path / "junk"
    p.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(ValueError, match="IDX"):
        data._read_idx(p)


# ---------------------------------------------------------------- augment


def test_augment_shape_and_determinism():
    x = torch.randn(16, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    a = data.augment(x, torch.Generator().manual_seed(5))
    b = data.augment(x, torch.Generator().manual_seed(5))
    c = data.augment(x, torch.Generator().manual_seed(6))
    assert a.shape == x.shape and a.dtype == x.dtype
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_augment_outputs_are_shifted_flipped_crops():
    """Each output is one of the 81 crops x 2 flips of the zero-padded input (brute force)."""
    x = torch.randn(64, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    out = data.augment(x, torch.Generator().manual_seed(2))
    xp = F.pad(x, (4, 4, 4, 4))
    seen = set()
    for i in range(len(x)):
        matches = [
            (dy, dx, flip)
            for dy, dx, flip in itertools.product(range(9), range(9), (False, True))
            if torch.equal(
                out[i],
                xp[i, :, dy : dy + 8, dx : dx + 8].flip(2)
                if flip
                else xp[i, :, dy : dy + 8, dx : dx + 8],
            )
        ]
        assert matches, f"output {i} is not a shifted (flipped) crop of its input"
        seen.update(matches)
    # both flips and many different shifts are used, not just one
    assert {m[2] for m in seen} == {False, True}
    assert len({m[:2] for m in seen}) > 20


def test_augment_does_not_mix_images():
    """Image i of the output comes from image i of the input (constant images make it visible)."""
    x = torch.arange(1, 9, dtype=torch.float32)[:, None, None, None].expand(8, 2, 6, 6).clone()
    out = data.augment(x, torch.Generator().manual_seed(0))
    for i in range(8):
        assert set(out[i].unique().tolist()) <= {0.0, float(i + 1)}
        assert (out[i] == i + 1).any()
