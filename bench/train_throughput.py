"""Training throughput: llfc_utils' epoch loop against a loop like the authors' spawning.py.

Both loops train the same MLP (784-512-512-512-10, profile `cpu`, role `mlp`: SGD lr 0.05,
momentum 0.9, weight decay 5e-4, batch 128) for one epoch on Fashion-MNIST train, starting from
the same initialisation, and report samples per second.

* ours: `llfc_utils.train.train_epoch` on the split preloaded once by
  `llfc_utils.data.load` as two resident tensors (already normalised, already on the device).
  A batch is one index into those tensors; loss and accuracy are summed on the device and read
  back once, at the end of the epoch, so the loop never waits for the device.
* baseline: what the authors' `scripts/spawning.py` does per epoch: a torchvision
  `FashionMNIST` dataset whose items go through `ToTensor()` and `Normalize` one PIL image at a
  time, collated by a `DataLoader(batch_size=128, shuffle=True)` with no worker processes, then
  `.to(device)` per batch, and two host syncs per batch (`loss.item()` and the accuracy's
  `.item()`, as their MetricTracker records them).

The one-time loads (ours: `data.load`; baseline: building the torchvision dataset) are timed
separately and left out of the epoch times. `train_epoch` runs in `train.precision` (bf16 autocast
on CUDA and on CPUs with native bfloat16) while the baseline runs in float32, as each code base does.

The limit, measured in the same run: the machine's practical peak GFLOP/s in float32 and in
bfloat16 for a 2048^3 matrix product and for the heaviest 3x3 convolution of the `cpu` profile's
CNN (batch 128, channels-last, forward). Our training step's achieved GFLOP/s (matrix products
and convolutions of forward + backward, counted by `llfc_utils.tools.plan.train_flops`, per
second of a whole epoch) is reported for the MLP and for each conv role of the `cpu` profile as
`fraction_of_peak`: the MLP against the best matrix-product peak, a conv net against the best
convolution peak, whichever precision gives it.

Why the MLP sits where it does, measured in the same run on the same batches (`mlp_step`):

* `gemm_share`: the seconds the step's matrix products alone take (its four forward `addmm` and
  seven backward `mm` of batch 128, in the training precision, timed back to back) over the
  seconds of a whole training step. `gemm_only_fraction` is the fraction of peak the MLP would
  reach if everything else in the step (autocast's casts, the optimiser, the loss) were free.
* `fused_sgd_ratio`: a step with `torch.optim.SGD(fused=True)` against the default single-tensor
  SGD the book uses (>1: fused is faster). Fused SGD rounds differently, so it would change every
  checkpoint.
* `pair_batched_ratio`: the two children of a pair trained in one batched pass (weights stacked,
  `baddbmm`: the product vmap makes) against two separate steps (>1: batching is faster).

This is a measurement, not a test: it prints a table and, as its last line, one JSON object.

    .venv/bin/python bench/train_throughput.py [--device cpu] [--repeats 3] [--subset 5000]
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from llfc_utils import config, data
from llfc_utils import train as llfc_train
from llfc_utils.config import TrainConfig
from llfc_utils.tools import plan

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
MEAN, STD = data.STATS["fashion_mnist"]
INIT_SEED = 0


def cores() -> int:
    """The number of CPU cores this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def sync(device: torch.device) -> None:
    """Wait for queued work on `device` (a no-op on the CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def raw_source() -> Path:
    """The folder llfc_utils reads Fashion-MNIST from: the data root's raw/ if complete, else Debian's."""
    root_raw = data.data_root() / "FashionMNIST" / "raw"
    if all((root_raw / f).is_file() or (root_raw / f"{f}.gz").is_file() for f in IDX_FILES):
        return root_raw
    return data.DEBIAN_FASHION_MNIST


def make_torchvision_root(tmp: Path) -> Path:
    """Put the four unzipped IDX files in `tmp`/FashionMNIST/raw/ and return `tmp`."""
    src = raw_source()
    dst = tmp / "FashionMNIST" / "raw"
    dst.mkdir(parents=True)
    for name in IDX_FILES:
        if (src / name).is_file():
            shutil.copyfile(src / name, dst / name)
        elif (src / f"{name}.gz").is_file():
            with gzip.open(src / f"{name}.gz", "rb") as fin, open(dst / name, "wb") as fout:
                shutil.copyfileobj(fin, fout)
        else:
            sys.exit(
                f"train_throughput: {name}[.gz] not found in {src}; "
                "run `python -m llfc_utils.data fashion_mnist` first"
            )
    return tmp


def load_ours(device: torch.device, n: int) -> tuple[torch.Tensor, torch.Tensor, float]:
    """The first `n` train images and labels as resident tensors on `device`, and the load seconds."""
    t0 = time.perf_counter()
    x, y = data.load("fashion_mnist", "train", device=device, download=False)
    sync(device)
    seconds = time.perf_counter() - t0
    return x[:n], y[:n], seconds


def load_baseline(root: Path, n: int) -> tuple[Dataset, float]:
    """The authors' torchvision train set (first `n` items) with per-item transforms, and its load seconds."""
    from torchvision import datasets, transforms

    t0 = time.perf_counter()
    transform = transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)])
    trainset = datasets.FashionMNIST(str(root), train=True, download=False, transform=transform)
    seconds = time.perf_counter() - t0
    if n < len(trainset):
        return Subset(trainset, range(n)), seconds
    return trainset, seconds


def run_ours(
    init: nn.Module, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor
) -> tuple[float, float, float]:
    """One timed epoch of `train_epoch` from a copy of `init`: (seconds, mean loss, accuracy)."""
    model = copy.deepcopy(init)
    opt = llfc_train.make_optimizer(cfg, model)
    sync(x.device)
    t0 = time.perf_counter()
    loss, acc = llfc_train.train_epoch(model, opt, cfg, x, y, epoch=0, data_seed=0)
    sync(x.device)
    return time.perf_counter() - t0, loss, acc


def run_baseline(
    init: nn.Module, cfg: TrainConfig, trainset: Dataset, device: torch.device, max_batches: int = 0
) -> tuple[float, float, float]:
    """One timed epoch of the authors' loop from a copy of `init`: (seconds, mean loss, accuracy)."""
    model = copy.deepcopy(init)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, momentum=cfg.momentum
    )
    loss_fn = nn.CrossEntropyLoss(reduction="none")
    loss_sum, acc_sum, count = 0.0, 0.0, 0
    sync(device)
    t0 = time.perf_counter()
    torch.manual_seed(0)  # the authors seed once per epoch, then build the loader
    trainloader = DataLoader(trainset, batch_size=cfg.batch_size, shuffle=True)
    model.train()
    for batch_idx, (inputs, labels) in enumerate(trainloader):
        if max_batches and batch_idx >= max_batches:
            break
        inputs, labels = inputs.to(device), labels.to(device)
        outputs = model(inputs)
        losses = loss_fn(outputs, labels)
        loss = torch.mean(losses)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        n = inputs.size(0)  # MetricTracker.update(..., n=inputs.size(0))
        loss_sum += loss.item() * n
        acc_sum += (outputs.max(1)[1] == labels).float().mean().item() * n
        count += n
    sync(device)
    return time.perf_counter() - t0, loss_sum / count, acc_sum / count


def warm_up(
    init: nn.Module, cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, trainset: Dataset
) -> None:
    """A few untimed batches of each loop, so one-time kernel/allocator set-up is not timed."""
    k = min(len(x), 8 * cfg.batch_size)
    run_ours(init, cfg, x[:k], y[:k])
    run_baseline(init, cfg, trainset, x.device, max_batches=8)


def best_seconds(fn, repeats: int = 5) -> float:
    """The fastest of `repeats` timed calls of fn(), after one untimed call."""
    fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def heaviest_conv(cfg: TrainConfig) -> tuple[int, int, int]:
    """(in channels, out channels, image size) of the 3x3 convolution of cfg's model with the most FLOPs."""
    channels, size = data.input_shape(cfg.dataset, cfg.pad32)
    net = llfc_train.build_model(cfg, 0)
    shapes, hooks = [], []
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
            hooks.append(m.register_forward_hook(lambda m, i, o: shapes.append((m, o.shape))))
    with torch.no_grad():
        net.eval()(torch.zeros(1, channels, size, size))
    for h in hooks:
        h.remove()
    m, shape = max(shapes, key=lambda t: t[0].in_channels * t[1][1] * t[1][2] * t[1][3])
    return m.in_channels, m.out_channels, shape[2]


def peaks(device: torch.device, conv: tuple[int, int, int], batch: int) -> dict[str, float]:
    """Practical peak GFLOP/s: {"matmul_fp32", "matmul_bf16", "conv_fp32", "conv_bf16"}."""
    out = {}
    n = 2048
    c_in, c_out, size = conv
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(n, n, device=device, dtype=dtype)
        b = torch.randn(n, n, device=device, dtype=dtype)
        secs = best_seconds(lambda a=a, b=b: (a @ b, sync(device)))
        out[f"matmul_{name}"] = 2 * n**3 / secs / 1e9
        x = torch.randn(batch, c_in, size, size, device=device, dtype=dtype)
        x = x.contiguous(memory_format=torch.channels_last)
        w = torch.randn(c_out, c_in, 3, 3, device=device, dtype=dtype)
        w = w.contiguous(memory_format=torch.channels_last)
        secs = best_seconds(lambda x=x, w=w: (F.conv2d(x, w, padding=1), sync(device)))
        out[f"conv_{name}"] = 2 * batch * c_out * size * size * c_in * 9 / secs / 1e9
    return out


def achieved(cfg: TrainConfig, device: torch.device, subset: int | None, repeats: int) -> dict:
    """Our train_epoch on cfg's training set (first `subset` images): seconds and GFLOP/s."""
    x, y = llfc_train.dataset(cfg, "train", device)
    if subset:
        x, y = x[:subset], y[:subset]
    init = llfc_train.build_model(cfg, INIT_SEED).to(device)
    k = min(len(x), 4 * cfg.batch_size)
    run_ours(init, cfg, x[:k], y[:k])  # warm-up
    secs = min(run_ours(init, cfg, x, y)[0] for _ in range(repeats))
    flops = plan.train_flops(cfg)[1] * len(x)
    return {"seconds": secs, "n": len(x), "gflops": flops / secs / 1e9}


def _mlp_layers(model: nn.Module) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def _stacked(models: list[nn.Module]) -> list[torch.Tensor]:
    """The MLPs' weights and biases, layer by layer, each stacked over the models (new leaves)."""
    pairs = zip(*(_mlp_layers(m) for m in models), strict=True)
    return [
        torch.stack([getattr(layer, w).detach() for layer in layers]).requires_grad_()
        for layers in pairs
        for w in ("weight", "bias")
    ]


def _steps(model: nn.Module, opt, xs, ys, dtype) -> None:
    """One plain training step per batch of `xs` under autocast in `dtype` (None: float32)."""
    for xb, yb in zip(xs, ys, strict=True):
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            loss = F.cross_entropy(model(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _pair_steps(params: list[torch.Tensor], opt, xs, ys, dtype) -> None:
    """The same steps for two MLPs at once: stacked weights, one batched product per layer."""
    for xb, yb in zip(xs, ys, strict=True):  # xb: (2, batch, 784), one batch per child
        with torch.autocast("cpu", dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            h = xb
            for i in range(0, len(params), 2):
                h = torch.baddbmm(params[i + 1].unsqueeze(1), h, params[i].transpose(1, 2))
                h = torch.relu(h) if i + 2 < len(params) else h
            loss = 2 * F.cross_entropy(h.float().flatten(0, 1), yb.flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def mlp_step(cfg: TrainConfig, x: torch.Tensor, y: torch.Tensor, repeats: int = 3) -> dict:
    """The MLP step taken apart on the CPU (see the module docstring): shares and ratios."""
    dtype = {"bf16": torch.bfloat16}.get(llfc_train.precision(cfg, "cpu"))
    n_steps, b = 100, cfg.batch_size
    gen = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(x), (n_steps, 2, b), generator=gen)
    xs, ys = x.flatten(1)[idx], y[idx]  # (steps, 2, batch, 784): two batches per step

    def sgd(params, **kw):
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, **kw
        )

    models = [llfc_train.build_model(cfg, s) for s in (1, 2)]

    def one(fused: bool) -> float:
        m = copy.deepcopy(models[0])
        opt = sgd(m.parameters(), fused=fused)
        _steps(m, opt, xs[:3, 0], ys[:3, 0], dtype)  # warm-up
        t0 = time.perf_counter()
        _steps(m, opt, xs[:, 0], ys[:, 0], dtype)
        return (time.perf_counter() - t0) / n_steps

    def two_separate() -> float:
        ms = [copy.deepcopy(m) for m in models]
        opts = [sgd(m.parameters()) for m in ms]
        t0 = time.perf_counter()
        for k in (0, 1):
            _steps(ms[k], opts[k], xs[:, k], ys[:, k], dtype)
        return (time.perf_counter() - t0) / n_steps

    def two_batched() -> float:
        params = _stacked(models)
        opt = sgd(params)
        t0 = time.perf_counter()
        _pair_steps(params, opt, xs, ys, dtype)
        return (time.perf_counter() - t0) / n_steps

    layers = _mlp_layers(models[0])
    w = [layer.weight.detach().to(dtype or torch.float32) for layer in layers]
    acts = [torch.randn(b, layer.in_features, dtype=w[0].dtype) for layer in layers]
    grads = [torch.randn(b, layer.out_features, dtype=w[0].dtype) for layer in layers]

    def gemms() -> None:  # forward addmm, backward: weight grads, and input grads past layer 1
        for i, layer in enumerate(layers):
            torch.addmm(layer.bias.detach().to(w[i].dtype), acts[i], w[i].t())
            grads[i].t() @ acts[i]
            if i:
                grads[i] @ w[i]

    step = min(one(False) for _ in range(repeats))
    gemm = best_seconds(gemms, repeats=max(5, repeats))
    return {
        "step_seconds": step,
        "gemm_seconds": gemm,
        "gemm_share": gemm / step,
        "fused_sgd_ratio": step / min(one(True) for _ in range(repeats)),
        "pair_batched_ratio": min(two_separate() for _ in range(repeats))
        / min(two_batched() for _ in range(repeats)),
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default=str(llfc_train.default_device()), help="cpu, cuda, ...")
    p.add_argument("--repeats", type=int, default=1, help="epochs per loop; the best is kept")
    p.add_argument("--subset", type=int, default=None, help="train on the first N images only")
    args = p.parse_args(argv)
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    if args.subset is not None and not 1 <= args.subset <= 60_000:
        p.error(f"--subset must lie in [1, 60000], got {args.subset}")
    return args


def main(argv: list[str] | None = None) -> int:
    """Time one epoch of each loop and print the table, then the JSON line."""
    args = parse_args(argv)
    device = torch.device(args.device)
    threads = cores()
    torch.set_num_threads(threads)
    cfg = config.get("cpu", "mlp")

    x, y, ours_load = load_ours(device, args.subset or 60_000)
    n = len(y)
    init = llfc_train.build_model(cfg, INIT_SEED).to(device)

    ours_runs: list[tuple[float, float, float]] = []
    base_runs: list[tuple[float, float, float]] = []
    with tempfile.TemporaryDirectory(prefix="llfc-bench-") as tmp:
        root = make_torchvision_root(Path(tmp))
        trainset, base_load = load_baseline(root, n)
        warm_up(init, cfg, x, y, trainset)
        for _ in range(args.repeats):  # interleaved, so drift hits both loops alike
            ours_runs.append(run_ours(init, cfg, x, y))
            base_runs.append(run_baseline(init, cfg, trainset, device))

    ours_s, ours_loss, ours_acc = min(ours_runs)
    base_s, base_loss, base_acc = min(base_runs)
    ours_rate, base_rate = n / ours_s, n / base_s
    ratio = ours_rate / base_rate

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"{threads} threads"
    fcs = [m for m in init.modules() if isinstance(m, nn.Linear)]
    arch = "-".join(str(d) for d in [fcs[0].in_features, *(m.out_features for m in fcs)])
    print(
        f"train_throughput: {cfg.model} {arch}, one epoch of "
        f"{n} Fashion-MNIST images, batch {cfg.batch_size}, on {device} ({where}), "
        f"best of {args.repeats}"
    )
    rows = [
        ("ours (train_epoch)", ours_rate, ours_s, ours_load, ours_loss, ours_acc),
        ("baseline (authors)", base_rate, base_s, base_load, base_loss, base_acc),
    ]
    header = f"{'loop':<20}{'samples/s':>12}{'epoch s':>10}{'load s':>9}{'loss':>9}{'acc':>8}"
    print(header)
    print("-" * len(header))
    for name, rate, secs, load, loss, acc in rows:
        print(f"{name:<20}{rate:>12,.0f}{secs:>10.2f}{load:>9.2f}{loss:>9.4f}{acc:>8.4f}")
    print(f"ratio ours/baseline: {ratio:.2f}x")

    cnn_cfgs = {r: c for r, c in config.profile("cpu").items() if c.model != "mlp"}
    conv = heaviest_conv(next(iter(cnn_cfgs.values())))
    peak = peaks(device, conv, cfg.batch_size)
    print(
        f"peak GFLOP/s: matmul 2048^3 fp32 {peak['matmul_fp32']:.0f}, bf16 {peak['matmul_bf16']:.0f}; "
        f"conv3x3 {conv[0]}->{conv[1]} at {conv[2]}x{conv[2]}, batch {cfg.batch_size}, "
        f"fp32 {peak['conv_fp32']:.0f}, bf16 {peak['conv_bf16']:.0f}"
    )
    best_mm = max(peak["matmul_fp32"], peak["matmul_bf16"])
    best_conv = max(peak["conv_fp32"], peak["conv_bf16"])
    mlp_gflops = plan.train_flops(cfg)[1] * n / ours_s / 1e9
    fraction = {"mlp": mlp_gflops / best_mm}
    gflops = {"mlp": mlp_gflops}
    for role, c in cnn_cfgs.items():
        r = achieved(c, device, args.subset, args.repeats)
        gflops[role], fraction[role] = r["gflops"], r["gflops"] / best_conv
    precision = llfc_train.precision(cfg, device)
    parts = None
    if device.type == "cpu":
        parts = mlp_step(cfg, x, y, args.repeats)
        flops_step = plan.train_flops(cfg)[1] * cfg.batch_size
        parts["gemm_only_fraction"] = flops_step / parts["gemm_seconds"] / 1e9 / best_mm
        print(
            f"the MLP step taken apart: {1e3 * parts['step_seconds']:.2f} ms a step, of which its "
            f"matrix products alone take {1e3 * parts['gemm_seconds']:.2f} ms "
            f"({parts['gemm_share']:.2f}); with nothing else in the step it would reach "
            f"{parts['gemm_only_fraction']:.2f} of peak. Fused SGD {parts['fused_sgd_ratio']:.2f}x "
            f"the default's speed; a pair in one batched pass {parts['pair_batched_ratio']:.2f}x "
            "two separate steps"
        )
    print(f"our training step ({precision}), achieved GFLOP/s and fraction of the best peak:")
    for role in gflops:
        print(f"  {role:<10}{gflops[role]:>8.1f} GFLOP/s{fraction[role]:>8.3f}")
    result = {
        "bench": "train_throughput",
        "ours_samples_per_s": round(ours_rate, 1),
        "baseline_samples_per_s": round(base_rate, 1),
        "ratio": round(ratio, 3),
        "fraction_of_peak": {k: round(v, 4) for k, v in fraction.items()},
        "gflops": {k: round(v, 1) for k, v in gflops.items()},
        "peak_gflops": {k: round(v, 1) for k, v in peak.items()},
        "precision": precision,
        "mlp_step": parts and {k: round(v, 4) for k, v in parts.items()},
        "device": str(device),
        "n": n,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
