"""Shared fixtures: a private checkpoint cache per test, quiet progress bars, real data or a skip."""

from __future__ import annotations

import pytest
import torch

from llfc_utils import data, train

torch.set_num_threads(2)


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path, monkeypatch):
    """Every test gets its own checkpoint cache and results folder, no progress bars, no memoised data."""
    cache = tmp_path / "llfc_cache"
    monkeypatch.setenv("LLFC_CACHE", str(cache))
    monkeypatch.setenv("LLFC_PROGRESS", "0")
    monkeypatch.setenv("LLFC_RESULTS", str(tmp_path / "results"))  # never book/results
    monkeypatch.setenv("LLFC_TIMINGS", str(tmp_path / "epoch_seconds.json"))
    monkeypatch.delenv("LLFC_PROFILE", raising=False)
    monkeypatch.delenv("LLFC_AMP", raising=False)
    monkeypatch.delenv("LLFC_COMPILE", raising=False)
    yield cache
    train._split.cache_clear()


@pytest.fixture(scope="session")
def fashion_mnist():
    """Skip (with the way to get it) when Fashion-MNIST cannot be found without the network."""
    try:
        data.load("fashion_mnist", "test", subset=10, download=False)
    except data.DataUnavailable as e:
        pytest.skip(
            "Fashion-MNIST is not available offline; install the Debian package "
            f"`dataset-fashion-mnist` (`make test` does) or set LLFC_DATA.\n{e}"
        )
    return "fashion_mnist"


@pytest.fixture
def count_epochs(monkeypatch):
    """`count_epochs()` starts recording which epochs `train.train_epoch` runs; returns the list."""

    def start() -> list[int]:
        epochs: list[int] = []
        real = train.train_epoch

        def counting(model, opt, cfg, x, y, epoch, data_seed):
            epochs.append(epoch)
            return real(model, opt, cfg, x, y, epoch, data_seed)

        monkeypatch.setattr(train, "train_epoch", counting)
        return epochs

    return start
