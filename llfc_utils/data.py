"""Where the data is, and how it reaches the device as resident tensors.

`load(name, split)` returns the whole split as two tensors: images (N, C, H, W) float32, normalised
per channel, and labels (N,) int64. Sources are tried in this order:

1. the data root, `$LLFC_DATA` (default `~/.cache/llfc_book/data`), in torchvision's layout;
2. for Fashion-MNIST, the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist/`);
3. torchvision's download into the data root (needs the network);
4. an error that names every way to get the data.

Files are parsed here (IDX for MNIST-likes, the CIFAR-10 *binary* version), so nothing is unpickled.
"""

from __future__ import annotations

import gzip
import os
import shutil
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from llfc_utils import settings

NAMES = ("mnist", "fashion_mnist", "cifar10")
SPLITS = ("train", "test")
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")

# Per-channel mean and std of the train split, on [0, 1] pixels.
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    # The authors' values (src/data/cifar10.py); the std is the widespread 0.2023-style one.
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
}
_IDX = {  # torchvision's folder name, and the file stem of each split
    "mnist": ("MNIST", {"train": "train", "test": "t10k"}),
    "fashion_mnist": ("FashionMNIST", {"train": "train", "test": "t10k"}),
}
_CIFAR_DIR = "cifar-10-batches-bin"
_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
_CIFAR_MD5 = "c32a1d4ab5d03f1284b67883e8d87530"
SIZES = {  # images per split, and the image shape (C, H, W)
    "mnist": ({"train": 60_000, "test": 10_000}, (1, 28, 28)),
    "fashion_mnist": ({"train": 60_000, "test": 10_000}, (1, 28, 28)),
    "cifar10": ({"train": 50_000, "test": 10_000}, (3, 32, 32)),
}
N_CLASSES = 10


class DataUnavailable(RuntimeError):
    """No source of the data set could be found or reached."""


def data_root() -> Path:
    """The data root: $LLFC_DATA, default ~/.cache/llfc_book/data."""
    return settings.folder("LLFC_DATA")


def _check_name_split(name: str, split: str) -> None:
    if name not in NAMES:
        raise ValueError(f"unknown dataset {name!r}; valid: {', '.join(NAMES)}")
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; valid: {', '.join(SPLITS)}")


# ---------------------------------------------------------------- file formats


def _read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (MNIST format), gzipped or not."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            raw = f.read()
    except (OSError, EOFError, zlib.error) as e:  # a truncated or non-gzip .gz, unreadable
        raise ValueError(
            f"{path} is damaged ({type(e).__name__}: {e}); delete it and get the data again"
        ) from e
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08:
        raise ValueError(f"{path} is not an IDX file of unsigned bytes")
    ndim = raw[3]
    shape = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise ValueError(f"{path} is truncated: expected {np.prod(shape)} bytes, got {body.size}")
    return body.reshape(shape).copy()


def _find_idx(folder: Path, stem: str, kind: str) -> Path | None:
    for suffix in ("", ".gz"):
        p = folder / f"{stem}-{kind}{suffix}"
        if p.is_file():
            return p
    return None


def _idx_pair(folder: Path, stem: str) -> tuple[np.ndarray, np.ndarray] | None:
    img = _find_idx(folder, stem, "images-idx3-ubyte")
    lab = _find_idx(folder, stem, "labels-idx1-ubyte")
    if img is None or lab is None:
        return None
    images, labels = _read_idx(img), _read_idx(lab)
    if images.ndim != 3 or labels.ndim != 1:
        raise ValueError(f"{img} and {lab} are not an image file and a label file; replace them")
    if len(images) != len(labels):
        raise ValueError(
            f"{img} holds {len(images)} images but {lab} holds {len(labels)} labels; "
            "the two files are not a pair (mixed splits?): replace them"
        )
    return images[:, None], labels


def _read_cifar_bin(folder: Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    files = [f"data_batch_{i}.bin" for i in range(1, 6)] if split == "train" else ["test_batch.bin"]
    parts = []
    for f in files:
        part = np.fromfile(folder / f, dtype=np.uint8)
        if part.size % 3073:
            raise ValueError(f"{folder / f} is truncated (not whole 3073-byte records); replace it")
        parts.append(part.reshape(-1, 3073))
    rec = np.concatenate(parts)
    return rec[:, 1:].reshape(-1, 3, 32, 32), rec[:, 0]


def _check_content(
    name: str, split: str, where: Path, images: np.ndarray, labels: np.ndarray
) -> None:
    """ValueError naming `where` unless the split has its size, image shape and label range."""
    sizes, shape = SIZES[name]
    fix = f"replace the {name} {split} files in {where}"
    # the tests' tiny synthetic files ($LLFC_SCALE=tiny) only need as many labels as images
    expected = len(images) if settings.get("LLFC_SCALE") == "tiny" else sizes[split]
    if len(images) != expected or len(labels) != expected:
        raise ValueError(
            f"{where}: the {name} {split} split should hold {expected} images and labels, "
            f"found {len(images)} and {len(labels)} (train and test files swapped?); {fix}"
        )
    if tuple(images.shape[1:]) != shape:
        raise ValueError(
            f"{where}: {name} images should be {shape}, found {tuple(images.shape[1:])}; {fix}"
        )
    if labels.size and int(labels.max()) >= N_CLASSES:
        raise ValueError(
            f"{where}: {name} {split} labels should lie in 0..{N_CLASSES - 1}, found "
            f"{int(labels.max())}; {fix}"
        )


# ---------------------------------------------------------------- sources


def _from_disk(name: str, split: str, root: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The split's (images, labels) from the first folder that has its files, checked; or None."""
    if name == "cifar10":
        folder = root / _CIFAR_DIR
        needed = ["test_batch.bin"] + [f"data_batch_{i}.bin" for i in range(1, 6)]
        found = (
            _read_cifar_bin(folder, split) if all((folder / f).is_file() for f in needed) else None
        )
    else:
        tv_dir, stems = _IDX[name]
        folder = root / tv_dir / "raw"
        found = _idx_pair(folder, stems[split])
        if found is None and name == "fashion_mnist":
            folder = DEBIAN_FASHION_MNIST
            found = _idx_pair(folder, stems[split])
    if found is not None:
        _check_content(name, split, folder, *found)
    return found


def _download(name: str, root: Path) -> None:
    """Download `name` into `root` with torchvision; nothing half-written is left behind."""
    import torchvision

    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=root))
    try:
        if name == "cifar10":
            from torchvision.datasets.utils import download_and_extract_archive

            download_and_extract_archive(_CIFAR_URL, str(tmp), md5=_CIFAR_MD5, remove_finished=True)
            produced = tmp / _CIFAR_DIR
        else:
            cls = {
                "mnist": torchvision.datasets.MNIST,
                "fashion_mnist": torchvision.datasets.FashionMNIST,
            }
            cls[name](str(tmp), train=True, download=True)  # fetches both splits, md5-checked
            produced = tmp / _IDX[name][0]
        target = root / produced.name
        if target.exists():
            shutil.rmtree(target)
        os.replace(produced, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _help(name: str, root: Path, err: BaseException | None) -> str:
    lines = [f"Could not find or download the {name} data set. Ways to get it:"]
    if name == "fashion_mnist":
        lines.append(
            "  - offline, on Debian/Ubuntu: `sudo apt-get install dataset-fashion-mnist` "
            f"(files appear in {DEBIAN_FASHION_MNIST}); `make data` does this when run as root"
        )
    else:
        lines.append(
            f"  - there is no offline package for {name}; the offline default is fashion_mnist "
            "(profiles `smoke` and `cpu`)"
        )
    lines += [
        f"  - on a machine with network access: `python -m llfc_utils.data {name}` downloads it "
        f"into the data root ({root})",
        "  - copy the files from elsewhere and point LLFC_DATA at their folder, in torchvision's "
        f"layout ({_IDX[name][0] + '/raw/*-ubyte[.gz]' if name in _IDX else _CIFAR_DIR + '/*.bin'})",
    ]
    if err is not None:
        lines.append(f"(the download failed with: {type(err).__name__}: {err})")
    return "\n".join(lines)


def _raw(name: str, split: str, download: bool) -> tuple[np.ndarray, np.ndarray]:
    root = data_root()
    found = _from_disk(name, split, root)
    if found is not None:
        return found
    err: BaseException | None = None
    if download:
        try:
            _download(name, root)
            found = _from_disk(name, split, root)
        except Exception as e:  # noqa: BLE001 - any failure becomes the help message below
            err = e
    if found is None:
        raise DataUnavailable(_help(name, root, err)) from err
    return found


# ---------------------------------------------------------------- public API


def load(
    name: str,
    split: str,
    device: torch.device | str | None = None,
    subset: int | None = None,
    pad32: bool = False,
    download: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole split of `name` as (images float32 (N,C,H,W) normalised, labels int64), on `device`.

    `subset` keeps the first n samples of a fixed (seed 0) shuffle, the same n for every caller;
    `pad32` zero-pads 28x28 images to 32x32 (black border) before normalising.
    """
    _check_name_split(name, split)
    images, labels = _raw(name, split, download)
    n = len(labels)
    if subset is not None:
        if isinstance(subset, np.integer):  # e.g. a size computed with numpy
            subset = int(subset)
        if not isinstance(subset, int) or isinstance(subset, bool) or subset < 1:
            raise ValueError(f"subset must be a positive int or None, got {subset!r}")
        if subset > n:
            raise ValueError(f"subset={subset} is larger than the {name} {split} split ({n})")
        keep = torch.randperm(n, generator=torch.Generator().manual_seed(0))[:subset]
        images, labels = images[keep.numpy()], labels[keep.numpy()]
    x = torch.from_numpy(np.ascontiguousarray(images)).float().div_(255)
    if pad32:
        if x.shape[-1] == 32:
            raise ValueError(f"pad32=True, but {name} images are already 32x32")
        p = (32 - x.shape[-1]) // 2
        x = F.pad(x, (p, p, p, p))
    mean, std = (torch.tensor(s).view(1, -1, 1, 1) for s in STATS[name])
    x = (x - mean) / std
    y = torch.from_numpy(labels.astype(np.int64))
    return x.to(device), y.to(device)


def input_shape(name: str, pad32: bool = False) -> tuple[int, int]:
    """(channels, image size) of data set `name` as `load` returns it (`pad32`: 28 -> 32)."""
    _check_name_split(name, "train")
    channels = 3 if name == "cifar10" else 1
    size = 32 if (name == "cifar10" or pad32) else 28
    return channels, size


def augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random crop (4-pixel zero padding) and horizontal flip, batch-wise on x's device.

    Zero padding is in normalised space (the mean colour), as airbench does; `generator`
    (on x's device) makes it reproducible.
    """
    b, _, h, w = x.shape
    pad = 4
    xp = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
    dx = torch.randint(0, 2 * pad + 1, (b,), device=x.device, generator=generator)
    rows = (dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (B,1,H,1)
    cols = (dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (B,1,1,W)
    bi = torch.arange(b, device=x.device)[:, None, None, None]
    ci = torch.arange(x.shape[1], device=x.device)[None, :, None, None]
    out = xp[bi, ci, rows, cols]
    flip = torch.rand(b, device=x.device, generator=generator) < 0.5
    return torch.where(flip[:, None, None, None], out.flip(3), out)


def prepare(name: str, download: bool = True) -> str:
    """Make sure `name` can be loaded (downloading if allowed); return where it was found."""
    _check_name_split(name, "train")
    for split in SPLITS:
        _raw(name, split, download)
    root = data_root()
    if name == "fashion_mnist" and _idx_pair(root / "FashionMNIST" / "raw", "train") is None:
        return str(DEBIAN_FASHION_MNIST)
    return str(root)


def main(argv: list[str] | None = None) -> int:
    """`python -m llfc_utils.data [--no-download] NAME...`: check or fetch data sets."""
    import argparse

    parser = argparse.ArgumentParser(prog="python -m llfc_utils.data", description=main.__doc__)
    parser.add_argument("names", nargs="+", choices=NAMES)
    parser.add_argument("--no-download", action="store_true", help="only look on disk")
    args = parser.parse_args(argv)
    for name in args.names:
        try:
            where = prepare(name, download=not args.no_download)
        except (DataUnavailable, ValueError) as e:  # missing, or a damaged file (named)
            print(e, file=sys.stderr)
            return 1
        print(f"{name}: ok ({where})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
