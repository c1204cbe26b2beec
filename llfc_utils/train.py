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
once, and a run killed mid-way resumes from its last resume checkpoint (written after an epoch, at
most every `resume_seconds()`, 30 s by default).

Training runs under 16-bit autocast with float32 master weights where the device has it
(`precision`): bf16 on GPUs and CPUs with native bfloat16 (Ampere and later; AVX512-BF16 or AMX),
fp16 with a gradient scaler on older GPUs (T4, V100), float32 elsewhere or with
`TrainConfig.amp = "fp32"`; a CPU bf16 run has its own checkpoints, and evaluation stays float32. CUDA trains with
channels-last convolutions, and `LLFC_COMPILE=1` compiles the training step (`maybe_compile`).
The seconds of every finished epoch are recorded per device kind and recipe (`llfc_utils.timings`),
for the estimates of `llfc_utils.tools.plan`.
"""

from __future__ import annotations

import contextlib
import functools
import math
import sys
import time
import warnings
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from llfc_utils import cache, data, models, settings, timings
from llfc_utils.config import TrainConfig, check_batch_size

History = dict[str, list[float]]
Trajectory = tuple[int, list[tuple[int, int]], str]  # (init seed, segments, label)


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite."""


def default_device() -> torch.device:
    """CUDA if available, else CPU."""
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """Whether this CPU computes bfloat16 natively (the avx512_bf16 or amx_bf16 flag in /proc/cpuinfo)."""
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:  # not Linux: assume not
        return False
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def build_model(cfg: TrainConfig, seed: int) -> nn.Module:
    """A freshly initialised model for `cfg`, seeded by `seed` (same seed, same weights)."""
    channels, size = data.input_shape(cfg.dataset, cfg.pad32)
    torch.manual_seed(seed)
    return models.build(cfg.model, in_channels=channels, image_size=size, **cfg.model_kwargs)


@functools.lru_cache(maxsize=8)
def _split(name: str, split: str, subset: int | None, pad32: bool, device: str):
    return data.load(name, split, device=device, subset=subset, pad32=pad32)


def dataset(cfg: TrainConfig, split: str, device: torch.device | str | None = None):
    """The (x, y) tensors of `split` for `cfg`, resident on `device` (memoised per process).

    With `cfg.classes` (a task), only the samples of those labels, taken from the subset.
    """
    subset = cfg.train_subset if split == "train" else cfg.test_subset
    x, y = _split(cfg.dataset, split, subset, cfg.pad32, str(torch.device(device or "cpu")))
    if cfg.classes is None:
        return x, y
    keep = torch.isin(y, torch.tensor(cfg.classes, device=y.device))
    return x[keep], y[keep]


def lr_at(cfg: TrainConfig, epoch: int) -> float:
    """The learning rate of 0-based `epoch` under cfg's schedule (per-epoch, closed form).

    With `warmup_epochs` w > 0, epoch e < w uses lr (e + 1) / w, and a cosine schedule then
    decays over the remaining epochs (as optax's warmup_cosine_decay_schedule, per epoch).
    """
    w = cfg.warmup_epochs
    if epoch < w:
        return cfg.lr * (epoch + 1) / w
    if cfg.schedule == "constant":
        return cfg.lr
    if cfg.schedule == "step":
        return cfg.lr * 0.1 ** sum(epoch >= m for m in cfg.milestones)
    return cfg.lr * 0.5 * (1 + math.cos(math.pi * (epoch - w) / (cfg.epochs - w)))  # cosine


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
    check_batch_size(batch_size)
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


def native_bf16(device: torch.device | str) -> bool | None:
    """Whether CUDA `device` computes in bfloat16 natively (Ampere and later); None if unknown here."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        return None
    return torch.cuda.get_device_capability(device)[0] >= 8


def precision(cfg: TrainConfig, device: torch.device | str) -> str:
    """What cfg really trains in on `device`: "bf16", "fp16" or "fp32".

    `amp="bf16"` (the default) is bf16 autocast on GPUs with native bfloat16 and on CPUs with it;
    it becomes "fp16" on a GPU without it (T4, V100), where bf16 autocast is emulated and several
    times slower (fp16 then runs with a gradient scaler), and float32 on other CPUs.
    """
    device = torch.device(device)
    if cfg.amp == "fp32":
        return "fp32"
    if device.type == "cpu":  # bf16 where the CPU has it natively, else float32
        return "bf16" if cfg.amp == "bf16" and cpu_has_bf16() else "fp32"
    if device.type != "cuda":
        return "fp32"
    if cfg.amp == "bf16" and native_bf16(device) is False:
        return "fp16"
    return cfg.amp


def for_device(cfg: TrainConfig, device: torch.device | str) -> TrainConfig:
    """cfg with `amp` set to the precision it trains in on CUDA `device` (unchanged elsewhere)."""
    if torch.device(device).type != "cuda":
        return cfg
    return cfg.replace(amp=precision(cfg, device))


_SCALERS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # optimizer -> its GradScaler


def _scaler(opt: torch.optim.Optimizer, device: torch.device) -> torch.amp.GradScaler:
    """The fp16 gradient scaler of `opt`, made on first use and kept for the rest of its run."""
    if opt not in _SCALERS:
        _SCALERS[opt] = torch.amp.GradScaler(device.type)
    return _SCALERS[opt]


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

    No host-device synchronisation inside the loop: losses are summed on the device. The pass runs
    under autocast in `precision(cfg, device)` (float32 master weights and loss; fp16 with the
    optimiser's gradient scaler).
    Seeds the global torch RNG (dropout) from (data_seed, epoch), so that an epoch is reproducible
    alone. `model` may be a torch.compile'd wrapper (see `maybe_compile`).
    """
    device = x.device
    seed = _epoch_seed(data_seed, epoch)
    torch.manual_seed(seed)  # dropout
    gen = torch.Generator(device=device).manual_seed(seed)
    order = torch.randperm(len(x), generator=gen, device=device)
    for group in opt.param_groups:
        group["lr"] = lr_at(cfg, epoch)
    cuda = device.type == "cuda"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision(cfg, device))
    scaler = _scaler(opt, device) if dtype is torch.float16 else None
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
        with torch.autocast(device.type, dtype=dtype or torch.bfloat16, enabled=dtype is not None):
            out = model(xb)
            loss = F.cross_entropy(out.float(), yb)
        opt.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            opt.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
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
    for name, p in model.named_parameters():
        prefix = f"optim.{name}."
        st = {k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}
        if st:
            opt.state[p] = {k: _state_like(p, k, v) for k, v in st.items()}


def _state_like(p: torch.Tensor, key: str, value: torch.Tensor) -> torch.Tensor:
    """An optimiser buffer of `p` on p's device; one shaped like p also takes p's memory layout
    (channels-last too), which the optimiser's multi-tensor step needs to stay on its fast path."""
    if key == "step":
        return value  # Adam keeps its step count on the CPU
    if value.shape == p.shape:
        return torch.empty_like(p).copy_(value)
    return value.to(p.device)


# ---------------------------------------------------------------- trajectories


def _segments(segments: list[tuple[int, int]]) -> list[list[int]]:
    return [[int(s), int(n)] for s, n in segments if n > 0]


Start = tuple[TrainConfig, list[tuple[int, int]]]  # a pretrained run: (its config, its segments)


def _spec(
    cfg: TrainConfig,
    init_seed: int,
    segments: list[list[int]],
    device: torch.device,
    start: Start | None = None,
):
    config = for_device(cfg, device).identity()  # on a T4, "bf16" trains (and is keyed) as fp16
    spec = {"config": config, "init_seed": int(init_seed), "segments": segments}
    if start is not None:  # fine-tuned: keyed by the checkpoint it starts from
        spec["start"] = _spec(start[0], init_seed, _segments(start[1]), device)
    if device.type != "cuda":
        # Keys from before CPU bf16: a float32 CPU run keeps its key whatever cfg.amp says, and a
        # bf16 CPU run is told apart by "precision", so it never loads a float32 checkpoint.
        config.pop("amp", None)
        if precision(cfg, device) == "bf16":
            spec["precision"] = "bf16"
    return {**spec, "device_type": device.type}


def model_trajectory(cfg: TrainConfig, seed: int) -> Trajectory:
    """The trajectory `train_model(cfg, seed)` trains: (init seed, segments, label)."""
    return seed, [(seed, cfg.epochs)], f"{cfg.model} seed {seed}"


def replicate_seeds(replicate: int) -> dict:
    """The seeds of replicate `replicate` (0, 1, 2, ...) of a chapter's experiment.

    {"independent": (100 r + 1, 100 r + 2), "parent": 100 r, "children": (100 r + 1, 100 r + 2)}:
    replicate 0 is the functions' defaults, and no two replicates share a model.
    """
    if not (isinstance(replicate, int) and replicate >= 0):
        raise ValueError(f"a replicate is a seed index >= 0, got {replicate!r}")
    base = 100 * replicate
    return {
        "independent": (base + 1, base + 2),
        "parent": base,
        "children": (base + 1, base + 2),
    }


def spawned_trajectories(
    cfg: TrainConfig, spawn_epoch: int, seed: int = 0, child_seeds: tuple[int, int] = (1, 2)
) -> list[Trajectory]:
    """The two trajectories `train_spawned_pair` trains (same arguments, same checks)."""
    if not 0 <= spawn_epoch <= cfg.epochs:
        raise ValueError(f"spawn_epoch must lie in [0, epochs={cfg.epochs}], got {spawn_epoch}")
    if child_seeds[0] == child_seeds[1]:
        raise ValueError(f"the two children need different seeds, got {child_seeds}")
    return [
        (
            seed,
            [(seed, spawn_epoch), (s, cfg.epochs - spawn_epoch)],
            f"{cfg.model} k={spawn_epoch} child {s}",
        )
        for s in child_seeds
    ]


def independent_trajectories(cfg: TrainConfig, seeds: tuple[int, int] = (1, 2)) -> list[Trajectory]:
    """The two trajectories `train_independent_pair` trains (same arguments, same checks)."""
    if seeds[0] == seeds[1]:
        raise ValueError(f"an independent pair needs two different seeds, got {seeds}")
    return [model_trajectory(cfg, s) for s in seeds]


def trajectory_specs(
    cfg: TrainConfig,
    init_seed: int,
    segments: list[tuple[int, int]],
    device: torch.device | str | None = None,
    start: Start | None = None,
) -> list[dict]:
    """The cache spec of every checkpoint the trajectory writes (one per segment end, in order).

    A fine-tuned trajectory (`start`, see `train_run`) lists its pretrained run's checkpoints first.
    """
    device = torch.device(device) if device is not None else default_device()
    start = _start(cfg, start)
    before = [] if start is None else trajectory_specs(start[0], init_seed, start[1], device)
    segs = _segments(segments)
    return before + [_spec(cfg, init_seed, segs[: i + 1], device, start) for i in range(len(segs))]


def _start(cfg: TrainConfig, start: Start | None) -> Start | None:
    """`start` checked against cfg; None when it has no epochs (the initialisation itself)."""
    if start is None:
        return None
    base, segments = start
    fields = ("model", "model_kwargs", "dataset", "pad32")
    if any(getattr(base, f) != getattr(cfg, f) for f in fields):
        raise ValueError(
            "a fine-tuned run must start from a run of the same model and data "
            f"({', '.join(fields)}); got {base.model} on {base.dataset} for {cfg.model} on {cfg.dataset}"
        )
    total = sum(n for _, n in _segments(segments))
    if total > base.epochs:
        raise ValueError(f"the start's segments cover {total} epochs, but it trains {base.epochs}")
    return (base, [tuple(s) for s in _segments(segments)]) if total else None


# ---------------------------------------------------------------- torch.compile, optional


def compile_requested() -> bool:
    """Whether $LLFC_COMPILE asks for torch.compile (set it to 1; default off)."""
    return settings.flag("LLFC_COMPILE")


@functools.lru_cache(maxsize=4)
def _compile_problem(device_type: str) -> str | None:
    """None if torch.compile builds and runs a kernel on `device_type`, else why not."""
    try:
        fn = torch.compile(lambda t: torch.relu(t) * 2 + 1)
        fn(torch.ones(8, device=device_type))
    except Exception as e:  # noqa: BLE001 - any failure means: train without compiling
        return f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    return None


def maybe_compile(
    model: nn.Module, device: torch.device | str, enabled: bool | None = None
) -> nn.Module:
    """`torch.compile(model)` if enabled (default: $LLFC_COMPILE) and it works here, else `model`.

    When compiling was asked for but cannot work on this machine, warns and returns `model`.
    The compiled wrapper shares `model`'s parameters; checkpoints are taken from `model`.
    """
    if not (compile_requested() if enabled is None else enabled):
        return model
    problem = _compile_problem(torch.device(device).type)
    if problem is not None:
        warnings.warn(
            f"torch.compile is not available here ({problem}); training without it. "
            "Unset LLFC_COMPILE to silence this.",
            stacklevel=2,
        )
        return model
    # Dropout through the eager random stream: a compiled run draws the same masks as a plain
    # one, so the two compute the same thing up to rounding and may share checkpoints.
    torch._inductor.config.fallback_random = True
    # One static graph per batch shape (the full batches, the last smaller one), not a dynamic one.
    return torch.compile(model, dynamic=False)


def _compiled_epoch(
    step_model: nn.Module,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    one_epoch: Callable[[nn.Module], tuple[float, float]],
    first: bool,
) -> tuple[float, float, nn.Module]:
    """`one_epoch(step_model)` (the compiled model); returns (loss, accuracy, model to go on with).

    Compiling happens in the first steps (and again for the epoch's last, smaller batch). If it
    fails there, this warns, restores model and optimiser to their state before the epoch, and
    runs `one_epoch(model)` with the plain model, which the rest of the run then uses.
    """
    if not first:
        return (*one_epoch(step_model), step_model)
    before = {k: v.clone() for k, v in _pack(model, opt).items()}
    try:
        return (*one_epoch(step_model), step_model)
    except Exception as e:  # noqa: BLE001 - a compiler error of any kind: go on without it
        why = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        warnings.warn(
            f"torch.compile failed on this model ({why}); training it without compiling. "
            "Unset LLFC_COMPILE (or drop --compile) to skip the attempt.",
            stacklevel=3,
        )
    opt.state.clear()
    _unpack(before, model, opt)
    return (*one_epoch(model), model)


@contextlib.contextmanager
def _cudnn_autotune(enabled: bool) -> Iterator[None]:
    """cuDNN times its kernels once per shape and keeps the fastest (training has fixed shapes);
    the process's previous setting is restored afterwards."""
    before = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = before or enabled
    try:
        yield
    finally:
        torch.backends.cudnn.benchmark = before


def resume_seconds() -> float:
    """Least seconds between two resume checkpoints of a run: `$LLFC_RESUME_SECONDS`, default 30.

    A killed run loses at most this much training. Writing one every epoch would cost a large share
    of a short GPU epoch (the optimiser state doubles a VGG-16's 60 MB of weights).
    """
    value = str(settings.value("LLFC_RESUME_SECONDS"))
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:  # also rejects nan
        raise ValueError(
            f"LLFC_RESUME_SECONDS={value!r} is not a number of seconds >= 0; "
            "unset it for the default of 30 (0 writes a resume checkpoint after every epoch)"
        )
    return seconds


def _run(
    cfg: TrainConfig,
    init_seed: int,
    segments: list[list[int]],
    device: torch.device,
    label: str,
    start: Start | None = None,
) -> tuple[dict[str, torch.Tensor], History]:
    """Tensors (model + optimiser) and history at the end of `segments`, from cache or trained."""
    cfg = for_device(cfg, device)  # the precision it really trains in: keys and timings say so
    if start is not None:
        start = (for_device(start[0], device), start[1])
    spec = _spec(cfg, init_seed, segments, device, start)
    hit = cache.load(spec)
    if hit is not None:
        return hit[0], hit[1]["history"]
    with cache.lock(spec):
        hit = cache.load(spec)  # another process may have built it meanwhile
        if hit is not None:
            return hit[0], hit[1]["history"]
        resume_spec = {**spec, "resume": True}
        model, step_model, opt = _prepare(cfg, init_seed, device)
        history, epoch = _restore(
            cfg, init_seed, segments, device, label, model, opt, resume_spec, start
        )
        _fit(cfg, segments, device, label, model, step_model, opt, history, epoch, resume_spec)
        return _save(spec, resume_spec, model, opt, history, sum(n for _, n in segments))


def _prepare(
    cfg: TrainConfig, init_seed: int, device: torch.device
) -> tuple[nn.Module, nn.Module, torch.optim.Optimizer]:
    """(model, the model the steps run (maybe compiled), optimiser), freshly built on `device`."""
    model = build_model(cfg, init_seed).to(device)
    if device.type == "cuda":
        if cfg.model != "mlp":
            model = model.to(memory_format=torch.channels_last)
    step_model = maybe_compile(model, device)  # the same parameters, maybe compiled
    return model, step_model, make_optimizer(cfg, model)


def _restore(
    cfg: TrainConfig,
    init_seed: int,
    segments: list[list[int]],
    device: torch.device,
    label: str,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    resume_spec: dict,
    start: Start | None = None,
) -> tuple[History, int]:
    """Load where the last segment's training starts into model and opt; return (history, epoch).

    From the cached end of the previous segment (built first if missing), or for the first
    segment of a fine-tuned run from its pretrained weights (a fresh optimiser), then from this
    segment's resume checkpoint if there is one.
    """
    history: History = {
        k: [] for k in ("train_loss", "train_acc", "test_loss", "test_acc", "lr", "seconds")
    }
    epoch = 0
    if len(segments) > 1:  # continue from the cached end of the previous segment
        tensors, history = _run(cfg, init_seed, segments[:-1], device, label, start)
        _unpack(tensors, model, opt)
        epoch = sum(n for _, n in segments[:-1])
    elif start is not None:  # the pretrained weights, without their optimiser state
        tensors, _ = _run(
            start[0], init_seed, _segments(start[1]), device, f"{label} (pretraining)"
        )
        _unpack(tensors, model, None)
    partial = cache.load(resume_spec)
    if partial is not None:
        _unpack(partial[0], model, opt)
        history, epoch = partial[1]["history"], partial[1]["epoch"]
    return history, epoch


def _fit(
    cfg: TrainConfig,
    segments: list[list[int]],
    device: torch.device,
    label: str,
    model: nn.Module,
    step_model: nn.Module,
    opt: torch.optim.Optimizer,
    history: History,
    start: int,
    resume_spec: dict,
) -> None:
    """Train from epoch `start` to the end of `segments`, appending each epoch to `history`.

    Raises TrainingDiverged on a non-finite loss or weight; writes a resume checkpoint at most
    every `resume_seconds()`; records each epoch's seconds.
    """
    end = sum(n for _, n in segments)
    every = resume_seconds()
    x, y = dataset(cfg, "train", device)
    xt, yt = dataset(cfg, "test", device)
    bar = tqdm(
        range(start, end),
        desc=label,
        initial=start,
        total=end,
        unit="epoch",
        file=sys.stderr,
        disable=not settings.show_progress(),
        leave=False,
    )
    last_saved = time.perf_counter()
    for epoch in bar:
        t0 = time.perf_counter()

        def one_epoch(m: nn.Module, epoch: int = epoch) -> tuple[float, float]:
            return train_epoch(m, opt, cfg, x, y, epoch, segments[-1][0])

        if step_model is model:
            loss, acc = one_epoch(model)
        else:
            loss, acc, step_model = _compiled_epoch(
                step_model, model, opt, one_epoch, first=epoch == start
            )
        test_loss, test_acc = evaluate(model, xt, yt)
        finite = torch.stack([torch.isfinite(p).all() for p in model.parameters()])
        finite_weights = bool(finite.all())  # one read-back per epoch, not one per tensor
        if not (math.isfinite(loss) and math.isfinite(test_loss) and finite_weights):
            raise TrainingDiverged(
                f"{label}: training diverged in epoch {epoch + 1} (train loss {loss}, "
                f"test loss {test_loss}, finite weights: {finite_weights}; lr={cfg.lr}, "
                f"optimizer={cfg.optimizer}); lower the learning rate. "
                "No checkpoint was written for this epoch."
            )
        seconds = time.perf_counter() - t0  # synchronised: evaluate() read its result back
        for k, v in zip(
            history,
            (loss, acc, test_loss, test_acc, lr_at(cfg, epoch), seconds),
            strict=True,
        ):
            history[k].append(v)
        bar.set_postfix(loss=f"{loss:.3f}", test_acc=f"{test_acc:.3f}")
        if epoch + 1 < end and time.perf_counter() - last_saved >= every:
            meta = {"history": history, "epoch": epoch + 1}
            _save_or_warn(resume_spec, _pack(model, opt), meta, RESUME_NOT_SAVED)
            last_saved = time.perf_counter()
        kind = timings.device_kind(device, compiled=step_model is not model)
        timings.record_epoch_seconds(cfg, kind, time.perf_counter() - t0)  # with the save
        timings.log_training_seconds(time.perf_counter() - t0)
    bar.close()


def _save(
    spec: dict,
    resume_spec: dict,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    history: History,
    end: int,
) -> tuple[dict[str, torch.Tensor], History]:
    """Store the finished segment's checkpoint, drop its resume checkpoint; return (tensors, history)."""
    tensors = _pack(model, opt)
    if _save_or_warn(spec, tensors, {"history": history, "epoch": end}, MODEL_NOT_SAVED):
        cache.remove(resume_spec)
    return tensors, history


RESUME_NOT_SAVED = "training goes on without it (a kill now loses more epochs)"
MODEL_NOT_SAVED = (
    "the trained model is kept in memory for this process only (a later run trains it again)"
)


def _save_or_warn(spec: dict, tensors: dict[str, torch.Tensor], meta: dict, then: str) -> bool:
    """cache.save, or where that fails (a full or read-only disk) a warning that says `then`."""
    try:
        cache.save(spec, tensors, meta)
        return True
    except OSError as e:
        warnings.warn(
            f"could not write checkpoint {cache.paths(spec)[0]} ({e}); {then}; free space in "
            f"{cache.cache_dir()} or point LLFC_CACHE at another folder",
            stacklevel=3,
        )
        return False


def train_run(
    cfg: TrainConfig,
    init_seed: int,
    segments: list[tuple[int, int]],
    device: torch.device | str | None = None,
    label: str = "train",
    *,
    start: Start | None = None,
) -> tuple[nn.Module, History]:
    """Train (or load from the cache) the trajectory `segments`; return (model in eval mode, history).

    `segments` is a list of (data_seed, n_epochs) whose epochs sum to cfg.epochs. With `start` =
    (pretraining config, its segments), the run is *fine-tuned*: it begins from the weights at the
    end of the trajectory (that config, `init_seed`, those segments), trained first if missing,
    with a fresh optimiser and cfg's own schedule (cfg may train another task: `cfg.classes`).
    A start of zero epochs is the initialisation, i.e. a run from scratch.
    """
    device = torch.device(device) if device is not None else default_device()
    segs = _segments(segments)
    total = sum(n for _, n in segs)
    if total != cfg.epochs:
        raise ValueError(f"segments cover {total} epochs, but the config trains {cfg.epochs}")
    start = _start(cfg, start)
    with _cudnn_autotune(device.type == "cuda"):
        tensors, history = _run(cfg, init_seed, segs, device, label, start)
    model = build_model(cfg, init_seed).to(device)
    _unpack(tensors, model, None)
    return model.eval(), history


def train_model(
    cfg: TrainConfig, seed: int = 0, device: torch.device | str | None = None
) -> tuple[nn.Module, History]:
    """One model trained from scratch: initialisation and data order both seeded by `seed`."""
    init, segs, label = model_trajectory(cfg, seed)
    return train_run(cfg, init, segs, device, label)


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
    (a, ha), (b, hb) = (
        train_run(cfg, init, segs, device, label)
        for init, segs, label in spawned_trajectories(cfg, spawn_epoch, seed, child_seeds)
    )
    return a, b, ha, hb


def train_independent_pair(
    cfg: TrainConfig, seeds: tuple[int, int] = (1, 2), device: torch.device | str | None = None
) -> tuple[nn.Module, nn.Module, History, History]:
    """Two runs from different initialisations and data orders. Returns (a, b, history_a, history_b)."""
    (a, ha), (b, hb) = (
        train_run(cfg, init, segs, device, label)
        for init, segs, label in independent_trajectories(cfg, seeds)
    )
    return a, b, ha, hb
