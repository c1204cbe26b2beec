"""What each chapter trains, what the checkpoint cache already holds, and how long the rest takes.

`python -m llfc_utils.tools.run --dry-run` prints this plan and trains nothing; a real run prints its
summary (one line per chapter and a total) before it starts. A chapter's runs are listed by a
function below that mirrors the training calls of its notebook, built with the trajectory
functions `train_spawned_pair` and friends use themselves (`train.spawned_trajectories`, ...), so
the cache keys looked up here are exactly the ones training will look up. When a notebook's
training calls change, change its function here too (tests/test_plan.py checks chapter 01 against
real training, and every chapter's calls by name).

Seconds per epoch come from `train.epoch_seconds` (measured on this device kind, recorded by every
training run) when there is a measurement, else from a guess: a table of per-epoch seconds
measured once on a 2-core CPU for the `cpu` profile, or a FLOPs count over an assumed throughput.
The printout says which numbers are measured and which are guesses.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

from llfc_utils import cache, config, models, train
from llfc_utils.config import TrainConfig

SIZES = {"mnist": (60_000, 10_000), "fashion_mnist": (60_000, 10_000), "cifar10": (50_000, 10_000)}

# Dense peaks in TFLOP/s from the vendors' data sheets: (name, 16-bit tensor-core peak, native
# bf16, float32 peak without tensor cores), matched as whole words of torch.cuda.get_device_name()
# ("NVIDIA L40" is not an "L4"); the first match wins. T4 and V100 have no bf16: the 16-bit peak
# is fp16's, and training there runs fp16 (`train.precision`).
PEAK_TFLOPS: tuple[tuple[str, float, bool, float], ...] = (
    ("H100 PCIe", 756.0, True, 51.0),
    ("H100 NVL", 835.0, True, 60.0),
    ("H100", 989.0, True, 67.0),  # SXM
    ("H200", 989.0, True, 67.0),
    ("GH200", 989.0, True, 67.0),
    ("A100", 312.0, True, 19.5),
    ("L40S", 362.0, True, 91.6),
    ("L40", 181.0, True, 90.5),
    ("L4", 121.0, True, 30.3),
    ("A10", 125.0, True, 31.2),
    ("V100", 125.0, False, 15.7),
    ("T4", 65.0, False, 8.1),
)

# Seconds per epoch measured on the 2-core CPU this book is built on (README), for the `cpu`
# profile's configs; keyed by timing key, so a changed config falls back to the FLOPs guess.
CPU_EPOCH_SECONDS = {
    train.timing_key(config.PROFILES["cpu"]["mlp"]): 7.0,
    train.timing_key(config.PROFILES["cpu"]["cnn"]): 5.0,
}
# The throughput those two measurements imply (about 44 and 31 GFLOP/s of counted FLOPs, see
# `train_flops`); the lower one, for any other config on a CPU.
CPU_FLOPS = 30e9
GPU_EFFICIENCY = 0.25  # assumed fraction of the peak that small 32x32 convnets reach
GPU_FLOPS_UNKNOWN = 100e12  # assumed 16-bit throughput of a GPU not in PEAK_TFLOPS (fp32: / 8)
# assumed seconds of kernel launches and Python per optimiser step: a base plus some per module
GPU_STEP_OVERHEAD = (0.5e-3, 40e-6)
CPU_STEP_OVERHEAD = 1e-3  # assumed seconds of Python and dispatch per optimiser step
CHECKPOINT_BYTES_PER_S = 0.5e9  # assumed: the per-epoch resume checkpoint, written and hashed


# ---------------------------------------------------------------- what a chapter trains


@dataclass(frozen=True)
class Run:
    """One training trajectory a chapter needs."""

    role: str
    cfg: TrainConfig
    pair: str  # "single", "independent", "spawned k=..."
    init_seed: int
    segments: tuple[tuple[int, int], ...]
    label: str
    recipe: str = ""  # a variant of the role's recipe ("" = the profile's own)


def _runs(
    role: str, cfg: TrainConfig, pair: str, trajectories: list[train.Trajectory], recipe: str = ""
) -> list[Run]:
    return [
        Run(role, cfg, pair, i, tuple(map(tuple, s)), label, recipe) for i, s, label in trajectories
    ]


def _independent(profile: str, role: str, seeds: tuple[int, int] = (1, 2)) -> list[Run]:
    cfg = config.get(profile, role)
    return _runs(role, cfg, "independent", train.independent_trajectories(cfg, seeds))


def _spawned(
    profile: str, role: str, k: int, seed: int = 0, child_seeds: tuple[int, int] = (1, 2)
) -> list[Run]:
    cfg = config.get(profile, role)
    trajs = train.spawned_trajectories(cfg, k, seed, child_seeds)
    return _runs(role, cfg, f"spawned k={k}", trajs)


def _ch00(profile: str, p: dict[str, Any]) -> list[Run]:
    # train.train_model(cfg, seed=seed) (twice: the second call loads the first)
    cfg = config.get(profile, "mlp")
    return _runs("mlp", cfg, "single", [train.model_trajectory(cfg, p["seed"])])


def _ch01(profile: str, p: dict[str, Any]) -> list[Run]:
    # train_independent_pair(cfg, seeds=(1, 2)); train_spawned_pair(cfg, spawn_epoch, seed=seed,
    # child_seeds=(seed + 1, seed + 2))
    seed = p["seed"]
    return _independent(profile, "mlp") + _spawned(
        profile, "mlp", p["spawn_epoch"], seed, (seed + 1, seed + 2)
    )


def _ch02(profile: str, p: dict[str, Any]) -> list[Run]:
    # per role: train_independent_pair(cfg, seeds=(1, 2)); train_spawned_pair(cfg, k) for k in grid
    out = []
    for role in p["roles"]:
        out += _independent(profile, role)
        for k in p["spawn_epochs"][role]:
            out += _spawned(profile, role, k)
    return out


def _ch03(profile: str, p: dict[str, Any]) -> list[Run]:
    # per role: train_independent_pair(cfg, seeds=(1, 2)), then permutations of it
    return [r for role in p["roles"] for r in _independent(profile, role)]


def _ch04(profile: str, p: dict[str, Any]) -> list[Run]:
    # per role: train_spawned_pair(cfg, k); train_independent_pair(cfg)
    return [
        r
        for role in p["roles"]
        for r in _spawned(profile, role, p["spawn_epoch"][role]) + _independent(profile, role)
    ]


def _ch05(profile: str, p: dict[str, Any]) -> list[Run]:
    # per role: train_independent_pair(cfg, seeds=(1, 2)); train_spawned_pair(cfg, k)
    return [
        r
        for role in p["roles"]
        for r in _independent(profile, role) + _spawned(profile, role, p["spawn_epoch"][role])
    ]


def _ch06(profile: str, p: dict[str, Any]) -> list[Run]:
    # per role: train_independent_pair(cfg, seeds=(1, 2)); train_spawned_pair(cfg, k); then
    # train_spawned_pair(c, lr_spawn_epoch) for c in beyond.lr_variants(cfgs[lr_role], ...)
    from llfc_utils import beyond  # chapter 6's module

    out = [
        r
        for role in p["roles"]
        for r in _independent(profile, role) + _spawned(profile, role, p["spawn_epoch"][role])
    ]
    role, k = p["lr_role"], p["lr_spawn_epoch"]
    variants = beyond.lr_variants(config.get(profile, role), p["lr_factors"], p["adam_lr"])
    for label, cfg in variants.items():
        trajs = train.spawned_trajectories(cfg, k)
        out += _runs(role, cfg, f"spawned k={k}", trajs, recipe=label)
    return out


# chapter -> (its runs, the names of the `train` functions its notebook calls)
CHAPTERS: dict[str, tuple[Callable[[str, dict[str, Any]], list[Run]], set[str]]] = {
    "00_training": (_ch00, {"train_model"}),
    "01_lmc_basics": (_ch01, {"train_independent_pair", "train_spawned_pair"}),
    "02_spawning": (_ch02, {"train_independent_pair", "train_spawned_pair"}),
    "03_permutation": (_ch03, {"train_independent_pair"}),
    "04_weak_additivity": (_ch04, {"train_independent_pair", "train_spawned_pair"}),
    "05_commutativity": (_ch05, {"train_independent_pair", "train_spawned_pair"}),
    "06_beyond": (_ch06, {"train_independent_pair", "train_spawned_pair"}),
    "results": (lambda profile, p: [], set()),
}


def chapter_runs(chapter: str, profile: str, params: dict[str, Any]) -> list[Run] | None:
    """The runs chapter `chapter` trains with `params` (all of its parameters); None if unknown."""
    if chapter not in CHAPTERS:
        return None
    try:
        return CHAPTERS[chapter][0](profile, params)
    except KeyError as e:
        raise ValueError(
            f"the plan of chapter {chapter} needs parameter {e}, which its notebook no longer "
            "has (or a role missing from a per-role dict); update llfc_utils/plan.py"
        ) from e


# ---------------------------------------------------------------- what the cache holds


def _stored(spec: dict[str, Any]) -> dict[str, Any] | None:
    """The sidecar record of spec's checkpoint if it is there and matches (tensors are not read)."""
    weights, sidecar = cache.paths(spec)
    try:
        record = json.loads(sidecar.read_text())
    except (OSError, ValueError):
        return None
    ok = (
        isinstance(record, dict)
        and record.get("version") == cache.VERSION
        and record.get("key") == cache.key_of(spec)
        and weights.is_file()
    )
    return record if ok else None


@dataclass
class RunPlan:
    """One run of a chapter: whether it must be trained, and for how long."""

    run: Run
    status: str  # "cached", "shared" (an earlier run of this plan builds it), "train"
    epochs: int  # epochs still to train for this run
    seconds: float  # estimated seconds for them
    note: str = ""


@dataclass
class ChapterPlan:
    """The runs of one chapter; `runs` is None when the chapter has no plan function."""

    chapter: str
    runs: list[RunPlan] | None
    epochs: int = 0
    seconds: float = 0.0
    sources: set[str] = field(default_factory=set)  # "measured", "guess"


def _to_train(run: Run, device: torch.device, built: set[str]) -> tuple[int, str, str]:
    """(epochs to train, status, note) of `run`, walking back from its end as `train._run` does.

    `built` holds the keys of the checkpoints an earlier run of this plan found cached or will
    train; this run's are added to it.
    """
    specs = train.trajectory_specs(run.cfg, run.init_seed, list(run.segments), device)
    epochs, notes = 0, []
    for i in range(len(specs) - 1, -1, -1):
        spec, key = specs[i], cache.key_of(specs[i])
        cached = _stored(spec) is not None
        if cached or key in built:
            built.add(key)
            if i == len(specs) - 1:
                return 0, ("cached" if cached else "shared"), ""
            done = sum(n for _, n in spec["segments"])
            notes.append(
                (f"its first {done} epochs" if done > 1 else "its first epoch")
                + (" cached" if cached else " shared")
            )
            break
        built.add(key)
        n = spec["segments"][-1][1]
        partial = _stored({**spec, "resume": True}) or {}
        epoch = (
            partial.get("meta", {}).get("epoch") if isinstance(partial.get("meta"), dict) else None
        )
        if isinstance(epoch, int):
            start = sum(n for _, n in spec["segments"][:-1])
            done = epoch - start
            if 0 < done < n:
                n -= done
                notes.append(f"resumes at epoch {start + done}")
        epochs += n
    return epochs, "train", "; ".join(notes)


# ---------------------------------------------------------------- how long


def _row(device_name: str) -> tuple[str, float, bool, float] | None:
    words = f" {' '.join(re.findall(r'[a-z0-9]+', device_name.lower()))} "
    for row in PEAK_TFLOPS:
        if f" {row[0].lower()} " in words:
            return row
    return None


def device_precision(cfg: TrainConfig, kind: str) -> str:
    """What cfg trains in on device kind `kind` (a GPU's name, or "cpu"), as `train.precision` decides."""
    if kind == "cpu" or cfg.amp == "fp32":
        return "fp32"
    row = _row(kind)
    return "fp16" if cfg.amp == "bf16" and row is not None and not row[2] else cfg.amp


def peak_tflops(device_name: str, precision: str | None = None) -> tuple[float, str] | None:
    """(dense peak TFLOP/s, its precision) of a GPU from its name, or None if not in the table.

    `precision` None: the 16-bit precision the GPU trains in (bf16, or fp16 where it has no bf16).
    """
    row = _row(device_name)
    if row is None:
        return None
    _, half, bf16, single = row
    precision = precision or ("bf16" if bf16 else "fp16")
    if precision == "fp32":
        return single, "fp32"
    if precision == "bf16" and not bf16:
        return None  # emulated: no data-sheet peak
    return half, precision


def train_flops(cfg: TrainConfig) -> tuple[float, float]:
    """(forward, forward + backward) FLOPs per image of cfg's model, counted by FlopCounterMode.

    Counts matrix multiplications and convolutions only (norms, ReLUs and the optimiser are
    left out); forward + backward is counted, not assumed to be 3x forward.
    """
    return _model_stats(cfg)[:2]


def n_parameters(cfg: TrainConfig) -> int:
    """The number of parameters of cfg's model."""
    return int(_model_stats(cfg)[2])


def n_modules(cfg: TrainConfig) -> int:
    """The number of leaf modules (layers, norms, activations) of cfg's model."""
    return int(_model_stats(cfg)[3])


def _model_stats(cfg: TrainConfig) -> tuple[float, float, int, int]:
    channels, size = train.input_shape(cfg)
    return _count(cfg.model, json.dumps(cfg.model_kwargs, sort_keys=True), channels, size)


@functools.lru_cache(maxsize=32)
def _count(model: str, kwargs: str, channels: int, size: int) -> tuple[float, float, int, int]:
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):  # shapes only: no memory, no initialisation cost
        net = models.build(model, in_channels=channels, image_size=size, **json.loads(kwargs))
        x = torch.zeros(2, channels, size, size)
    with FlopCounterMode(display=False) as fwd:
        net.eval()(x)
    with FlopCounterMode(display=False) as both:
        net.train()(x).sum().backward()
    n = sum(p.numel() for p in net.parameters())
    leaves = sum(1 for m in net.modules() if not any(m.children()))
    return fwd.get_total_flops() / 2, both.get_total_flops() / 2, n, leaves


def guess_epoch_seconds(cfg: TrainConfig, kind: str) -> float:
    """A guess of one epoch's seconds on device kind `kind` from FLOPs, step count and checkpoint size.

    The training and test passes' counted FLOPs over an assumed throughput (a share of the GPU's
    peak in the precision it trains in), plus an assumed overhead per optimiser step, plus writing
    the per-epoch resume checkpoint (weights and optimiser state).
    """
    n_train, n_test = SIZES[cfg.dataset]
    n_train, n_test = cfg.train_subset or n_train, cfg.test_subset or n_test
    fwd, fwd_bwd = train_flops(cfg)
    flops = fwd_bwd * n_train + fwd * n_test
    steps = math.ceil(n_train / cfg.batch_size)
    buffers = 2 if cfg.optimizer == "adam" else int(cfg.momentum > 0)
    write = 4 * n_parameters(cfg) * (1 + buffers) / CHECKPOINT_BYTES_PER_S
    if kind == "cpu":
        return flops / CPU_FLOPS + CPU_STEP_OVERHEAD * steps + write
    precision = device_precision(cfg, kind)
    peak = peak_tflops(kind, precision)
    if peak is not None:
        rate = GPU_EFFICIENCY * peak[0] * 1e12
    else:  # not in the table (or bf16 emulated): a generic GPU, float32 without tensor cores
        rate = GPU_FLOPS_UNKNOWN / (8 if precision == "fp32" or _row(kind) else 1)
    base, per_module = GPU_STEP_OVERHEAD
    return flops / rate + (base + per_module * n_modules(cfg)) * steps + write


def epoch_estimate(cfg: TrainConfig, device: torch.device | str | None = None) -> tuple[float, str]:
    """(seconds per epoch, where that number comes from) for cfg on `device` (or a GPU's name)."""
    device, kind = resolve_device(device)
    cfg = cfg.replace(amp=device_precision(cfg, kind)) if device.type == "cuda" else cfg
    compiled = train.compile_requested()
    for k in dict.fromkeys([kind + (" +compile" if compiled else ""), kind]):
        seconds = train.epoch_seconds(cfg, k)
        if seconds is not None:
            return seconds, f"measured on {k}"
    if device.type == "cpu":
        seconds = CPU_EPOCH_SECONDS.get(train.timing_key(cfg.replace(amp="bf16")))
        if seconds is not None:
            return seconds, "guess: measured once on a 2-core CPU"
    return guess_epoch_seconds(cfg, kind), "guess: from FLOPs"


def resolve_device(device: torch.device | str | None = None) -> tuple[torch.device, str]:
    """(torch device, device kind) of `device`: a torch device, "cuda", "cpu", or a GPU's name.

    A GPU's name (e.g. "Tesla T4", from `--assume-device`) prices that GPU without having it:
    its kind is the name, its checkpoints are looked up as CUDA ones.
    """
    if device is None:
        device = train.default_device()
    if isinstance(device, str):
        try:
            device = torch.device(device)
        except RuntimeError:
            return torch.device("cuda"), device
    return device, train.device_kind(device)


# ---------------------------------------------------------------- the plan


def make(
    chapters: list[str],
    profile: str,
    params: dict[str, dict[str, Any]],
    device: torch.device | str | None = None,
) -> list[ChapterPlan]:
    """The plan of `chapters` in order; params[chapter] holds all of that chapter's parameters.

    A run that an earlier chapter (or an earlier run) of the same plan trains counts once.
    """
    device, kind = resolve_device(device)
    built: set[str] = set()
    estimates: dict[str, tuple[float, str]] = {}
    plans = []
    for chapter in chapters:
        runs = chapter_runs(chapter, profile, params.get(chapter, {}))
        plan = ChapterPlan(chapter, None if runs is None else [])
        for run in runs or []:
            if device.type == "cuda":  # the precision it really trains in, as `train` keys it
                run = dataclasses.replace(
                    run, cfg=run.cfg.replace(amp=device_precision(run.cfg, kind))
                )
            epochs, status, note = _to_train(run, device, built)
            key = train.timing_key(run.cfg)
            if key not in estimates:
                estimates[key] = epoch_estimate(run.cfg, kind if device.type == "cuda" else device)
            per_epoch, source = estimates[key]
            plan.runs.append(RunPlan(run, status, epochs, epochs * per_epoch, note))
            plan.epochs += epochs
            plan.seconds += epochs * per_epoch
            if epochs:
                plan.sources.add(source.split(":")[0])
        plans.append(plan)
    return plans


def duration(seconds: float) -> str:
    """A rough human duration: "40 s", "12 min", "3.5 h", "2.1 days"."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    if seconds < 48 * 3600:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


def _kind(plan: ChapterPlan) -> str:
    if not plan.sources:
        return ""
    return " (" + " and ".join(sorted(plan.sources)) + ")"


def _segments(run: Run) -> str:
    return " + ".join(f"{s}x{n}" for s, n in run.segments if n > 0)


def summary(plans: list[ChapterPlan]) -> str:
    """One line per chapter (epochs to train, estimated time) and a total line."""
    lines = []
    for p in plans:
        if p.runs is None:
            lines.append(f"  {p.chapter:<20} no plan: its training is not estimated")
        elif p.chapter != "results":
            lines.append(
                f"  {p.chapter:<20} {p.epochs:>6} epochs to train  ~{duration(p.seconds):>9}{_kind(p)}"
            )
    epochs = sum(p.epochs for p in plans)
    seconds = sum(p.seconds for p in plans)
    sources: set[str] = set().union(*(p.sources for p in plans)) if plans else set()
    kind = f" ({' and '.join(sorted(sources))})" if sources else ""
    lines.append(f"  {'total':<20} {epochs:>6} epochs to train  ~{duration(seconds):>9}{kind}")
    return "\n".join(lines)


def report(plans: list[ChapterPlan], profile: str, device: torch.device | str | None = None) -> str:
    """The full plan: per chapter, every run and whether it is cached; the configs; the summary."""
    device, kind = resolve_device(device)
    compiled = " with torch.compile" if train.compile_requested() else ""
    amp = config.amp_override() or "bf16"
    precision = device_precision(TrainConfig(amp=amp), kind) if device.type == "cuda" else "fp32"
    out = [f"Plan for profile {profile!r} on {kind}{compiled}, training in {precision}"]
    recipes: dict[str, tuple[str, TrainConfig]] = {}  # timing key -> (name, config)
    for p in plans:
        if p.runs is None:
            out += ["", f"{p.chapter}: no plan (this module does not know the chapter)"]
        if not p.runs:
            continue
        names = [r.run.role + (f" ({r.run.recipe})" if r.run.recipe else "") for r in p.runs]
        w = max(12, *map(len, names))
        out += [
            "",
            f"{p.chapter}: {len(p.runs)} runs, {p.epochs} epochs to train",
            f"  {'role':<{w}} {'pair':<13} {'init':>4}  {'data seed x epochs':<20} "
            f"{'epochs':>6}  status",
        ]
        for name, r in zip(names, p.runs, strict=True):
            run = r.run
            recipes.setdefault(train.timing_key(run.cfg), (name, run.cfg))
            note = f" ({r.note})" if r.note else ""
            out.append(
                f"  {name:<{w}} {run.pair:<13} {run.init_seed:>4}  {_segments(run):<20} "
                f"{r.epochs:>6}  {r.status}{note}"
            )
    if recipes:
        out += [
            "",
            "Recipes (s/epoch: measured on this device kind when it says so, else a guess):",
        ]
    w = max([12, *(len(name) for name, _ in recipes.values())])
    for name, cfg in recipes.values():
        per_epoch, source = epoch_estimate(cfg, kind if device.type == "cuda" else device)
        sched = cfg.schedule + (f" {list(cfg.milestones)}" if cfg.milestones else "")
        sched += f" after {cfg.warmup_epochs} warm-up epochs" if cfg.warmup_epochs else ""
        out.append(
            f"  {name:<{w}} {cfg.model} {cfg.model_kwargs} on {cfg.dataset}: {cfg.optimizer} lr "
            f"{cfg.lr:g}, {sched}, {cfg.epochs} epochs, batch {cfg.batch_size}"
            f"{', augmented' if cfg.augment else ''}: {per_epoch:.3g} s/epoch in "
            f"{device_precision(cfg, kind) if device.type == 'cuda' else 'fp32'} ({source})"
        )
    out += ["", "Estimated time:", summary(plans)]
    return "\n".join(out)


def alone(
    chapters: list[str],
    profile: str,
    params: dict[str, dict[str, Any]],
    device: torch.device | str | None = None,
) -> list[ChapterPlan]:
    """The plan of each chapter run by itself (a fresh Colab runtime: nothing shared with others)."""
    return [plan for c in chapters for plan in make([c], profile, params, device)]


def chapter_summary(
    chapter: str, profile: str, params: dict[str, Any], device: torch.device | str | None = None
) -> str:
    """A few lines for the top of a chapter: what it trains, what is cached, the estimate here."""
    device, kind = resolve_device(device)
    (p,) = make([chapter], profile, {chapter: params}, kind if device.type == "cuda" else device)
    if p.runs is None:
        return f"{chapter}: no training plan"
    cached = sum(r.status != "train" for r in p.runs)
    lines = [
        f"Plan ({profile!r} profile on {kind}): {len(p.runs)} training runs, {cached} already "
        f"cached or shared; {p.epochs} epochs to train, ~{duration(p.seconds)}{_kind(p)}"
    ]
    seen = set()
    for r in p.runs:
        cfg = r.run.cfg
        if train.timing_key(cfg) in seen:
            continue
        seen.add(train.timing_key(cfg))
        precision = device_precision(cfg, kind) if device.type == "cuda" else "fp32"
        lines.append(
            f"  {r.run.role}{f' ({r.run.recipe})' if r.run.recipe else ''}: {cfg.model} on "
            f"{cfg.dataset}, {cfg.epochs} epochs per run, {precision}"
        )
    return "\n".join(lines)
