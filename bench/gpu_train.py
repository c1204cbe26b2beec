"""GPU training throughput: images/s of VGG-16 and ResNet-20 on 32x32x3 inputs, ours vs the authors'.

Both loops train the `paper` profile's CIFAR-10 nets (role `cnn`: VGG-16 with BatchNorm and the
512-4096-4096-10 dropout classifier; role `resnet20`: ResNet-20 with BatchNorm and zero-padding
shortcuts) with the paper's recipe (SGD lr 0.1, momentum 0.9, weight decay 1e-4; batch 128 unless
--batch), from the same initialisation, on the same images, for --steps optimiser steps each,
with crop-and-flip augmentation in both:

* ours: `llfc_utils.train.train_epoch` on images resident on the device, augmented batch-wise on
  the device; on CUDA under 16-bit autocast (bf16, or fp16 with a gradient scaler on GPUs without
  bf16 or with `--amp fp16`) with channels_last tensors and cuDNN autotuning, as our training runs
  (`--amp fp32` turns autocast off); `--compile` adds torch.compile. Loss and accuracy stay on the
  device until the end of the loop.
* baseline: a loop like the authors' `scripts/spawning.py`: a torchvision-CIFAR10-style dataset
  (uint8 HWC images; per item a PIL image, RandomCrop(32, padding=4), RandomHorizontalFlip,
  ToTensor, Normalize; the crop and flip are the lines commented out in their
  `src/data/cifar10.py`, switched on so that both loops do the same work), a
  `DataLoader(batch_size, shuffle=True)` with no worker processes, `.to(device)` per batch,
  float32, and two host syncs per batch (`loss.item()` and the accuracy's `.item()`).

FLOPs per image are counted by torch.utils.flop_counter.FlopCounterMode over one forward and
backward pass in training mode (matrix multiplications and convolutions only; measured, not
assumed to be 3x the forward pass). Achieved TFLOP/s = FLOPs per image x images/s, printed beside
the device's dense peak in the precision ours trains in, from `llfc_utils.tools.plan.PEAK_TFLOPS`
("unknown" if not listed).

Data: the first train images of Fashion-MNIST, padded to 32x32 and repeated to 3 channels, when
they are on this machine (no network needed); else random uint8 images. The header and the JSON
say which. For a GPU machine with neither network nor the Debian package, bring the 30 MB of
Fashion-MNIST along in the git-ignored `data/` folder and point `LLFC_DATA` at it:

    mkdir -p data/FashionMNIST/raw && cp /usr/share/datasets/fashion-mnist/*.gz data/FashionMNIST/raw/
    LLFC_DATA=data .venv/bin/python bench/gpu_train.py        # on the GPU machine

Not a test: it prints a table and, as its last line, one JSON object.

    .venv/bin/python bench/gpu_train.py                       # on a GPU: 50 steps per loop
    .venv/bin/python bench/gpu_train.py --device cpu --steps 3 --batch 32   # a quick check here
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import DataLoader, Dataset

from llfc_utils import config, data
from llfc_utils import train as llfc_train
from llfc_utils.config import TrainConfig
from llfc_utils.tools import plan

ROLES = {"vgg16": "cnn", "resnet20": "resnet20"}  # model -> role in the paper profile
MEAN, STD = data.STATS["cifar10"]  # the authors' Normalize, used by both loops
INIT_SEED = 0


def sync(device: torch.device) -> None:
    """Wait for queued work on `device` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def images(n: int) -> tuple[np.ndarray, np.ndarray, str]:
    """`n` uint8 images (N, 32, 32, 3) and int64 labels, and which data they are.

    Fashion-MNIST (a fixed shuffle of its train split, repeated past 60,000) if found, else random.
    """
    try:
        x, y = data.load(
            "fashion_mnist", "train", subset=min(n, 60_000), pad32=True, download=False
        )
    except data.DataUnavailable:
        rng = np.random.default_rng(0)
        u8 = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
        return u8, rng.integers(0, 10, n).astype(np.int64), "random"
    mean, std = data.STATS["fashion_mnist"]
    u8 = (x * std[0] + mean[0]).mul(255).round().clamp(0, 255).to(torch.uint8)  # undo load()
    u8 = u8.permute(0, 2, 3, 1).repeat(1, 1, 1, 3).numpy()  # NHWC, 3 channels
    reps = -(-n // len(u8))
    return np.tile(u8, (reps, 1, 1, 1))[:n], np.tile(y.numpy(), reps)[:n], "fashion_mnist"


def to_tensors(u8: np.ndarray, labels: np.ndarray, device: torch.device):
    """Our side: the images normalised once, as resident float tensors on `device`."""
    x = torch.from_numpy(u8).permute(0, 3, 1, 2).float().div(255)
    x = (x - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    return x.contiguous().to(device), torch.from_numpy(labels).to(device)


class AuthorsStyleDataset(Dataset):
    """Like torchvision.datasets.CIFAR10: uint8 HWC images, a PIL image and transform per item."""

    def __init__(self, u8: np.ndarray, labels: np.ndarray) -> None:
        from torchvision import transforms

        self.u8, self.labels = u8, labels
        self.transform = transforms.Compose(
            [
                transforms.RandomCrop(32, padding=4),
                transforms.RandomHorizontalFlip(),
                transforms.ToTensor(),
                transforms.Normalize(MEAN, STD),
            ]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(Image.fromarray(self.u8[i])), int(self.labels[i])


def run_ours(
    init: nn.Module, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, compile_: bool
) -> float:
    """Seconds of `train_epoch` over (x, y) from a copy of `init` (already warmed up)."""
    model = copy.deepcopy(init)
    if x.device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    step_model = llfc_train.maybe_compile(model, x.device, enabled=compile_)
    opt = llfc_train.make_optimizer(cfg, model)
    warm = min(len(x), 3 * cfg.batch_size)
    llfc_train.train_epoch(step_model, opt, cfg, x[:warm], y[:warm], epoch=0, data_seed=1)
    sync(x.device)
    t0 = time.perf_counter()
    llfc_train.train_epoch(step_model, opt, cfg, x, y, epoch=0, data_seed=0)
    sync(x.device)
    return time.perf_counter() - t0


def run_baseline(
    init: nn.Module, cfg: TrainConfig, dataset: Dataset, device: torch.device, warm: int = 3
) -> float:
    """Seconds of the authors' loop over `dataset` from a copy of `init`, after `warm` batches."""
    model = copy.deepcopy(init)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum
    )
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    model.train()
    seconds = 0.0
    for timed, limit in ((False, warm), (True, None)):
        torch.manual_seed(0)
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True)
        sync(device)
        t0 = time.perf_counter()
        for batch_idx, (inputs, labels) in enumerate(loader):
            if limit is not None and batch_idx >= limit:
                break
            inputs, labels = inputs.to(device), labels.to(device)
            outputs = model(inputs)
            loss = torch.mean(loss_fn(outputs, labels))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss.item(), (outputs.max(1)[1] == labels).float().mean().item()  # MetricTracker
        sync(device)
        if timed:
            seconds = time.perf_counter() - t0
    return seconds


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=str(llfc_train.default_device()), help="cuda, cpu, ...")
    p.add_argument("--models", nargs="+", default=list(ROLES), choices=list(ROLES))
    p.add_argument("--steps", type=int, default=50, help="timed optimiser steps per loop")
    p.add_argument("--batch", type=int, default=128, help="batch size (the paper's: 128)")
    p.add_argument("--repeats", type=int, default=1, help="runs per loop; the fastest is kept")
    p.add_argument("--amp", choices=config.AMP, default="bf16", help="ours on CUDA")
    p.add_argument("--compile", action="store_true", help="torch.compile our training step")
    args = p.parse_args(argv)
    for name in ("steps", "batch", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1, got {getattr(args, name)}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Time both loops for each model; print the table, then the JSON line."""
    args = parse_args(argv)
    device = torch.device(args.device)
    n = args.steps * args.batch
    u8, labels, source = images(n)
    x, y = to_tensors(u8, labels, device)
    baseline_set = AuthorsStyleDataset(u8, labels)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    precision = llfc_train.precision(config.get("paper", "cnn").replace(amp=args.amp), device)
    peak = plan.peak_tflops(name, precision) if device.type == "cuda" else None
    comparable = peak is not None  # the peak of the precision we train in
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # as training sets it (train._cudnn_autotune)
    what = {
        "fashion_mnist": "Fashion-MNIST train images padded to 32x32, repeated to 3 channels",
        "random": "random uint8 images (Fashion-MNIST not found on this machine)",
    }[source]
    print(
        f"gpu_train: paper-profile nets, {args.steps} steps of batch {args.batch} per loop "
        f"({n} images, {what}), best of {args.repeats}, on {device} ({name}); ours in "
        f"{precision}{' + torch.compile' if args.compile else ''}, baseline in fp32"
    )
    print("peak: " + (f"{peak[0]:g} TFLOP/s dense ({peak[1]})" if peak else f"unknown for {name}"))
    header = (
        f"{'model':<10}{'GFLOP/img':>10}{'ours img/s':>12}{'base img/s':>12}{'ratio':>8}"
        f"{'ours TFLOP/s':>14}{'% peak':>8}"
    )
    print(header)
    print("-" * len(header))
    result: dict = {
        "bench": "gpu_train",
        "device": name,
        "data": source,
        "batch": args.batch,
        "steps": args.steps,
        "precision_ours": precision,
        "compile": args.compile,
        "images_per_s": {},
        "tflops": {},
        "gflops_per_image": {},
        "peak_tflops": peak[0] if peak else None,
    }
    for model_name in args.models:
        cfg = config.get("paper", ROLES[model_name]).replace(batch_size=args.batch, amp=args.amp)
        init = llfc_train.build_model(cfg, INIT_SEED).to(device)
        _, flops = plan.train_flops(cfg)  # forward + backward, per image
        ours_s = min(run_ours(init, cfg, x, y, args.compile) for _ in range(args.repeats))
        base_s = min(run_baseline(init, cfg, baseline_set, device) for _ in range(args.repeats))
        ours, base = n / ours_s, n / base_s
        tflops = flops * ours / 1e12
        share = f"{100 * tflops / peak[0]:.1f}" if comparable else "-"
        print(
            f"{model_name:<10}{flops / 1e9:>10.3f}{ours:>12,.0f}{base:>12,.0f}{ours / base:>7.2f}x"
            f"{tflops:>14.3f}{share:>8}"
        )
        result["images_per_s"][model_name] = {"ours": round(ours, 1), "baseline": round(base, 1)}
        result["tflops"][model_name] = round(tflops, 4)
        result["gflops_per_image"][model_name] = round(flops / 1e9, 4)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
