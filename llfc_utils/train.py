"""One training run, spawning, and independent pairs: fast loops on resident tensors, cached.

A run is a *trajectory*: a config, an initialisation seed, and a list of segments
`[(data_seed, n_epochs), ...]` that say which seed drives the data order (and augmentation and
dropout) in each epoch. The paper's spawning (the authors' `scripts/spawning.py`) is then:

    parent   init_seed=s0, [(s0, k)]                   shared first k epochs
    child 1  init_seed=s0, [(s0, k), (s1, E - k)]      forked at epoch k, new data order
    child 2  init_seed=s0, [(s0, k), (s2, E - k)]

Both children continue the same learning-rate schedule and optimiser state from epoch k.
Spawn epoch 0 = same initialisation, different data order; an *independent* pair has different
initialisations too. Every state at the end of a segment is cached, so the shared prefix is trained
once, and a run killed mid-way resumes from its last finished epoch.
"""

from __future__ import annotations

import functools
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from llfc_utils import cache, data, models
from llfc_utils.config import TrainConfig

History = dict[str, list[float]]


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def default_device() -> torch.device:
    """CUDA if available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def input_shape(cfg: TrainConfig) -> tuple[int, int]:
    """(channels, image size) of the inputs `cfg` trains on."""
    channels = 3 if cfg.dataset == "cifar10" else 1
    size = 32 if (cfg.dataset == "cifar10" or cfg.pad32) else 28
    return channels, size


def build_model(cfg: TrainConfig, seed: int) -> nn.Module:
    """A freshly initialised model for `cfg`, seeded by `seed` (same seed, same weights)."""
    channels, size = input_shape(cfg)
    torch.manual_seed(seed)
    return models.build(cfg.model, in_channels=channels, image_size=size, **cfg.model_kwargs)


@functools.lru_cache(maxsize=8)
def _split(name: str, split: str, subset: int | None, pad32: bool, device: str):
    return data.load(name, split, device=device, subset=subset, pad32=pad32)


def dataset(cfg: TrainConfig, split: str, device: torch.device | str | None = None):
    """The (x, y) tensors of `split` for `cfg`, resident on `device` (memoised per process)."""
    subset = cfg.train_subset if split == "train" else cfg.test_subset
    return _split(cfg.dataset, split, subset, cfg.pad32, str(torch.device(device or "cpu")))


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of 0-based `epoch` under cfg's schedule (per-epoch, closed form)."""
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        return cfg.lr * 0.1 ** sum(epoch >= m for m in cfg.milestones)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))  # cosine


def make_optimizer(cfg: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """The optimiser of `cfg` for `model`."""
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay
        )
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1000
) -> tuple[float, float]:
    """Mean cross-entropy loss and accuracy of `model` (eval mode, float32) on (x, y)."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if len(x) == 0:
        raise ValueError("evaluate needs at least one sample, got an empty x")
    was_training = model.training
    model.eval()
    loss = torch.zeros((), dtype=torch.float64, device=x.device)
    correct = torch.zeros((), dtype=torch.int64, device=x.device)
    for i in range(0, len(x), batch_size):
        out = model(x[i : i + batch_size]).float()
        loss += F.cross_entropy(out, y[i : i + batch_size], reduction="sum").double()
        correct += (out.argmax(1) == y[i : i + batch_size]).sum()
    model.train(was_training)
    return loss.item() / len(x), correct.item() / len(x)


def _epoch_seed(data_seed: int, epoch: int) -> int:
    return int(np.random.SeedSequence([data_seed, epoch]).generate_state(1)[0])


def train_epoch(
    model: nn.Module,
    opt: torch.optim.Optimizer,
    cfg: TrainConfig,
    x: torch.Tensor,
    y: torch.Tensor,
    epoch: int,
    data_seed: int,
) -> tuple[float, float]:
    """One epoch of SGD/Adam over (x, y) in a seeded order; returns (mean loss, accuracy).

    No host-device synchronisation inside the loop: losses are summed on the device. Seeds the
    global torch RNG (dropout) from (data_seed, epoch), so that an epoch is reproducible alone.
    """
    device = x.device
    seed = _epoch_seed(data_seed, epoch)
    torch.manual_seed(seed)  # dropout
    gen = torch.Generator(device=device).manual_seed(seed)
    order = torch.randperm(len(x), generator=gen, device=device)
    for group in opt.param_groups:
        group["lr"] = lr_at(cfg, epoch)
    cuda = device.type == "cuda"
    model.train()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), dtype=torch.int64, device=device)
    for i in range(0, len(x), cfg.batch_size):
        idx = order[i : i + cfg.batch_size]
        xb, yb = x[idx], y[idx]
        if cfg.augment:
            xb = data.augment(xb, gen)
        if cuda and xb.dim() == 4:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda):
            out = model(xb)
            loss = F.cross_entropy(out.float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_sum += loss.detach() * len(yb)
        correct += (out.argmax(1) == yb).sum()
    return loss_sum.item() / len(x), correct.item() / len(x)


# ---------------------------------------------------------------- state <-> tensors


def _pack(model: nn.Module, opt: torch.optim.Optimizer | None) -> dict[str, torch.Tensor]:
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    if opt is not None:
        names = {p: n for n, p in model.named_parameters()}
        for p, st in opt.state.items():
            for k, v in st.items():
                tensors[f"optim.{names[p]}.{k}"] = torch.as_tensor(v)
    return tensors


def _unpack(tensors: dict[str, torch.Tensor], model: nn.Module, opt: torch.optim.Optimizer | None):
    model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
    if opt is None:
        return
    device = next(model.parameters()).device
    for name, p in model.named_parameters():
        prefix = f"optim.{name}."
        st = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if st:
            opt.state[p] = {k: (v if k == "step" else v.to(device)) for k, v in st.items()}


# ---------------------------------------------------------------- trajectories


def _segments(segments: list[tuple[int, int]]) -> list[list[int]]:
    return [[int(s), int(n)] for s, n in segments if n > 0]


def _spec(cfg: TrainConfig, init_seed: int, segments: list[list[int]], device: torch.device):
    return {
        "config": cfg.to_dict(),
        "init_seed": int(init_seed),
        "segments": segments,
        "device_type": device.type,
    }


def _progress_enabled() -> bool:
    return os.environ.get("LLFC_PROGRESS", "1") != "0"


def _run(
    cfg: TrainConfig,
    init_seed: int,
    segments: list[list[int]],
    device: torch.device,
    label: str,
) -> tuple[dict[str, torch.Tensor], History]:
    """Tensors (model + optimiser) and history at the end of `segments`, from cache or trained."""
    spec = _spec(cfg, init_seed, segments, device)
    hit = cache.load(spec)
    if hit is not None:
        return hit[0], hit[1]["history"]
    with cache.lock(spec):
        hit = cache.load(spec)  # another process may have built it meanwhile
        if hit is not None:
            return hit[0], hit[1]["history"]

        model = build_model(cfg, init_seed).to(device)
        if device.type == "cuda" and cfg.model != "mlp":
            model = model.to(memory_format=torch.channels_last)
        opt = make_optimizer(cfg, model)
        history: History = {
            k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
        }
        start = 0
        if len(segments) > 1:  # continue from the cached end of the previous segment
            tensors, history = _run(cfg, init_seed, segments[:-1], device, label)
            _unpack(tensors, model, opt)
            start = sum(n for _, n in segments[:-1])
        resume_spec = {**spec, "resume": True}
        partial = cache.load(resume_spec)
        if partial is not None:
            _unpack(partial[0], model, opt)
            history, start = partial[1]["history"], partial[1]["epoch"]

        end = sum(n for _, n in segments)
        x, y = dataset(cfg, "train", device)
        xt, yt = dataset(cfg, "test", device)
        bar = tqdm(
            range(start, end),
            desc=label,
            initial=start,
            total=end,
            unit="epoch",
            file=sys.stderr,
            disable=not _progress_enabled(),
            leave=False,
        )
        for epoch in bar:
            t0 = time.perf_counter()
            loss, acc = train_epoch(model, opt, cfg, x, y, epoch, segments[-1][0])
            test_loss, test_acc = evaluate(model, xt, yt)
            finite_weights = all(bool(torch.isfinite(p).all()) for p in model.parameters())
            if not (math.isfinite(loss) and math.isfinite(test_loss) and finite_weights):
                raise TrainingDiverged(
                    f"{label}: training diverged in epoch {epoch + 1} (train loss {loss}, "
                    f"test loss {test_loss}, finite weights: {finite_weights}; lr={cfg.lr}, "
                    f"optimizer={cfg.optimizer}); lower the learning rate. "
                    "No checkpoint was written for this epoch."
                )
            for k, v in zip(
                history,
                (loss, acc, test_loss, test_acc, lr_at(cfg, epoch), time.perf_counter() - t0),
                strict=True,
            ):
                history[k].append(v)
            bar.set_postfix(loss=f"{loss:.3f}", test_acc=f"{test_acc:.3f}")
            if epoch + 1 < end:
                cache.save(resume_spec, _pack(model, opt), {"history": history, "epoch": epoch + 1})
        bar.close()
        tensors = _pack(model, opt)
        cache.save(spec, tensors, {"history": history, "epoch": end})
        cache.remove(resume_spec)
        return tensors, history


def train_run(
    cfg: TrainConfig,
    init_seed: int,
    segments: list[tuple[int, int]],
    device: torch.device | str | None = None,
    label: str = "train",
) -> tuple[nn.Module, History]:
    """Train (or load from the cache) the trajectory `segments`; return (model in eval mode, history).

    `segments` is a list of (data_seed, n_epochs) whose epochs sum to cfg.epochs.
    """
    device = torch.device(device) if device is not None else default_device()
    segs = _segments(segments)
    total = sum(n for _, n in segs)
    if total != cfg.epochs:
        raise ValueError(f"segments cover {total} epochs, but the config trains {cfg.epochs}")
    tensors, history = _run(cfg, init_seed, segs, device, label)
    model = build_model(cfg, init_seed).to(device)
    _unpack(tensors, model, None)
    return model.eval(), history


def train_model(
    cfg: TrainConfig, seed: int = 0, device: torch.device | str | None = None
) -> tuple[nn.Module, History]:
    """One model trained from scratch: initialisation and data order both seeded by `seed`."""
    return train_run(cfg, seed, [(seed, cfg.epochs)], device, label=f"{cfg.model} seed {seed}")


def train_spawned_pair(
    cfg: TrainConfig,
    spawn_epoch: int,
    seed: int = 0,
    child_seeds: tuple[int, int] = (1, 2),
    device: torch.device | str | None = None,
) -> tuple[nn.Module, nn.Module, History, History]:
    """Two children of one run that share its first `spawn_epoch` epochs (the paper's spawning).

    Returns (model_a, model_b, history_a, history_b).
    """
    if not 0 <= spawn_epoch <= cfg.epochs:
        raise ValueError(f"spawn_epoch must lie in [0, epochs={cfg.epochs}], got {spawn_epoch}")
    if child_seeds[0] == child_seeds[1]:
        raise ValueError(f"the two children need different seeds, got {child_seeds}")
    out = []
    for s in child_seeds:
        segs = [(seed, spawn_epoch), (s, cfg.epochs - spawn_epoch)]
        out.append(
            train_run(cfg, seed, segs, device, label=f"{cfg.model} k={spawn_epoch} child {s}")
        )
    (a, ha), (b, hb) = out
    return a, b, ha, hb


def train_independent_pair(
    cfg: TrainConfig, seeds: tuple[int, int] = (1, 2), device: torch.device | str | None = None
) -> tuple[nn.Module, nn.Module, History, History]:
    """Two runs from different initialisations and data orders. Returns (a, b, history_a, history_b)."""
    if seeds[0] == seeds[1]:
        raise ValueError(f"an independent pair needs two different seeds, got {seeds}")
    (a, ha), (b, hb) = (train_model(cfg, s, device) for s in seeds)
    return a, b, ha, hb
