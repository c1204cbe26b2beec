"""What each chapter trains, what the checkpoint cache already holds, and how long the rest takes.

`python -m llfc_utils.tools.run --dry-run` prints this plan and trains nothing; a real run prints its
summary (one line per chapter and a total) before it starts. A chapter's runs are read from its
notebook: `chapter_runs` runs its setup and training cells with `train.train_run`, through which
every trainer goes, replaced by a recorder, so the cache keys looked up here are exactly the ones
training will look up, and a new chapter is planned without any change here.

Seconds per epoch come from `timings.epoch_seconds` (measured on this device kind, recorded by every
training run) when there is a measurement, else from a guess: a table of per-epoch seconds
measured once on a 2-core CPU for the `cpu` profile, or a FLOPs count over an assumed throughput.
The printout says which numbers are measured and which are guesses.
"""

from __future__ import annotations

import ast
import contextlib
import dataclasses
import functools
import io
import json
import math
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any
from unittest import mock

import torch
import torch._dynamo  # noqa: F401  (imports sympy whole before chapter code runs on stand-ins)

from llfc_utils import cache, config, data, models, timings, train
from llfc_utils.config import TrainConfig
from llfc_utils.tools import colab
from llfc_utils.tools.paths import NOTEBOOKS

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

# Seconds per epoch (training, then the test pass) measured on the 2-core CPU this book is built
# on, in bf16 on idle cores (2 December 2026), for the `cpu` profile's configs; keyed by timing key,
# so a changed config falls back to the FLOPs guess.
CPU_EPOCH_SECONDS = {
    timings.timing_key(config.PROFILES["cpu"]["mlp"]): 0.9,
    timings.timing_key(config.PROFILES["cpu"]["cnn"]): 2.3,
    timings.timing_key(config.PROFILES["cpu"]["vgg16"]): 4.4,
    timings.timing_key(config.PROFILES["cpu"]["resnet20"]): 10.0,
    timings.timing_key(config.PROFILES["cpu"]["cnn_wide"]): 10.9,
}
# The counted FLOPs per second those measurements imply (`train_flops`, training and test pass):
# MLP 129e9, small VGG 67e9, VGG-16 72e9, ResNet-20 65e9, the wide VGG 224e9; the lowest, for any
# other config on a CPU.
CPU_FLOPS = 65e9
# A CPU without bfloat16 trains in float32: about 1.5x the time (the whole `cpu` book, How to run).
CPU_FP32_SLOWDOWN = 1.5
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
    pair: str  # "spawned k=..." or "from scratch"
    init_seed: int
    segments: tuple[tuple[int, int], ...]
    label: str
    recipe: str = ""  # how cfg differs from the role's recipe in the profile ("" = not at all)
    start: tuple | None = None  # fine-tuned: (pretraining config, its segments), as train_run's


def _describe(cfg: TrainConfig, profile: str) -> tuple[str, str]:
    """(role, recipe): the profile's role with cfg's model and data, and the fields cfg changes."""
    roles = config.PROFILES.get(profile, {})
    same_net = [
        (role, base)
        for role, base in roles.items()
        if (base.model, base.model_kwargs, base.dataset)
        == (cfg.model, cfg.model_kwargs, cfg.dataset)
    ]
    for role, base in same_net:
        if base.replace(amp=cfg.amp) == cfg:
            return role, ""
    if not same_net:
        return cfg.model, ""
    role, base = same_net[0]
    changed = [
        f"{f.name} {getattr(cfg, f.name)}"
        for f in dataclasses.fields(cfg)
        if f.name != "amp" and getattr(cfg, f.name) != getattr(base, f.name)
    ]
    return role, ", ".join(changed)


class StandIn:
    """What planning returns for a model, a history or data it did not train or load.

    Anything done with it gives it back (attributes, calls, items, arithmetic); it prints as "?".
    """

    def __getattr__(self, name: str) -> StandIn:
        if name.startswith("__"):
            raise AttributeError(name)
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> StandIn:
        return self

    def __getitem__(self, key: Any) -> StandIn:
        return self

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def __iter__(self) -> Iterator[StandIn]:
        return iter([self])

    def __len__(self) -> int:
        return 1

    def __bool__(self) -> bool:
        return True

    def __float__(self) -> float:
        return math.nan

    def __format__(self, spec: str) -> str:
        return "?"

    def __repr__(self) -> str:
        return "?"

    def __enter__(self) -> StandIn:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def _same(self, *args: Any) -> StandIn:
        return self

    __add__ = __radd__ = __sub__ = __rsub__ = __mul__ = __rmul__ = _same
    __truediv__ = __rtruediv__ = __matmul__ = __rmatmul__ = __pow__ = _same
    __neg__ = __abs__ = _same


def _has_stand_in(value: Any, depth: int = 0) -> bool:
    """Whether `value` is, or holds (in lists, tuples, sets or dicts), a StandIn."""
    if isinstance(value, StandIn):
        return True
    if depth > 4:
        return False
    if isinstance(value, dict):
        value = [*value.keys(), *value.values()]
    if isinstance(value, (list, tuple, set, frozenset)):
        return any(_has_stand_in(v, depth + 1) for v in value)
    return False


class _Guarded:
    """A module of this package whose functions give a StandIn when handed one (nothing computed)."""

    def __init__(self, module: ModuleType) -> None:
        self._module = module

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._module, name)
        if isinstance(value, ModuleType) and value.__name__.startswith("llfc_utils"):
            return _Guarded(value)
        if not callable(value) or isinstance(value, type):
            return value

        def guarded(*args: Any, **kwargs: Any) -> Any:
            if _has_stand_in(args) or _has_stand_in(kwargs):
                return StandIn()
            return value(*args, **kwargs)

        return guarded


def _trains(node: ast.AST) -> bool:
    """Whether code `node` calls a training function (`train.train_*`, or a `train_*` name)."""
    for n in ast.walk(node):
        f = n.func if isinstance(n, ast.Call) else None
        name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else ""
        if name.startswith("train_"):
            return True
    return False


def _code(cell: dict[str, Any]) -> ast.Module:
    """A code cell's source parsed; IPython magics (%pip, !cmd) become `pass`."""
    lines = "".join(cell["source"]).splitlines()
    return ast.parse(
        "\n".join(
            line[: len(line) - len(line.lstrip())] + "pass"
            if line.lstrip().startswith(("%", "!"))
            else line
            for line in lines
        )
    )


SKIPPED_TAGS = {"colab-install", "check", "solution", "remove-cell"}  # never run by the planner


def _cells(notebook: Path) -> tuple[ast.Module, list[ast.Module]]:
    """(the parameters cell, the cells the planner runs): the setup cells, then the training cells."""
    nb = json.loads(notebook.read_text())
    params, setup, training = None, [], []
    for cell in nb["cells"]:
        tags = set(cell.get("metadata", {}).get("tags", []))
        if cell["cell_type"] != "code" or tags & SKIPPED_TAGS:
            continue
        if "parameters" in tags:
            params = _code(cell)
        elif params is not None:
            code = _code(cell)
            if _trains(code):
                training.append(code)
            elif not training:
                setup.append(code)
    if params is None:
        raise ValueError(f"{notebook.name} has no cell tagged `parameters`")
    return params, setup + training


def chapter_runs(
    chapter: str, profile: str, params: dict[str, Any], folder: Path = NOTEBOOKS
) -> list[Run] | None:
    """The runs chapter `chapter` trains with `params`, read from its notebook; None if there is none.

    Runs the chapter's parameters cell (then `params`), its setup cells and every cell that calls a
    training function, with `train.train_run` (through which every trainer goes) replaced by a
    recorder and data by stand-ins: nothing is trained or loaded. A statement that fails on a
    stand-in is skipped, unless it trains: then the plan would be incomplete, and this raises.
    """
    notebook = Path(folder) / f"{chapter}.ipynb"
    if not notebook.is_file():
        return None
    from llfc_utils.tools.run import environment  # the runner imports this module

    params_cell, cells = _cells(notebook)
    runs: list[Run] = []

    def record(cfg: TrainConfig, init_seed: int, segments: list, *args: Any, **kwargs: Any):
        role, recipe = _describe(cfg, profile)
        segs = tuple((int(s), int(n)) for s, n in segments)
        start = kwargs.get("start")
        if start is not None:
            start = (start[0], tuple((int(s), int(n)) for s, n in start[1]))
        pair = f"spawned k={segs[0][1]}" if len(segs) > 1 else "from scratch"
        pair = "fine-tuned" if start is not None else pair
        label = kwargs.get("label", args[1] if len(args) > 1 else "")
        run = Run(role, cfg, pair, int(init_seed), segs, label, recipe, start)
        same = (cfg, run.init_seed, segs, start)
        if all((r.cfg, r.init_seed, r.segments, r.start) != same for r in runs):
            runs.append(run)  # a chapter that asks for a run twice trains it once
        return StandIn(), StandIn()

    def stand_ins(*args: Any, **kwargs: Any) -> tuple[StandIn, StandIn]:
        return StandIn(), StandIn()

    ns: dict[str, Any] = {"__name__": f"plan_{chapter}"}
    exec(compile(params_cell, notebook.name, "exec"), ns)
    ns.update(params, profile=profile)
    env = {"LLFC_PROFILE": profile, "LLFC_PROGRESS": "0"}
    with (
        tempfile.TemporaryDirectory() as scratch,
        environment({**env, "LLFC_RESULTS": scratch}),
        mock.patch.object(train, "train_run", record),
        mock.patch.object(train, "dataset", stand_ins),
        mock.patch.object(data, "load", stand_ins),
        # a chapter's setup cell prints its own plan (colab.choose_profile): planning it here
        # would plan the chapter again, and that plan again, until the recursion limit
        mock.patch.object(colab, "show_plan", lambda *args, **kwargs: None),
        contextlib.redirect_stdout(io.StringIO()),
        warnings.catch_warnings(),
    ):
        warnings.simplefilter("ignore")
        for cell in cells:
            for statement in cell.body:
                try:
                    exec(compile(ast.Module([statement], []), notebook.name, "exec"), ns)
                except Exception as e:  # noqa: BLE001 - a stand-in cannot do everything
                    if _trains(statement):
                        raise ValueError(
                            f"the plan of chapter {chapter} is incomplete: its training code at "
                            f"line {statement.lineno} of a cell raised {type(e).__name__}: {e}"
                        ) from e
                for name, value in list(ns.items()):
                    if isinstance(value, ModuleType) and value.__name__.startswith("llfc_utils"):
                        ns[name] = _Guarded(value)
        if "matplotlib.pyplot" in sys.modules:
            sys.modules["matplotlib.pyplot"].close("all")
    return runs


# ---------------------------------------------------------------- what the cache holds


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
    start = None if run.start is None else (run.start[0], list(run.start[1]))
    specs = train.trajectory_specs(run.cfg, run.init_seed, list(run.segments), device, start)
    epochs, notes = 0, []
    for i in range(len(specs) - 1, -1, -1):
        spec, key = specs[i], cache.key_of(specs[i])
        cached = cache.stored(spec) is not None
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
        partial = cache.stored({**spec, "resume": True}) or {}
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
    channels, size = data.input_shape(cfg.dataset, cfg.pad32)
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
        slowdown = CPU_FP32_SLOWDOWN if train.precision(cfg, "cpu") == "fp32" else 1.0
        return flops / CPU_FLOPS * slowdown + CPU_STEP_OVERHEAD * steps + write
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
        seconds = timings.epoch_seconds(cfg, k)
        if seconds is not None:
            return seconds, f"measured on {k}"
    if device.type == "cpu":
        seconds = CPU_EPOCH_SECONDS.get(timings.timing_key(cfg.replace(amp="bf16")))
        if seconds is not None:
            if train.precision(cfg, device) == "fp32":  # the table is bf16
                seconds *= CPU_FP32_SLOWDOWN
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
    return device, timings.device_kind(device)


# ---------------------------------------------------------------- the plan


def make(
    chapters: list[str],
    profile: str,
    params: dict[str, dict[str, Any]],
    device: torch.device | str | None = None,
    folder: Path = NOTEBOOKS,
) -> list[ChapterPlan]:
    """The plan of `chapters` (notebooks in `folder`) in order; params[chapter]: all its parameters.

    A run that an earlier chapter (or an earlier run) of the same plan trains counts once.
    """
    device, kind = resolve_device(device)
    built: set[str] = set()
    estimates: dict[str, tuple[float, str]] = {}
    plans = []
    for chapter in chapters:
        runs = chapter_runs(chapter, profile, params.get(chapter, {}), folder)
        plan = ChapterPlan(chapter, None if runs is None else [])
        for run in runs or []:
            if device.type == "cuda":  # the precision it really trains in, as `train` keys it
                run = dataclasses.replace(
                    run, cfg=run.cfg.replace(amp=device_precision(run.cfg, kind))
                )
            epochs, status, note = _to_train(run, device, built)
            key = timings.timing_key(run.cfg)
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
    precision = (
        device_precision(TrainConfig(amp=amp), kind)
        if device.type == "cuda"
        else train.precision(TrainConfig(amp=amp), device)
    )
    out = [f"Plan for profile {profile!r} on {kind}{compiled}, training in {precision}"]
    recipes: dict[str, tuple[str, TrainConfig]] = {}  # timing key -> (name, config)
    for p in plans:
        if p.runs is None:
            out += ["", f"{p.chapter}: no plan (no notebook of that name)"]
        if not p.runs:
            continue
        names = [r.run.role + (f" ({r.run.recipe})" if r.run.recipe else "") for r in p.runs]
        w = max(12, *map(len, names))
        out += [
            "",
            f"{p.chapter}: {len(p.runs)} runs, {p.epochs} epochs to train",
            f"  {'role':<{w}} {'run':<13} {'init':>4}  {'data seed x epochs':<20} "
            f"{'epochs':>6}  status",
        ]
        for name, r in zip(names, p.runs, strict=True):
            run = r.run
            recipes.setdefault(timings.timing_key(run.cfg), (name, run.cfg))
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
            f"{device_precision(cfg, kind) if device.type == 'cuda' else train.precision(cfg, device)}"
            f" ({source})"
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
        if timings.timing_key(cfg) in seen:
            continue
        seen.add(timings.timing_key(cfg))
        precision = (
            device_precision(cfg, kind) if device.type == "cuda" else train.precision(cfg, device)
        )
        lines.append(
            f"  {r.run.role}{f' ({r.run.recipe})' if r.run.recipe else ''}: {cfg.model} on "
            f"{cfg.dataset}, {cfg.epochs} epochs per run, {precision}"
        )
    return "\n".join(lines)
