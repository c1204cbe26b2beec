"""Beyond the paper (chapter 6): weight subspaces, model stitching, BN reset, the learning rate.

- Principal angles, after the authors' `scripts/principal_angle.py`: each Linear/Conv weight is
  read as a (C_out, C_in k k) matrix; the principal angles (`scipy.linalg.subspace_angles`) between
  the spans of the top-k left (or right) singular vectors of W_A and W_B, in degrees, largest first.
  The authors use k = 5. Two random k-dim subspaces of R^n give the no-relation reference.
- Model stitching, after the authors' `scripts/model_stitching.py`: run a *receiver* net with the
  output of one Linear/Conv layer replaced by a *donor* net's output of the same layer on the same
  inputs, with no adapter, and measure the receiver's loss and accuracy. The authors stitch A's
  features into B ("W_B with H_A") at every Conv/Linear output.
- Spectra (the paper's App. B.5, chapter 3): the singular values of each layer's weight W and
  of its input features H, and their effective rank over the dimension (`layer_spectra`).
- The learning-rate study: the configs it trains (`lr_variants`) and a one-row summary of a pair
  (`pair_summary`): barrier and LLFC.

Its figures are drawn by `plots` (angle_bars, stitching_lines, bn_reset_curves, recipe_bars).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.linalg import subspace_angles
from scipy.stats import rankdata
from torch import nn

from llfc_utils import features, interpolate, metrics
from llfc_utils.config import TrainConfig, check_batch_size
from llfc_utils.features import (  # beyond.weight_layers: the chapter's name
    WEIGHT_KINDS,
    weight_layers,
)

SIDES = ("left", "right")
OPTIMIZER_NAMES = {"sgd": "SGD", "adam": "Adam"}  # how labels and tables name them

# ---------------------------------------------------------------- principal angles


def weight_matrix(module: nn.Module) -> torch.Tensor:
    """The weight of a Linear or Conv2d layer as a float64 CPU matrix of shape (out, in * kh * kw)."""
    if not isinstance(module, WEIGHT_KINDS):
        raise TypeError(f"need a Linear or Conv2d layer, got {type(module).__name__}")
    w = module.weight.detach().double().cpu()
    return w.reshape(w.shape[0], -1)


def principal_angles(
    w_a: torch.Tensor | np.ndarray, w_b: torch.Tensor | np.ndarray, k: int, side: str = "left"
) -> np.ndarray:
    """Principal angles in degrees, largest first, between the top-k singular subspaces of two matrices.

    `side="left"`: the spans of the first k left singular vectors (the output space, whose axes
    are the layer's units); `"right"`: of the right singular vectors (the input space).
    """
    a, b = (
        w.detach().cpu().double().numpy() if isinstance(w, torch.Tensor) else np.asarray(w, float)
        for w in (w_a, w_b)
    )
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"need two matrices of the same shape, got {a.shape} and {b.shape}")
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES}, got {side!r}")
    if not 1 <= k <= min(a.shape):
        raise ValueError(f"k must lie in [1, {min(a.shape)}] for shape {a.shape}, got {k}")

    def basis(w: np.ndarray) -> np.ndarray:
        u, _, vh = np.linalg.svd(w, full_matrices=False)
        return u[:, :k] if side == "left" else vh[:k].T

    return np.sort(np.rad2deg(subspace_angles(basis(a), basis(b))))[::-1]


@functools.lru_cache(maxsize=256)
def random_subspace_angle(n: int, k: int, trials: int = 200, seed: int = 0) -> float:
    """Mean principal angle (degrees) between two uniformly random k-dim subspaces of R^n (Monte Carlo).

    The span of an (n, k) Gaussian matrix is uniform over k-dim subspaces; `seed` makes it
    reproducible. It is 0 when k = n (both subspaces are all of R^n).
    """
    if not 1 <= k <= n:
        raise ValueError(f"need 1 <= k <= n, got k={k}, n={n}")
    if trials < 1:
        raise ValueError(f"trials must be >= 1, got {trials}")
    rng = np.random.default_rng(seed)
    qa, _ = np.linalg.qr(rng.standard_normal((trials, n, k)))  # orthonormal bases, batched
    qb, _ = np.linalg.qr(rng.standard_normal((trials, n, k)))
    cos = np.linalg.svd(qa.transpose(0, 2, 1) @ qb, compute_uv=False)  # cosines of the angles
    return float(np.rad2deg(np.arccos(np.clip(cos, -1.0, 1.0))).mean())


def layer_principal_angles(
    model_a: nn.Module,
    model_b: nn.Module,
    k: int = 5,
    side: str = "left",
    layers: Sequence[str] | None = None,
) -> dict:
    """Principal angles between A's and B's top-k singular subspaces at each Linear/Conv layer.

    k is capped at the smaller side of each weight matrix. Returns {"layers", "k" (layer -> k
    used), "angles" (layer -> the k angles in degrees, largest first), "mean" (layer -> their
    mean), "random" (layer -> the mean angle between two random subspaces of the same sizes)}.
    """
    interpolate.check_same_architecture(model_a, model_b)
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    mods_a, mods_b = dict(model_a.named_modules()), dict(model_b.named_modules())
    layers = list(layers or weight_layers(model_a))
    out: dict = {"layers": layers, "k": {}, "angles": {}, "mean": {}, "random": {}}
    for l in layers:
        if l not in mods_a:
            raise ValueError(f"unknown layer {l!r}; valid: {weight_layers(model_a)}")
        wa, wb = weight_matrix(mods_a[l]), weight_matrix(mods_b[l])
        kk = min(k, *wa.shape)
        angles = principal_angles(wa, wb, kk, side)
        n = wa.shape[0] if side == "left" else wa.shape[1]
        out["k"][l] = kk
        out["angles"][l] = angles.tolist()
        out["mean"][l] = float(angles.mean())
        out["random"][l] = random_subspace_angle(n, kk)
    return out


# ---------------------------------------------------------------- spectra (the paper's App. B.5)


def effective_rank(singular_values: Sequence[float] | np.ndarray) -> float:
    """exp of the entropy of the normalised singular values (Roy and Vetterli 2007): 1 to their number."""
    s = np.asarray(singular_values, dtype=float)
    s = s[s > 0]
    if len(s) == 0:
        return 0.0
    p = s / s.sum()
    return float(np.exp(-(p * np.log(p)).sum()))


@torch.no_grad()
def layer_spectra(
    model: nn.Module, x: torch.Tensor, layers: Sequence[str] | None = None, batch_size: int = 500
) -> dict:
    """Singular values of W and of H at each Linear/Conv layer, largest first.

    W is the weight as (out, in k k) (`weight_matrix`); H is the layer's input on `x` as a
    (channels, samples) matrix, each pixel of a conv input one sample, its singular values taken
    from the Gram matrix H H^T accumulated in float64 over batches. Returns {"layers", "w", "h"
    (layer -> singular values), "w_rank", "h_rank" (layer -> effective rank over the dimension:
    1 for a flat spectrum, small for a nearly low-rank matrix)}.
    """
    check_batch_size(batch_size)
    mods = dict(model.named_modules())
    layers = list(layers or weight_layers(model))
    gram: dict[str, torch.Tensor] = {}
    model.eval()
    for i in range(0, len(x), batch_size):
        with features.capture(model, layers, inputs=True) as store:
            model(x[i : i + batch_size])
        for l in layers:
            h = store[l].double()
            h = h.movedim(1, -1).reshape(-1, h.shape[1]) if h.dim() == 4 else h.flatten(1)
            gram[l] = gram[l] + h.T @ h if l in gram else h.T @ h
    out: dict = {"layers": layers, "w": {}, "h": {}, "w_rank": {}, "h_rank": {}}
    for l in layers:
        w = np.linalg.svd(weight_matrix(mods[l]).numpy(), compute_uv=False)
        h = np.sqrt(np.clip(np.linalg.eigvalsh(gram[l].cpu().numpy())[::-1], 0, None))
        out["w"][l], out["h"][l] = w.tolist(), h.tolist()
        out["w_rank"][l] = effective_rank(w) / len(w)
        out["h_rank"][l] = effective_rank(h) / len(h)
    return out


# ---------------------------------------------------------------- model stitching


def stitch(
    receiver: nn.Module,
    donor: nn.Module,
    layer: str,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int = 1000,
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `receiver` with `layer`'s output replaced by `donor`'s.

    Both nets see the same inputs in eval mode; the receiver's layers after `layer` then run on
    the donor's features (no adapter). Stitching a net with itself gives its own loss and accuracy.
    """
    r = stitching(receiver, donor, x, y, [layer], batch_size)
    return r["loss"][layer], r["acc"][layer]


@torch.no_grad()
def stitching(
    receiver: nn.Module,
    donor: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    layers: Sequence[str] | None = None,
    batch_size: int = 1000,
) -> dict:
    """`stitch` at each layer (default: every Linear/Conv output). Returns {"layers", "loss", "acc"}.

    Per batch, one forward of the donor captures every layer, then one forward of the receiver
    per layer runs with that layer's output replaced.
    """
    interpolate.check_same_architecture(receiver, donor)
    mods = dict(receiver.named_modules())
    layers = list(layers or weight_layers(receiver))
    unknown = [l for l in layers if l not in mods]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; valid: {weight_layers(receiver)}")
    check_batch_size(batch_size)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"need as many labels as inputs (> 0), got {len(x)} and {len(y)}")
    receiver.eval(), donor.eval()
    # summed on the device, read back once at the end (no host sync per batch and layer)
    loss = {l: torch.zeros((), dtype=torch.float64, device=x.device) for l in layers}
    correct = {l: torch.zeros((), dtype=torch.int64, device=x.device) for l in layers}
    for i in range(0, len(x), batch_size):
        xb, yb = x[i : i + batch_size], y[i : i + batch_size]
        with features.capture(donor, layers) as store:
            donor(xb)
        for l in layers:

            def replace(_m, _inp, out, h=store[l], l=l):
                if h.shape != out.shape:
                    raise ValueError(
                        f"{l}: the donor's output has shape {tuple(h.shape)}, "
                        f"the receiver's {tuple(out.shape)}"
                    )
                return h

            handle = mods[l].register_forward_hook(replace)  # after the donor: it may be receiver
            try:
                out = receiver(xb).float()
            finally:
                handle.remove()
            loss[l] += F.cross_entropy(out, yb, reduction="sum").double()
            correct[l] += (out.argmax(1) == yb).sum()
    return {
        "layers": layers,
        "loss": {l: loss[l].item() / len(x) for l in layers},
        "acc": {l: correct[l].item() / len(x) for l in layers},
    }


# ---------------------------------------------------------------- the learning-rate study


def lr_variants(cfg: TrainConfig, lr_factors: Sequence[float], adam_lr: float = 0.0) -> dict:
    """{label: config}: `cfg` with its learning rate times each factor, and Adam at `adam_lr` if > 0."""
    if not lr_factors and adam_lr <= 0:
        raise ValueError("need at least one learning-rate factor or adam_lr > 0")
    out = {}
    for f in lr_factors:
        if f <= 0:
            raise ValueError(f"learning-rate factors must be > 0, got {f}")
        c = cfg.replace(lr=cfg.lr * f)
        out[f"{OPTIMIZER_NAMES[c.optimizer]} lr {c.lr:g}"] = c
    if adam_lr > 0:
        out[f"Adam lr {adam_lr:g}"] = cfg.replace(optimizer="adam", lr=adam_lr)
    return out


def llfc_ratio(result: Mapping, alpha: float = 0.5) -> float:
    """Largest LLFC / baseline ratio over the hidden layers: `metrics.baseline_ratio`."""
    return metrics.baseline_ratio(dict(result), alpha)


def rank_correlation(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Spearman's rank correlation of two equal-length sequences (ties share their mean rank).

    NaN when either sequence is constant (its ranks carry no order).
    """
    if len(xs) != len(ys) or len(xs) < 2:
        raise ValueError(f"need two sequences of the same length >= 2, got {len(xs)} and {len(ys)}")
    rx, ry = rankdata(xs), rankdata(ys)
    if np.ptp(rx) == 0 or np.ptp(ry) == 0:
        return float("nan")
    return float(np.corrcoef(rx, ry)[0, 1])


def pair_summary(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    alphas: Sequence[float],
) -> dict:
    """One pair in numbers: test accuracy of A and B, test-loss and test-error barriers, LLFC ratio.

    `alphas` must contain 0, 0.5 and 1. Returns {"acc_a", "acc_b", "barrier_loss",
    "barrier_err", "llfc_ratio", "curve"} (the curve from `interpolate.lmc_curve`).
    """
    alphas = [float(a) for a in alphas]
    if not {0.0, 0.5, 1.0} <= set(alphas):
        raise ValueError(f"alphas must contain 0, 0.5 and 1, got {alphas}")
    curve = interpolate.lmc_curve(model_a, model_b, {"test": (x, y)}, alphas, progress=False)
    llfc = metrics.llfc(model_a, model_b, x, [0.5], progress=False)
    return {
        "acc_a": curve["test_acc"][alphas.index(1.0)],
        "acc_b": curve["test_acc"][alphas.index(0.0)],
        "barrier_loss": interpolate.barrier(curve),
        "barrier_err": interpolate.barrier(curve, "test_err"),
        "llfc_ratio": llfc_ratio(llfc),
        "curve": curve,
    }
