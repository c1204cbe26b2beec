"""Interpolating two networks: lerp, the loss/accuracy curve over alpha, the barrier, BN reset.

Convention (the paper's): theta_alpha = alpha * theta_A + (1 - alpha) * theta_B, so alpha = 1 is
model A and alpha = 0 is model B.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping, Sequence

import torch
from torch import nn
from tqdm import tqdm

from llfc_utils import settings
from llfc_utils.config import check_batch_size
from llfc_utils.train import evaluate

Curve = dict[str, list[float]]


def check_same_architecture(model_a: nn.Module, model_b: nn.Module) -> None:
    """Raise ValueError naming the first parameter or buffer whose name or shape differs."""
    sa, sb = model_a.state_dict(), model_b.state_dict()
    for (ka, va), (kb, vb) in zip(sa.items(), sb.items(), strict=False):
        if ka != kb:
            raise ValueError(f"the two models differ in architecture: entry {ka!r} vs {kb!r}")
        if va.shape != vb.shape:
            raise ValueError(
                f"the two models differ in architecture: {ka!r} has shape "
                f"{tuple(va.shape)} in model A and {tuple(vb.shape)} in model B"
            )
    if len(sa) != len(sb):
        longer, name = (sa, "A") if len(sa) > len(sb) else (sb, "B")
        extra = list(longer)[min(len(sa), len(sb))]
        raise ValueError(f"the two models differ in architecture: {extra!r} only in model {name}")


def check_inputs(x: torch.Tensor, what: str) -> None:
    """Raise ValueError if `x` holds no samples: a measurement on nothing must not give a number."""
    if len(x) == 0:
        raise ValueError(f"{what} needs at least one input sample, got an empty x; pass some data")


def check_alphas(
    alphas: Sequence[float], extrapolate: bool = False, min_points: int = 2
) -> list[float]:
    """Validate alphas: at least `min_points` distinct values, in [0, 1] unless extrapolating."""
    alphas = [float(a) for a in alphas]
    if len(set(alphas)) < min_points:
        raise ValueError(
            f"need at least {min_points} distinct alpha value(s), got {alphas}"
            + (" (a curve needs two points)" if min_points == 2 else "")
        )
    for a in alphas:
        _check_alpha(a, extrapolate)
    return alphas


def _check_alpha(alpha: float, extrapolate: bool) -> None:
    if not math.isfinite(alpha):
        raise ValueError(f"alpha must be a finite number, got {alpha}")
    if not extrapolate and not 0.0 <= alpha <= 1.0:
        raise ValueError(
            f"alpha={alpha} lies outside [0, 1]; pass extrapolate=True to go beyond the endpoints"
        )


@torch.no_grad()
def lerp_state(
    state_a: Mapping[str, torch.Tensor], state_b: Mapping[str, torch.Tensor], alpha: float
) -> dict[str, torch.Tensor]:
    """alpha * A + (1 - alpha) * B for every floating entry; integer entries (BN counters) from A."""
    out = {}
    for k, a in state_a.items():
        b = state_b[k]
        if not a.is_floating_point():
            out[k] = a.clone()
        elif alpha == 1.0:
            out[k] = a.clone()
        elif alpha == 0.0:
            out[k] = b.clone()
        else:
            out[k] = alpha * a + (1.0 - alpha) * b
    return out


def lerp(
    model_a: nn.Module, model_b: nn.Module, alpha: float, extrapolate: bool = False
) -> nn.Module:
    """A new model with parameters and floating buffers alpha * A + (1 - alpha) * B (eval mode).

    BatchNorm running statistics are interpolated too, as in the paper; see `reset_bn`.
    """
    _check_alpha(alpha, extrapolate)
    check_same_architecture(model_a, model_b)
    model = copy.deepcopy(model_a)
    model.load_state_dict(lerp_state(model_a.state_dict(), model_b.state_dict(), alpha))
    return model.eval()


def has_batchnorm(model: nn.Module) -> bool:
    """Whether `model` has BatchNorm layers (whose statistics `reset_bn` recomputes)."""
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@torch.no_grad()
def reset_bn(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> nn.Module:
    """Recompute every BatchNorm's running mean and variance on `x` (in place; returns the model).

    The paper does not do this (interpolated statistics are used as they are); REPAIR (Jordan et
    al. 2023) shows that it removes much of the barrier of BN nets.
    """
    check_batch_size(batch_size)
    check_inputs(x, "reset_bn")
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over all batches
    model.train()
    for i in range(0, len(x), batch_size):
        model(x[i : i + batch_size])
    for m, mom in zip(bns, saved, strict=True):
        m.momentum = mom
    return model.eval()


def lmc_curve(
    model_a: nn.Module,
    model_b: nn.Module,
    data: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    alphas: Sequence[float],
    batch_size: int = 1000,
    bn_reset: torch.Tensor | None = None,
    progress: bool | None = None,
) -> Curve:
    """Loss, accuracy and error of theta_alpha at each alpha, on each split of `data`.

    `data` maps a split name ("train", "test") to (x, y). Returns {"alpha": [...],
    "<split>_loss": [...], "<split>_acc": [...], "<split>_err": [...]}. With `bn_reset` (inputs),
    BatchNorm statistics of each interpolated net are recomputed on them first.
    """
    alphas = check_alphas(alphas)
    check_same_architecture(model_a, model_b)
    if bn_reset is not None:
        check_inputs(bn_reset, "the BatchNorm reset (bn_reset)")

    def at(alpha: float) -> nn.Module:
        model = lerp(model_a, model_b, alpha)
        return reset_bn(model, bn_reset) if bn_reset is not None else model

    return curve_along(at, data, alphas, batch_size, progress)


def curve_along(
    model_at: Callable[[float], nn.Module],
    data: Mapping[str, tuple[torch.Tensor, torch.Tensor]],
    alphas: Sequence[float],
    batch_size: int = 1000,
    progress: bool | None = None,
) -> Curve:
    """Loss, accuracy and error of `model_at(alpha)` at each alpha, on each split of `data`.

    The form of `lmc_curve`, for any path of models (e.g. one layer interpolated at a time).
    """
    curve: Curve = {"alpha": alphas}
    for split in data:
        for m in ("loss", "acc", "err"):
            curve[f"{split}_{m}"] = []
    for alpha in tqdm(
        alphas, desc="alpha", leave=False, disable=not settings.show_progress(progress)
    ):
        model = model_at(alpha)
        for split, (x, y) in data.items():
            loss, acc = evaluate(model, x, y, batch_size)
            curve[f"{split}_loss"].append(loss)
            curve[f"{split}_acc"].append(acc)
            curve[f"{split}_err"].append(1.0 - acc)
    return curve


def barrier(curve: Mapping[str, Sequence[float]], key: str = "test_loss") -> float:
    """max over alpha of curve[key](alpha) - (alpha * curve[key](1) + (1 - alpha) * curve[key](0)).

    Use key "<split>_loss" for the loss barrier and "<split>_err" for the error barrier. The grid
    must contain alpha = 0 and alpha = 1. A curve that is linear (or convex) has barrier 0.
    """
    alphas = list(curve["alpha"])
    if key not in curve:
        raise KeyError(
            f"no {key!r} in the curve; it has {sorted(k for k in curve if k != 'alpha')}"
        )
    if 0.0 not in alphas or 1.0 not in alphas:
        raise ValueError("the barrier needs alpha = 0 and alpha = 1 in the grid")
    values = list(curve[key])
    v0, v1 = values[alphas.index(0.0)], values[alphas.index(1.0)]
    return max(v - (a * v1 + (1 - a) * v0) for a, v in zip(alphas, values, strict=True))


@torch.no_grad()
def logit_mix_error(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    alphas: Sequence[float],
    batch_size: int = 1000,
) -> list[float]:
    """Test error of alpha * f_A(x) + (1 - alpha) * f_B(x), the interpolation of the two nets' logits.

    Where both nets are right on a sample, so is any mixture of their logits, so this error never
    exceeds Err_A + Err_B: it is what the interpolated net would score if LLFC held at the output.
    """
    alphas = check_alphas(alphas, min_points=1)
    check_same_architecture(model_a, model_b)
    check_batch_size(batch_size)
    if len(x) == 0 or len(x) != len(y):
        raise ValueError(f"need as many labels as inputs (> 0), got {len(x)} and {len(y)}")
    wrong = torch.zeros(len(alphas), dtype=torch.int64)
    model_a.eval(), model_b.eval()
    for i in range(0, len(x), batch_size):
        fa, fb = model_a(x[i : i + batch_size]).double(), model_b(x[i : i + batch_size]).double()
        yb = y[i : i + batch_size]
        for j, a in enumerate(alphas):
            wrong[j] += int(((a * fa + (1 - a) * fb).argmax(1) != yb).sum())
    return [int(w) / len(x) for w in wrong]


def lemma1(curve: Mapping[str, Sequence[float]], logit_err: Sequence[float]) -> dict[str, float]:
    """Lemma 1's three numbers for one pair, from its test curve and its logit-mix errors.

    "max_err_interp": max over alpha of the interpolated net's test error; "max_err_logit_interp":
    the same for the logit mixture; "bound": 2 * max(Err_A, Err_B), the error Lemma 1 allows when
    LLFC holds at the output.
    """
    alphas, err = list(curve["alpha"]), list(curve["test_err"])
    if len(logit_err) != len(alphas) or 0.0 not in alphas or 1.0 not in alphas:
        raise ValueError("need one logit-mix error per alpha and alpha = 0 and 1 in the grid")
    bound = 2 * max(err[alphas.index(0.0)], err[alphas.index(1.0)])
    return {"max_err_interp": max(err), "max_err_logit_interp": max(logit_err), "bound": bound}
