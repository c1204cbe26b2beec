"""Beyond the paper (chapter 7): cross-task linearity after pretraining, and layer-wise interpolation.

- Tasks and fine-tuning. A task is a subset of the data set's labels (`TrainConfig.classes`).
  A model is pretrained on the whole data set (`train_pretrained`: the profile's recipe, or the
  same recipe shortened to fewer epochs) and fine-tuned on a task from that checkpoint
  (`train_finetuned`): both go through `train.train_run`, so both are cached, and a fine-tuned
  run is keyed by the pretrained checkpoint it starts from.
- Cross-task linearity (CTL; Zhou et al., ICML 2024, arXiv 2402.03660): for two models
  fine-tuned on different tasks from one pretrained checkpoint, the features of the
  weight-interpolated model are close to the interpolation of their features at every layer.
  It is `metrics.llfc` on that pair. `combine` forms any weighted sum of models' weights and
  `feature_linearity` compares its features with the same weighted sum of their features:
  model averaging (weights 1/2, 1/2) and task arithmetic (`arithmetic_weights`: pretrained +
  lam * the sum of the task vectors) as operations on features.
- Layer-wise interpolation (Adilova et al., ICLR 2024): model A with one layer's weights and
  bias replaced by alpha A + (1 - alpha) B, the rest kept at A (`layer_lerp`), the loss along
  that path (`layerwise_curve`) and its barrier per layer (`layerwise_barriers`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from llfc_utils import config, features, interpolate, metrics, train
from llfc_utils.config import TrainConfig, check_batch_size

# ---------------------------------------------------------------- tasks, pretraining, fine-tuning


def finetune_config(
    cfg: TrainConfig, classes: Sequence[int], epochs: int, lr: float
) -> TrainConfig:
    """cfg's recipe on the task `classes` (a label subset), for `epochs` epochs at learning rate `lr`."""
    return cfg.replace(classes=tuple(classes), epochs=epochs, lr=lr, warmup_epochs=0, milestones=())


def pretraining(cfg: TrainConfig, seed: int, epochs: int) -> train.Start | None:
    """The pretraining run of `epochs` epochs as `train_run`'s `start`; None for 0 (the initialisation).

    At cfg.epochs it is cfg's own run (`train.train_model(cfg, seed)`); fewer epochs train the
    same recipe on a schedule of that length (`config.shortened`), from the same initialisation.
    """
    if not (isinstance(epochs, int) and 0 <= epochs <= cfg.epochs):
        raise ValueError(f"pretraining epochs must be an int in [0, {cfg.epochs}], got {epochs!r}")
    if epochs == 0:
        return None
    base = cfg if epochs == cfg.epochs else config.shortened(cfg, epochs)
    return base, [(seed, epochs)]


def train_pretrained(
    cfg: TrainConfig, seed: int, epochs: int, device: torch.device | str | None = None
) -> nn.Module:
    """The model pretrained for `epochs` epochs from initialisation `seed` (0: the initialisation)."""
    start = pretraining(cfg, seed, epochs)
    if start is None:
        return train.build_model(cfg, seed).to(device or train.default_device()).eval()
    base, segments = start
    return train.train_run(base, seed, segments, device, f"{cfg.model} pretrained {epochs} ep")[0]


def train_finetuned(
    task_cfg: TrainConfig,
    cfg: TrainConfig,
    seed: int,
    pretrain_epochs: int,
    data_seed: int,
    device: torch.device | str | None = None,
) -> nn.Module:
    """`task_cfg`'s run from the model pretrained for `pretrain_epochs` epochs (cfg, seed).

    The data order of fine-tuning is seeded by `data_seed`; the optimiser starts afresh. With
    `pretrain_epochs` 0 this is a run from scratch on the task, from initialisation `seed`.
    """
    start = pretraining(cfg, seed, pretrain_epochs)
    label = f"{task_cfg.model} task {list(task_cfg.classes or [])} from {pretrain_epochs} ep"
    segments = [(data_seed, task_cfg.epochs)]
    return train.train_run(task_cfg, seed, segments, device, label, start=start)[0]


# ---------------------------------------------------------------- weighted sums of models


@torch.no_grad()
def combine(models: Sequence[nn.Module], weights: Sequence[float]) -> nn.Module:
    """A new model (eval mode) whose parameters and floating buffers are sum_i weights[i] * models[i].

    The weights need not sum to 1 or be positive (task arithmetic extrapolates); integer buffers
    are the first model's.
    """
    if len(models) < 1 or len(models) != len(weights):
        raise ValueError(
            f"need one weight per model, got {len(models)} models, {len(weights)} weights"
        )
    weights = [float(w) for w in weights]
    if not all(math.isfinite(w) for w in weights):
        raise ValueError(f"weights must be finite numbers, got {weights}")
    for m in models[1:]:
        interpolate.check_same_architecture(models[0], m)
    states = [m.state_dict() for m in models]
    mixed = {}
    for k, v in states[0].items():
        if v.is_floating_point():
            mixed[k] = sum(w * s[k] for w, s in zip(weights, states, strict=True))
        else:
            mixed[k] = v.clone()
    out = copy.deepcopy(models[0])
    out.load_state_dict(mixed)
    return out.eval()


def arithmetic_weights(n_tasks: int, lam: float) -> list[float]:
    """Weights of (pretrained, task 1, ..., task n) for pretrained + lam * sum_i (task_i - pretrained)."""
    if n_tasks < 1:
        raise ValueError(f"task arithmetic needs at least one task, got {n_tasks}")
    return [1.0 - n_tasks * lam] + [float(lam)] * n_tasks


@torch.no_grad()
def feature_linearity(
    models: Sequence[nn.Module],
    weights: Sequence[float],
    x: torch.Tensor,
    layers: Sequence[str] | None = None,
    batch_size: int = 500,
) -> dict:
    """Per layer, the features of `combine(models, weights)` against sum_i weights[i] * f(models[i]).

    The measures of `metrics.llfc` on that pair of feature blocks: "cos_dist" (over the whole
    block), "cos_dist_per_sample" (E_x[1 - cos]) and "scale_c" (the least-squares c with
    c * f(combined) ~ the weighted sum of features). With two models and weights (alpha,
    1 - alpha) this is LLFC (or CTL) at alpha.
    """
    interpolate.check_inputs(x, "feature_linearity")
    check_batch_size(batch_size)
    combined = combine(models, weights)
    layers = list(layers or features.layers(models[0]))
    stats = {l: metrics.Cosine() for l in layers}
    for i in range(0, len(x), batch_size):
        *fs, fc = features.of_batch([*models, combined], x[i : i + batch_size], layers)
        for l in layers:
            mixed = sum(w * f[l].double() for w, f in zip(weights, fs, strict=True))
            stats[l].update(mixed, fc[l])
    return {
        "layers": layers,
        "weights": [float(w) for w in weights],
        "cos_dist": {l: stats[l].block for l in layers},
        "cos_dist_per_sample": {l: stats[l].per_sample for l in layers},
        "scale_c": {l: stats[l].scale for l in layers},
    }


# ---------------------------------------------------------------- layer-wise interpolation


@torch.no_grad()
def layer_lerp(model_a: nn.Module, model_b: nn.Module, layer: str, alpha: float) -> nn.Module:
    """Model A with the entries of module `layer` (weight, bias) at alpha * A + (1 - alpha) * B."""
    interpolate.check_same_architecture(model_a, model_b)
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    names = [k for k in state_a if k.startswith(f"{layer}.")]
    if not names:
        raise ValueError(f"unknown layer {layer!r}; valid: {features.weight_layers(model_a)}")
    mixed = interpolate.lerp_state(
        {k: state_a[k] for k in names}, {k: state_b[k] for k in names}, alpha
    )
    out = copy.deepcopy(model_a)
    out.load_state_dict({**state_a, **mixed})
    return out.eval()


def layerwise_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    layer: str,
    data: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    alphas: Sequence[float],
    batch_size: int = 1000,
) -> interpolate.Curve:
    """Loss, accuracy and error along the path of `layer_lerp` (the form of `interpolate.lmc_curve`)."""
    alphas = interpolate.check_alphas(alphas)
    return interpolate.curve_along(
        lambda alpha: layer_lerp(model_a, model_b, layer, alpha), data, alphas, batch_size
    )


def layerwise_barriers(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    alphas: Sequence[float],
    layers: Sequence[str] | None = None,
    key: str = "test_loss",
) -> dict:
    """Per Linear/Conv layer: the barrier of its layer-wise path, and the loss rise over A at its midpoint.

    "barrier": `interpolate.barrier` of the path (the chord joins A, at alpha = 1, and A with B's
    layer, at alpha = 0); "mid_rise": `key` at alpha = 0.5 minus A's. Returns {"layers",
    "barrier", "mid_rise", "curves"}.
    """
    if 0.5 not in [float(a) for a in alphas]:
        raise ValueError(f"the grid needs alpha = 0.5 for the midpoint, got {list(alphas)}")
    layers = list(layers or features.weight_layers(model_a))
    out: dict = {"layers": layers, "barrier": {}, "mid_rise": {}, "curves": {}}
    for l in layers:
        curve = layerwise_curve(model_a, model_b, l, data, alphas)
        values, grid = curve[key], curve["alpha"]
        out["curves"][l] = curve
        out["barrier"][l] = interpolate.barrier(curve, key)
        out["mid_rise"][l] = values[grid.index(0.5)] - values[grid.index(1.0)]
    return out
