"""Shared fixtures: a private checkpoint cache per test, quiet progress bars, real data or a skip."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from llfc_utils import data, train
from llfc_utils.tools import run

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


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> Path:
    """One checkpoint cache for every test that executes chapters in the smoke profile.

    The smoke book, nbval and the labs train the same smoke runs; the first to need one trains
    it, the others load it (what a reader's second run does).
    """
    return tmp_path_factory.mktemp("smoke_cache")


@pytest.fixture
def shared_smoke_cache(smoke_cache, monkeypatch) -> Path:
    """This test (and the kernels it starts) uses the session's smoke cache, not a private one."""
    monkeypatch.setenv("LLFC_CACHE", str(smoke_cache))
    return smoke_cache


@pytest.fixture(scope="session")
def smoke_book(tmp_path_factory, smoke_cache) -> Path:
    """A site folder with every chapter and the results page executed once in the smoke profile.

    `make run PROFILE=smoke` into <site>/book (executed notebooks, results in book/results),
    beside copies of the book's pages, `_config.yml`, `_toc.yml` and notebooks/, so that
    `jupyter-book build <site>` renders it. Returns <site>; fails every test that uses it when a
    chapter fails, with the runner's output.
    """
    root, site = run.ROOT, tmp_path_factory.mktemp("smoke_site")
    (site / "book").mkdir()
    for path in [*(root / "book").glob("*.md"), root / "book" / "references.bib"]:
        shutil.copy(path, site / "book")
    for name in ("_config.yml", "_toc.yml"):
        shutil.copy(root / name, site)
    for folder in ("book/_ext", "notebooks"):  # the Colab-button extension and what it points at
        if (root / folder).is_dir():
            shutil.copytree(
                root / folder, site / folder, ignore=shutil.ignore_patterns("__pycache__")
            )
    env = {
        **os.environ,
        "LLFC_CACHE": str(smoke_cache),
        "LLFC_RESULTS": str(site / "book" / "results"),
        "LLFC_TIMINGS": str(site / "epoch_seconds.json"),
        "LLFC_PROGRESS": "0",
        "OMP_NUM_THREADS": "2",
    }
    for name in ("LLFC_PROFILE", "LLFC_AMP", "LLFC_COMPILE", "LLFC_SCALE"):
        env.pop(name, None)
    cmd = [sys.executable, "-m", "llfc_utils.tools.run", "--profile", "smoke"]
    done = subprocess.run(
        [*cmd, "--out", str(site / "book")], cwd=root, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.fail(f"the smoke book failed:\n{done.stdout[-4000:]}\n{done.stderr[-3000:]}")
    (site / "run.log").write_text(done.stdout)
    return site
