"""Which profile, and which settings: the training recipes every chapter draws from.

A profile is a dict from a *role* ("mlp", "cnn", ...) to a `TrainConfig`. Chapters ask for a role,
so the same notebook runs the tiny `smoke` nets in the tests, the small `cpu` nets on a laptop and
the paper's nets on a GPU.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

OPTIMIZERS = ("sgd", "adam")
SCHEDULES = ("constant", "cosine", "step")


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

    def __post_init__(self) -> None:
        check_config(self)

    def replace(self, **changes: Any) -> TrainConfig:
        """Return a copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of every field."""
        d = dataclasses.asdict(self)
        d["milestones"] = list(self.milestones)
        return d


def check_config(cfg: TrainConfig) -> None:
    """Raise ValueError with a clear message if a field of `cfg` is out of range."""
    from llfc_utils import data, models  # late import: config is imported by both

    def need(ok: bool, msg: str) -> None:
        if not ok:
            raise ValueError(f"TrainConfig: {msg}")

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
    need(isinstance(cfg.epochs, int) and cfg.epochs >= 1, f"epochs must be >= 1, got {cfg.epochs}")
    need(
        isinstance(cfg.batch_size, int) and cfg.batch_size >= 1,
        f"batch_size must be >= 1, got {cfg.batch_size}",
    )
    need(cfg.lr > 0, f"lr must be > 0, got {cfg.lr}")
    need(cfg.weight_decay >= 0, f"weight_decay must be >= 0, got {cfg.weight_decay}")
    for name in ("train_subset", "test_subset"):
        v = getattr(cfg, name)
        need(v is None or (isinstance(v, int) and v >= 1), f"{name} must be None or >= 1, got {v}")
    need(
        all(0 < m < cfg.epochs for m in cfg.milestones),
        f"milestones must lie in (0, epochs={cfg.epochs}), got {cfg.milestones}",
    )


# ---------------------------------------------------------------- profiles

_MLP_CPU = TrainConfig(
    model="mlp",
    dataset="fashion_mnist",
    optimizer="sgd",
    lr=0.05,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="cosine",
    epochs=10,
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

# The authors' CIFAR-10 recipe (scripts/spawning.py): SGD 0.1, momentum 0.9, wd 1e-4,
# batch 128, 160 epochs, lr / 10 at epochs 80 and 120. Augmentation on (see PAPER.md).
_CIFAR_PAPER = TrainConfig(
    model="vgg16",
    model_kwargs={"norm": "bn"},
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

PROFILES: dict[str, dict[str, TrainConfig]] = {
    # Tiny nets on tiny subsets, same epochs as `cpu` (so spawn grids fit): every code path in seconds.
    "smoke": {
        "mlp": _MLP_CPU.replace(
            model_kwargs={"widths": (64, 64, 64)},
            train_subset=1024,
            test_subset=256,
        ),
        "cnn": _CNN_CPU.replace(
            model_kwargs={"width": 0.0625, "norm": "bn", "classifier": (16,), "dropout": 0.0},
            train_subset=256,
            test_subset=128,
        ),
    },
    # Offline, 2 CPU cores: the MLP of the paper and a small VGG on Fashion-MNIST.
    "cpu": {"mlp": _MLP_CPU, "cnn": _CNN_CPU},
    # The paper's settings, for a GPU. The MLP recipe (Adam 1.2e-4, batch 60, 30 epochs) is
    # the paper's MNIST setting as read in PAPER.md [notes].
    "paper": {
        "mlp": TrainConfig(
            model="mlp",
            dataset="mnist",
            optimizer="adam",
            lr=1.2e-4,
            weight_decay=0.0,
            schedule="constant",
            epochs=30,
            batch_size=60,
        ),
        "cnn": _CIFAR_PAPER,
        "resnet20": _CIFAR_PAPER.replace(
            model="resnet20", model_kwargs={"norm": "bn", "shortcut": "pad"}
        ),
    },
}


def profile(name: str) -> dict[str, TrainConfig]:
    """The configs of profile `name` ("smoke", "cpu" or "paper"), by role."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid: {', '.join(PROFILES)}")
    return PROFILES[name]


def get(profile_name: str, role: str) -> TrainConfig:
    """The TrainConfig for `role` ("mlp", "cnn", ...) in profile `profile_name`."""
    roles = profile(profile_name)
    if role not in roles:
        raise ValueError(
            f"profile {profile_name!r} has no role {role!r}; valid: {', '.join(roles)}"
        )
    return roles[role]
