"""Which profile, and which settings: the training recipes every chapter draws from.

A profile is a dict from a *role* ("mlp", "cnn", ...) to a `TrainConfig`. Chapters ask for a role,
so the same notebook runs the tiny `smoke` nets in the tests, the small `cpu` nets on a laptop and
the paper's nets on a GPU.
"""

from __future__ import annotations

import dataclasses
import numbers
from dataclasses import dataclass, field
from typing import Any

from llfc_utils import settings

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")
# What the forward/backward pass runs in. "bf16" is 16-bit autocast: bfloat16 where the device has
# it natively (Ampere and later GPUs, CPUs with AVX512-BF16 or AMX), else float16 with a gradient
# scaler on GPUs (T4, V100) and float32 on other CPUs (`train.precision` says which); "fp16" asks
# for float16 on GPUs; "fp32" is float32 everywhere.
AMP = ("bf16", "fp16", "fp32")

# Fields added after checkpoints were first keyed, with the value that reproduces the training
# before they existed. At that value they are left out of `identity()`, so checkpoints trained
# before the field existed keep their cache keys.
LATER_FIELDS: dict[str, Any] = {"amp": "bf16", "warmup_epochs": 0, "classes": None}
N_CLASSES = 10  # every data set of the book has ten classes


@dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a training run, except the seeds."""

    model: str = "mlp"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    dataset: str = "fashion_mnist"
    train_subset: int | None = None  # first n of a fixed shuffle of the train split
    test_subset: int | None = None  # used for the per-epoch test numbers
    pad32: bool = False  # pad 28x28 images to 32x32 (CNNs on (Fashion-)MNIST)
    augment: bool = False  # random crop (pad 4) + horizontal flip, batch-wise on the device
    optimizer: str = "sgd"
    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    schedule: str = "cosine"
    milestones: tuple[int, ...] = ()  # epochs where the "step" schedule divides the lr by 10
    epochs: int = 10
    batch_size: int = 128
    amp: str = "bf16"  # 16-bit autocast where the device has it ("bf16", "fp16"), or "fp32"
    warmup_epochs: int = 0  # linear warm-up epochs before the schedule (cosine then spans the rest)
    classes: tuple[int, ...] | None = None  # a task: train and test on only these labels

    def __post_init__(self) -> None:
        for name in ("epochs", "batch_size", "train_subset", "test_subset", "warmup_epochs"):
            object.__setattr__(self, name, _as_int(getattr(self, name)))  # numpy ints too
        if isinstance(self.milestones, (list, tuple)):
            object.__setattr__(self, "milestones", tuple(_as_int(m) for m in self.milestones))
        if isinstance(self.classes, (list, tuple)):
            object.__setattr__(self, "classes", tuple(_as_int(c) for c in self.classes))
        check_config(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        if self.classes is not None:
            d["classes"] = list(self.classes)
        return d

    def identity(self) -> dict[str, Any]:
        """The fields that key this config's checkpoints: `to_dict()` minus LATER_FIELDS at their old value."""
        return {k: v for k, v in self.to_dict().items() if LATER_FIELDS.get(k, object()) != v}


def _as_int(value: Any) -> Any:
    """A whole number of any integer type (numpy's too) as an int; anything else unchanged."""
    ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    return int(value) if ok else value


def check_config(cfg: TrainConfig) -> None:
    """Raise ValueError with a clear message if a field of `cfg` is out of range."""
    from llfc_utils import data, models  # late import: config is imported by both

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ValueError(f"TrainConfig: {msg}")

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool)

    need(
        cfg.model in models.NAMES, f"unknown model {cfg.model!r}; valid: {', '.join(models.NAMES)}"
    )
    need(
        cfg.dataset in data.NAMES,
        f"unknown dataset {cfg.dataset!r}; valid: {', '.join(data.NAMES)}",
    )
    need(
        cfg.optimizer in OPTIMIZERS,
        f"unknown optimizer {cfg.optimizer!r}; valid: {', '.join(OPTIMIZERS)}",
    )
    need(
        cfg.schedule in SCHEDULES,
        f"unknown schedule {cfg.schedule!r}; valid: {', '.join(SCHEDULES)}",
    )
    need(whole(cfg.epochs) and cfg.epochs >= 1, f"epochs must be an int >= 1, got {cfg.epochs!r}")
    need(
        whole(cfg.batch_size) and cfg.batch_size >= 1,
        f"batch_size must be an int >= 1, got {cfg.batch_size!r}",
    )

    def number(v: Any) -> bool:
        return isinstance(v, numbers.Real) and not isinstance(v, bool)

    need(number(cfg.lr) and cfg.lr > 0, f"lr must be a number > 0, got {cfg.lr!r}")
    need(
        number(cfg.weight_decay) and cfg.weight_decay >= 0,
        f"weight_decay must be a number >= 0, got {cfg.weight_decay!r}",
    )
    need(
        number(cfg.momentum) and 0 <= cfg.momentum < 1,
        f"momentum must be a number in [0, 1), got {cfg.momentum!r}",
    )
    for name in ("train_subset", "test_subset"):
        v = getattr(cfg, name)
        need(v is None or (whole(v) and v >= 1), f"{name} must be None or >= 1, got {v}")
    need(cfg.amp in AMP, f"unknown amp {cfg.amp!r}; valid: {', '.join(AMP)}")
    need(
        whole(cfg.warmup_epochs) and 0 <= cfg.warmup_epochs < cfg.epochs,
        f"warmup_epochs must lie in [0, epochs={cfg.epochs}), got {cfg.warmup_epochs}",
    )
    need(
        isinstance(cfg.milestones, tuple)
        and all(whole(m) and 0 < m < cfg.epochs for m in cfg.milestones),
        f"milestones must be ints in (0, epochs={cfg.epochs}), got {cfg.milestones!r}",
    )
    need(
        cfg.classes is None
        or (
            isinstance(cfg.classes, tuple)
            and len(cfg.classes) >= 1
            and len(set(cfg.classes)) == len(cfg.classes)
            and all(whole(c) and 0 <= c < N_CLASSES for c in cfg.classes)
        ),
        f"classes must be None or distinct labels in [0, {N_CLASSES}), got {cfg.classes!r}",
    )


# ---------------------------------------------------------------- profiles

# The paper's MLP (784-512-512-512-10) on a fixed 20k-image subset for 8 epochs: about 87 % test
# accuracy, and every chapter trains 3 seeds of its pairs within the book's budget. Measured
# (2 cores, 3 seeds): independent pairs have a test-loss barrier of about 1.2, spawned pairs
# (k = 0, 2) and WM / AM pairs below 0.02.
_MLP_CPU = TrainConfig(
    model="mlp",
    dataset="fashion_mnist",
    train_subset=20_000,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="cosine",
    epochs=8,
    batch_size=128,
)

_CNN_CPU = TrainConfig(
    model="vgg11",
    # VGG-11 at 1/8 width (8 to 64 channels) with BatchNorm on a 10k-image subset: about 5 s per
    # epoch on 2 cores, about 88 % test accuracy after 6 epochs. (At 1/4 width on 20k images it
    # costs about 23 s per epoch here, too slow for a 20-minute book.)
    model_kwargs={"width": 0.125, "norm": "bn", "classifier": (64,), "dropout": 0.0},
    dataset="fashion_mnist",
    pad32=True,
    train_subset=10_000,
    test_subset=2_000,
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="cosine",
    epochs=6,
    batch_size=128,
)

# The paper's two CIFAR topologies, narrow, on Fashion-MNIST padded to 32x32 for chapter 02: VGG-16
# with BatchNorm at 1/8 width (8 to 64 channels; the authors' 4096-wide classifier shrunk to one
# hidden layer of 64, no dropout) and ResNet-20 with BatchNorm and the authors' zero-padding
# shortcuts at 1/2 width (8/16/32 channels), on the small VGG's recipe.
_VGG16_CPU = _CNN_CPU.replace(
    model="vgg16",
    model_kwargs={"width": 0.125, "norm": "bn", "classifier": (64,), "dropout": 0.0},
)
_RESNET20_CPU = _CNN_CPU.replace(
    model="resnet20", model_kwargs={"width": 0.5, "norm": "bn", "shortcut": "pad"}
)

# The authors' CIFAR-10 recipe, zzp1012/LLFC scripts/spawning.py (its defaults: vgg16_bn, SGD lr
# 0.1, momentum 0.9, weight decay 1e-4, batch 128, 160 epochs, MultiStepLR / 10 at epochs 80 and
# 120; --midpoint 5 is the spawn epoch). Their src/data/cifar10.py has crop + flip commented out,
# but the paper's endpoint errors (6.9 % VGG-16, 8.6 % ResNet-20) need augmentation: we keep it on.
_CIFAR_PAPER = TrainConfig(
    model="vgg16",
    # src/model/cifar_vgg.py vgg16_bn: BN, classifier 512-4096-4096-10 with dropout 0.5 (our
    # defaults), and its initialisation: conv biases beside BN, linear weights N(0, 0.01)
    model_kwargs={"norm": "bn", "init": "authors"},
    dataset="cifar10",
    augment=True,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    schedule="step",
    milestones=(80, 120),
    epochs=160,
    batch_size=128,
)

# The paper's Appendix B.1 MNIST recipe: Adam lr 1.2e-4, batch 60, 30 epochs (no weight decay is
# stated), on the default MLP 784-512-512-512-10.
_MNIST_PAPER = TrainConfig(
    model="mlp",
    dataset="mnist",
    optimizer="adam",
    lr=1.2e-4,
    weight_decay=0.0,
    schedule="constant",
    epochs=30,
    batch_size=60,
)

_RESNET20_LN_PAPER = TrainConfig(
    model="resnet20",
    model_kwargs={"norm": "ln", "width": 32, "shortcut": "conv"},
    dataset="cifar10",
    augment=True,
    optimizer="sgd",
    lr=0.1,
    momentum=0.9,
    weight_decay=1e-4,
    schedule="cosine",
    warmup_epochs=5,
    epochs=250,
    batch_size=100,
)


def shortened(cfg: TrainConfig, epochs: int) -> TrainConfig:
    """cfg on a schedule of `epochs` epochs, its lr milestones and warm-up kept in proportion."""
    scale = epochs / cfg.epochs
    milestones = sorted({min(epochs - 1, max(1, round(m * scale))) for m in cfg.milestones})
    warmup = min(epochs - 1, max(1, round(cfg.warmup_epochs * scale))) if cfg.warmup_epochs else 0
    return cfg.replace(epochs=epochs, milestones=tuple(milestones), warmup_epochs=warmup)


# The GPU profile: the paper's nets, data and recipes (the same lr, batch, optimiser and
# augmentation) on schedules cut to one sitting, milestones and warm-up in proportion. Sized by the
# planner's estimate so that each chapter trains in at most 15 minutes on a Colab T4 (fp16) and 5
# on an A100 (bf16); `python -m llfc_utils.tools.run --profile gpu --dry-run --assume-device
# "Tesla T4"` prints it (chapter 02 with four roles, MLP, VGG-16, ResNet-20: about 9 min on a T4,
# 4.5 on an A100). The paper spawns at epoch 5 of 160 (3 % of the schedule): on 6 epochs that is
# epoch 0.2, so the chapters' spawn grids (k = 0, 1, 3) span the paper's point.
_GPU_CIFAR_EPOCHS = 6
_GPU_CIFAR_IMAGES = 20_000  # a fixed subset of the 50k training images: 2 seeds fit one sitting
_VGG16_GPU = shortened(_CIFAR_PAPER, _GPU_CIFAR_EPOCHS).replace(train_subset=_GPU_CIFAR_IMAGES)

PROFILES: dict[str, dict[str, TrainConfig]] = {
    # Tiny nets on tiny subsets, just enough epochs for the chapters' spawn grids (k up to 5 for
    # the MLP, 3 for the CNN): every code path in seconds.
    "smoke": {
        "mlp": _MLP_CPU.replace(
            model_kwargs={"widths": (64, 64, 64)},
            train_subset=512,
            test_subset=256,
            epochs=6,
        ),
        "cnn": _CNN_CPU.replace(
            model_kwargs={"width": 0.0625, "norm": "bn", "classifier": (16,), "dropout": 0.0},
            train_subset=256,
            test_subset=128,
            epochs=4,
        ),
        "vgg16": _VGG16_CPU.replace(
            model_kwargs={"width": 0.0625, "norm": "bn", "classifier": (16,), "dropout": 0.0},
            train_subset=256,
            test_subset=128,
            epochs=4,
        ),
        "resnet20": _RESNET20_CPU.replace(
            model_kwargs={"width": 0.25, "norm": "bn", "shortcut": "pad"},
            train_subset=256,
            test_subset=128,
            epochs=4,
        ),
    },
    # Offline, 2 CPU cores: the MLP of the paper and a small VGG on Fashion-MNIST.
    "cpu": {"mlp": _MLP_CPU, "cnn": _CNN_CPU, "vgg16": _VGG16_CPU, "resnet20": _RESNET20_CPU},
    # One sitting on a GPU (Colab): the paper's MLP on MNIST, VGG-16 and ResNet-20 on CIFAR-10,
    # Git Re-Basin's roles for permutation, each on a short schedule (see `shortened` above).
    "gpu": {
        "mlp": shortened(_MNIST_PAPER, 10),  # paper: 30 epochs
        "cnn": _VGG16_GPU,  # paper: 160 epochs
        "vgg16": _VGG16_GPU,  # the same recipe under its model's name: the same checkpoints
        "resnet20": shortened(
            _CIFAR_PAPER.replace(model="resnet20", model_kwargs={"norm": "bn", "shortcut": "pad"}),
            _GPU_CIFAR_EPOCHS,
        ).replace(train_subset=_GPU_CIFAR_IMAGES),
        "mlp_rebasin": _MNIST_PAPER.replace(lr=1e-3, epochs=20, batch_size=500),  # paper: 100
        # Width x4 instead of x32 (about 1/64 of the FLOPs), 20 of 250 epochs: Git Re-Basin's
        # barrier after weight matching shrinks with width, so expect a larger one than theirs.
        "resnet20_ln": shortened(
            _RESNET20_LN_PAPER.replace(model_kwargs={"norm": "ln", "width": 4, "shortcut": "conv"}),
            20,
        ),
    },
    # The paper's settings in full, for a GPU workstation: hours to days (`--dry-run` prices them).
    "paper": {
        # The spawning MLP (src/model/mnist_mlp.py, 784-512-512-512-10) with the paper's Appendix
        # B.1 MNIST recipe (_MNIST_PAPER).
        "mlp": _MNIST_PAPER,
        "cnn": _CIFAR_PAPER,
        "vgg16": _CIFAR_PAPER,  # the same recipe under its model's name: the same checkpoints
        # src/model/cifar_resnet_plus.py ResNet20: BN, option-A (zero-padding) shortcuts.
        "resnet20": _CIFAR_PAPER.replace(
            model="resnet20", model_kwargs={"norm": "bn", "shortcut": "pad"}
        ),
        # For the permutation chapters, Git Re-Basin's nets and recipes (samuela/git-re-basin),
        # as the paper uses them. MNIST MLP, src/mnist_mlp_train.py: 784-512-512-512-10, batch
        # 500, 100 epochs, Adam lr 1e-3 (their paper's appendix), no augmentation.
        "mlp_rebasin": _MNIST_PAPER.replace(lr=1e-3, epochs=100, batch_size=500),
        # CIFAR-10 ResNet-20 with LayerNorm, src/resnet20.py + src/cifar10_resnet20_train.py:
        # LayerNorm over channels, conv shortcuts (theirs 3x3 + LN, ours 1x1 + LN: models.py
        # has no 3x3 shortcut), SGD lr 0.1, momentum 0.9, weight decay 1e-4 (the script's
        # default), batch 100, 250 epochs, 5 warm-up epochs then cosine (theirs per step, ours
        # per epoch), augmentation (theirs zoom-crop + flip + rotate, ours crop + flip). Width
        # x32: the permutation ResNet of the paper as PAPER.md reads it [notes] (about 280M
        # parameters: hours per run even on an H100; `--dry-run` shows the estimate).
        "resnet20_ln": _RESNET20_LN_PAPER,
    },
}


# ---------------------------------------------------------------- widths (chapter 03)


def at_width(cfg: TrainConfig, width: float) -> TrainConfig:
    """cfg's net at another width: the MLP's hidden units, or the VGG's / ResNet's channel multiplier.

    A VGG's classifier is scaled by the same factor as its convolutions; everything else (data,
    recipe, norm) is kept, so `at_width(cfg, its own width) == cfg` and shares its checkpoints.
    """
    kwargs = dict(cfg.model_kwargs)
    if cfg.model == "mlp":
        hidden = kwargs.get("widths", (512, 512, 512))
        if set(hidden) == {width}:
            return cfg
        kwargs["widths"] = (int(width),) * len(hidden)
    else:
        old = kwargs.get("width", 1.0)
        if old == width:
            return cfg
        kwargs["width"] = float(width)
        if cfg.model.startswith("vgg"):
            hidden = kwargs.get("classifier", (4096, 4096))
            kwargs["classifier"] = tuple(max(1, round(c * width / old)) for c in hidden)
    return cfg.replace(model_kwargs=kwargs)


# Chapter 03's width sweep (the paper's App. B.5: permutation connects wide nets, not narrow ones),
# per profile and role: the MLP's hidden units and the VGG's channel multiplier (1 = the standard
# VGG's 64 to 512 channels). The cpu widths that equal a role's own (MLP 512, VGG 1/8) reuse its
# checkpoints.
WIDTHS: dict[str, dict[str, tuple[float, ...]]] = {
    "smoke": {"mlp": (16, 64), "cnn": (0.0625, 0.125)},
    "cpu": {"mlp": (32, 64, 128, 256, 512, 1024), "cnn": (0.0625, 0.125, 0.25, 0.5)},
    "gpu": {"mlp": (64, 256, 1024), "cnn": (0.25, 0.5, 1.0)},
    "paper": {"mlp": (32, 128, 512, 2048), "cnn": (0.25, 0.5, 1.0, 2.0)},
}

# Chapter 03's conv net that permutation connects, `cnn_wide`: the small VGG's recipe at 1/2 width
# (32 to 256 channels), the narrowest width of the cpu sweep where an aligned pair (AM, BatchNorm
# statistics recomputed) reaches a tenth of the unaligned barrier. The gpu and paper profiles keep
# it as it is (seconds per epoch on a GPU): Git Re-Basin's own conv net is `resnet20_ln`.
PROFILES["smoke"]["cnn_wide"] = at_width(PROFILES["smoke"]["cnn"], 0.125)
for _name in ("cpu", "gpu", "paper"):
    PROFILES[_name]["cnn_wide"] = at_width(_CNN_CPU, 0.5)

# How many replicates (seeds) a chapter runs by default, per profile: every headline number is a
# mean over them with its spread. Two are the least the LLFC test needs (each pair is judged
# against another seed's independent pair); the gpu profile keeps two to fit one sitting.
SEEDS = {"smoke": 2, "cpu": 3, "gpu": 2, "paper": 3}


def seeds(profile_name: str, given: list[int] | None = None) -> list[int]:
    """The replicates a chapter runs: `given`, else the first SEEDS[profile] seeds (0, 1, ...)."""
    if given is None:
        return list(range(SEEDS.get(profile_name, 3)))
    ok = isinstance(given, (list, tuple)) and all(
        isinstance(s, numbers.Integral) and not isinstance(s, bool) and s >= 0 for s in given
    )
    if not ok or not given or len(set(given)) != len(given):
        raise ValueError(f"seeds must be distinct integers >= 0, e.g. [0, 1, 2]; got {given!r}")
    return [int(s) for s in given]


def profile(name: str) -> dict[str, TrainConfig]:
    """The configs of profile `name` ("smoke", "cpu", "gpu" or "paper"), by role."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}")
    return PROFILES[name]


def check_batch_size(batch_size: int) -> None:
    """Raise ValueError unless `batch_size` is a positive number of samples."""
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")


def amp_override() -> str | None:
    """The precision $LLFC_AMP asks for ("bf16", "fp16" or "fp32"), or None when it is unset."""
    value = (settings.get("LLFC_AMP") or "").lower()
    if not value:
        return None
    if value not in AMP:
        raise ValueError(f"LLFC_AMP={value!r} is not a precision; valid: {', '.join(AMP)}")
    return value


def tiny(cfg: TrainConfig) -> TrainConfig:
    """cfg's model, data and recipe at the smallest scale: narrow nets, 32 images, 2 epochs.

    For tests that run a profile's chapters on the CPU in seconds ($LLFC_SCALE=tiny, with spawn
    epochs of at most 1): every role keeps its architecture, norm, optimiser and schedule (its lr
    steps and warm-up in proportion), so a crash on the profile's path shows.
    """
    kwargs = dict(cfg.model_kwargs)
    if cfg.model == "mlp":
        kwargs["widths"] = (32,) * len(kwargs.get("widths", (512, 512, 512)))
    elif cfg.model.startswith("vgg"):
        hidden = kwargs.get("classifier", (4096, 4096))
        kwargs.update(width=0.0625, classifier=tuple(16 for _ in hidden))
    else:
        kwargs["width"] = 0.25
    small = cfg.replace(model_kwargs=kwargs, train_subset=32, test_subset=32)
    return shortened(small, min(cfg.epochs, 2))


def dataset_override() -> str | None:
    """The data set $LLFC_DATASET asks every role to train on instead of its own, or None."""
    value = (settings.get("LLFC_DATASET") or "").lower()
    if not value:
        return None
    from llfc_utils import data  # late import: config is imported by data's users

    if value not in data.NAMES:
        raise ValueError(
            f"LLFC_DATASET={value!r} is not a data set; valid: {', '.join(data.NAMES)}"
        )
    return value


def on_dataset(cfg: TrainConfig, name: str) -> TrainConfig:
    """cfg trained on data set `name` instead: 28x28 images padded to 32x32 for the CNNs."""
    pad32 = name != "cifar10" and cfg.model != "mlp"
    return cfg.replace(dataset=name, pad32=pad32)


def get(profile_name: str, role: str) -> TrainConfig:
    """The TrainConfig for `role` ("mlp", "cnn", ...) in profile `profile_name`.

    Three environment variables change every role, and so every checkpoint key:
    `LLFC_AMP=fp32` (or `python -m llfc_utils.tools.run --amp fp32`) trains in float32 on CUDA
    instead of 16-bit autocast (also on CPUs with native bfloat16); `LLFC_DATASET=fashion_mnist`
    trains on another data set (a GPU machine without network, `bench/gpu_check.sh`);
    `LLFC_SCALE=tiny` shrinks every role (`tiny`, for tests).
    """
    roles = profile(profile_name)
    if role not in roles:
        raise ValueError(
            f"profile {profile_name!r} has no role {role!r}; valid: {', '.join(roles)}"
        )
    cfg = roles[role]
    scale = (settings.get("LLFC_SCALE") or "").lower()
    if scale not in ("", "tiny"):
        raise ValueError(f"LLFC_SCALE={scale!r} is not a scale; valid: tiny (or unset)")
    if scale == "tiny":
        cfg = tiny(cfg)
    name = dataset_override()
    if name is not None:
        cfg = on_dataset(cfg, name)
    amp = amp_override()
    return cfg if amp is None else cfg.replace(amp=amp)
