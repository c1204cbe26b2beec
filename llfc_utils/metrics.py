"""The paper's measurements, as streaming float64 accumulators.

Memory does not grow with the number of samples: each accumulator keeps a few float64 sums,
updated batch by batch. Notation: f_l(theta; x) is the (flattened) output of layer l.

- LLFC (Definition 2): c * f_l(theta_alpha) = alpha * f_l(theta_A) + (1 - alpha) * f_l(theta_B).
  We report the cosine dissimilarity 1 - |<F_alpha, F_int>| / (|F_alpha| |F_int|) over the whole
  (N, D) block (the authors' form), its per-sample mean E_x[1 - cos_alpha(x)] (the paper's plotted
  E_D), and the scale c = <F_int, F_alpha> / |F_alpha|^2, the least-squares c of the definition.
  (The authors' `coef` is <F_alpha, F_int> / |F_int|^2, close to 1 / c.)
- Baseline: the same dissimilarity between f_l(theta_A) and f_l(theta_B), so a reader sees that
  LLFC is not trivially true.
- Weak additivity (Definition 3) at each ReLU, with h the pre-activations of A and B on the same
  inputs: relu(alpha h_A + (1 - alpha) h_B) against alpha relu(h_A) + (1 - alpha) relu(h_B).
"""

from __future__ import annotations

import copy
import math
import warnings
from collections.abc import Sequence

import torch
from torch import nn
from tqdm import tqdm

from llfc_utils import features, settings
from llfc_utils.config import check_batch_size
from llfc_utils.interpolate import (
    check_alphas,
    check_inputs,
    check_same_architecture,
    lerp,
    lerp_state,
    reset_bn,
)


def cosine_dissimilarity(a: torch.Tensor, b: torch.Tensor) -> float:
    """1 - |<A, B>| / (|A| |B|) over all entries of two same-shape tensors, in float64."""
    if a.shape != b.shape:
        raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    a, b = a.double().flatten(), b.double().flatten()
    return 1.0 - abs(float(a @ b)) / math.sqrt(float(a @ a) * float(b @ b))


class Cosine:
    """Streaming comparison of two (N, D) feature blocks A and B, fed batch by batch.

    `block`: 1 - |<A,B>| / (|A| |B|) over the block; `per_sample`: mean over samples of
    1 - |cos(a_i, b_i)| (`per_sample_std` its spread over samples); `scale`: <A, B> / |B|^2, the c minimising |c B - A|;
    `rel_sq_dist`: |A - B|^2 / (|A| |B|) (the authors' "vanilla" distance).
    A sample where one vector is zero and the other not counts as cos = 0; both zero, cos = 1.
    """

    def __init__(self) -> None:
        self.ab = self.aa = self.bb = self.diff = self.per_sample_sum = self.per_sample_sq = 0.0
        self.n = 0

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Add a batch: a and b of shape (B, ...) with the same shape."""
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
        a = a.reshape(len(a), -1).double()
        b = b.reshape(len(b), -1).double()
        ab, aa, bb = (a * b).sum(1), (a * a).sum(1), (b * b).sum(1)
        denom = (aa * bb).sqrt()
        cos = torch.where(denom > 0, ab.abs() / denom.clamp_min(1e-300), (aa == bb).double())
        self.ab += float(ab.sum())
        self.aa += float(aa.sum())
        self.bb += float(bb.sum())
        self.diff += float(((a - b) ** 2).sum())
        self.per_sample_sum += float((1.0 - cos).sum())
        self.per_sample_sq += float(((1.0 - cos) ** 2).sum())
        self.n += len(a)

    @property
    def block(self) -> float:
        """1 - |<A, B>| / (|A| |B|) over everything seen."""
        denom = math.sqrt(self.aa * self.bb)
        return 1.0 - abs(self.ab) / denom if denom > 0 else float(self.aa != self.bb)

    @property
    def per_sample(self) -> float:
        """Mean over samples of 1 - |cos(a_i, b_i)|."""
        return self.per_sample_sum / self.n if self.n else float("nan")

    @property
    def per_sample_std(self) -> float:
        """Standard deviation over samples of 1 - |cos(a_i, b_i)| (the spread behind `per_sample`)."""
        if self.n < 2:
            return float("nan")
        var = (self.per_sample_sq - self.n * self.per_sample**2) / (self.n - 1)
        return math.sqrt(max(var, 0.0))

    @property
    def scale(self) -> float:
        """<A, B> / |B|^2."""
        return self.ab / self.bb if self.bb > 0 else float("nan")

    @property
    def rel_sq_dist(self) -> float:
        """|A - B|^2 / (|A| |B|)."""
        denom = math.sqrt(self.aa * self.bb)
        return self.diff / denom if denom > 0 else float("nan")


@torch.no_grad()
def llfc(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    alphas: Sequence[float],
    layers: Sequence[str] | None = None,
    batch_size: int = 500,
    progress: bool | None = None,
    bn_reset: torch.Tensor | None = None,
) -> dict:
    """LLFC per layer and alpha, and the A-vs-B baseline, streamed over `x`.

    With `bn_reset` (inputs), each interpolated net's BatchNorm statistics are recomputed on
    them first (`interpolate.reset_bn`, as `lmc_curve(..., bn_reset=...)`): one state per alpha.

    Returns {"layers", "alphas", "cos_dist", "cos_dist_per_sample", "cos_dist_per_sample_std",
    "scale_c", "baseline_cos_dist", "baseline_cos_dist_per_sample"}; the first four map each layer
    to a list over alphas (`_std` is the spread over test samples), the baselines map each layer to one number. Memory: the two models, one
    interpolated state at a time (rebuilt per batch), and one batch of features of three nets.
    """
    alphas = check_alphas(alphas, min_points=1)
    check_same_architecture(model_a, model_b)
    check_inputs(x, "llfc")
    check_batch_size(batch_size)
    layers = list(layers or features.layers(model_a))
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    net = copy.deepcopy(model_a).eval()  # runs every interpolated state, one at a time
    stats = {(l, a): Cosine() for l in layers for a in alphas}
    base = {l: Cosine() for l in layers}
    reset = {}  # alpha -> the interpolated state with recomputed BatchNorm statistics
    if bn_reset is not None:
        reset = {a: reset_bn(lerp(model_a, model_b, a), bn_reset).state_dict() for a in alphas}
    starts = range(0, len(x), batch_size)
    for i in tqdm(starts, desc="LLFC", leave=False, disable=not settings.show_progress(progress)):
        xb = x[i : i + batch_size]
        fa, fb = features.of_batch([model_a, model_b], xb, layers)
        for l in layers:
            base[l].update(fa[l], fb[l])
        for a in alphas:
            interpolated = reset[a] if reset else lerp_state(state_a, state_b, a)
            with features.capture(net, layers) as f:
                torch.func.functional_call(net, interpolated, (xb,))
            del interpolated
            for l in layers:
                f_int = a * fa[l].double() + (1 - a) * fb[l].double()
                # Cosine.scale = <F_int, F_alpha> / |F_alpha|^2, the paper's c
                stats[l, a].update(f_int, f[l].reshape(len(xb), -1))
            del f
    _warn_dead([l for l in layers if any(math.isnan(stats[l, a].scale) for a in alphas)], "scale c")
    return {
        "layers": layers,
        "alphas": alphas,
        "cos_dist": {l: [stats[l, a].block for a in alphas] for l in layers},
        "cos_dist_per_sample": {l: [stats[l, a].per_sample for a in alphas] for l in layers},
        "cos_dist_per_sample_std": {
            l: [stats[l, a].per_sample_std for a in alphas] for l in layers
        },
        "scale_c": {l: [stats[l, a].scale for a in alphas] for l in layers},
        "baseline_cos_dist": {l: base[l].block for l in layers},
        "baseline_cos_dist_per_sample": {l: base[l].per_sample for l in layers},
    }


def weak_additivity(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    alphas: Sequence[float] = (0.25, 0.5, 0.75),
    layers: Sequence[str] | None = None,
    batch_size: int = 500,
    progress: bool | None = None,
) -> dict:
    """Weak additivity at each ReLU: relu(alpha h_A + (1-alpha) h_B) vs alpha relu(h_A) + (1-alpha) relu(h_B).

    h_A, h_B are the ReLU inputs of A and B on the same `x`. Returns {"layers", "alphas",
    "cos_dist", "rel_sq_dist"} (each layer -> list over alphas) and "sign_disagreement"
    (layer -> fraction of units where exactly one of h_A, h_B is positive). Both distances are
    exactly 0 where h_A and h_B share signs everywhere.
    """
    alphas = check_alphas(alphas, min_points=1)
    check_same_architecture(model_a, model_b)
    check_inputs(x, "weak_additivity")
    layers = list(layers or features.relu_layers(model_a))
    stats = {(l, a): Cosine() for l in layers for a in alphas}
    disagree = dict.fromkeys(layers, 0)
    count = dict.fromkeys(layers, 0)
    batches = features.iter_features([model_a, model_b], x, layers, batch_size, inputs=True)
    total = math.ceil(len(x) / batch_size)
    for ha, hb in tqdm(
        batches,
        total=total,
        desc="weak additivity",
        leave=False,
        disable=not settings.show_progress(progress),
    ):
        for l in layers:
            a_, b_ = ha[l].double(), hb[l].double()
            disagree[l] += int(((a_ > 0) != (b_ > 0)).sum())
            count[l] += a_.numel()
            for a in alphas:
                mixed = torch.relu(a * a_ + (1 - a) * b_)
                separate = a * torch.relu(a_) + (1 - a) * torch.relu(b_)
                stats[l, a].update(mixed, separate)
    dead = [l for l in layers if any(math.isnan(stats[l, a].rel_sq_dist) for a in alphas)]
    _warn_dead(dead, "rel_sq_dist")
    return {
        "layers": layers,
        "alphas": alphas,
        "cos_dist": {l: [stats[l, a].block for a in alphas] for l in layers},
        "rel_sq_dist": {l: [stats[l, a].rel_sq_dist for a in alphas] for l in layers},
        "sign_disagreement": {l: disagree[l] / count[l] for l in layers},
    }


def _linear_map(module: nn.Module, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Apply `weight` (no bias) the way `module` applies its own: W H for Linear, im2col for Conv."""
    if isinstance(module, nn.Conv2d):
        return torch.nn.functional.conv2d(
            h, weight, None, module.stride, module.padding, module.dilation, module.groups
        )
    return h @ weight.T


@torch.no_grad()
def commutativity(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    layers: Sequence[str] | None = None,
    batch_size: int = 500,
    progress: bool | None = None,
) -> dict:
    """Commutativity (Definition 4) per Linear/Conv layer, with the distances that explain it.

    With W the layer's weight and H its input features on `x` (for a convolution, W is read as a
    (C_out, C_in k k) matrix and H as the unfolded (C_in k k, pixels) patches, which is what the
    convolution computes), returns per layer:

    - "com": ||W_A H_A + W_B H_B - W_A H_B - W_B H_A|| / (||W_A H_A|| + ||W_B H_B||),
      i.e. ||(W_A - W_B)(H_A - H_B)|| relative to the two layers' own outputs;
    - "dist_w": ||W_A - W_B|| / (||W_A|| + ||W_B||);
    - "dist_h": ||H_A - H_B|| / (||H_A|| + ||H_B||);
    all Frobenius norms over the whole data set, biases left out (they cancel in the residual).
    """
    check_same_architecture(model_a, model_b)
    check_inputs(x, "commutativity")
    mods_a, mods_b = dict(model_a.named_modules()), dict(model_b.named_modules())
    if layers is None:
        layers = features.weight_layers(model_a)
    layers = list(layers)
    sums = {l: dict.fromkeys(("res", "out_a", "out_b", "dh", "ha", "hb"), 0.0) for l in layers}
    batches = features.iter_features(
        [model_a, model_b], x, layers, batch_size, inputs=True, flatten=False
    )
    total = math.ceil(len(x) / batch_size)
    for ha_all, hb_all in tqdm(
        batches,
        total=total,
        desc="commutativity",
        leave=False,
        disable=not settings.show_progress(progress),
    ):
        for l in layers:
            m = mods_a[l]
            wa, wb = mods_a[l].weight.double(), mods_b[l].weight.double()
            ha, hb = ha_all[l].double(), hb_all[l].double()
            s = sums[l]
            s["res"] += float(_linear_map(m, ha - hb, wa - wb).pow(2).sum())
            s["out_a"] += float(_linear_map(m, ha, wa).pow(2).sum())
            s["out_b"] += float(_linear_map(m, hb, wb).pow(2).sum())
            s["dh"] += float((ha - hb).pow(2).sum())
            s["ha"] += float(ha.pow(2).sum())
            s["hb"] += float(hb.pow(2).sum())
    out: dict = {"layers": layers, "com": {}, "dist_w": {}, "dist_h": {}}
    for l in layers:
        s = {k: math.sqrt(v) for k, v in sums[l].items()}
        wa, wb = mods_a[l].weight.double(), mods_b[l].weight.double()
        out["com"][l] = _ratio(s["res"], s["out_a"] + s["out_b"])
        out["dist_w"][l] = _ratio(float((wa - wb).norm()), float(wa.norm() + wb.norm()))
        out["dist_h"][l] = _ratio(s["dh"], s["ha"] + s["hb"])
    dead = [l for l in layers if math.isnan(out["com"][l] + out["dist_w"][l] + out["dist_h"][l])]
    _warn_dead(dead, "ratio")
    return out


def _ratio(num: float, den: float) -> float:
    """num / den, NaN where den is 0 (a dead layer: all its features or weights are zero)."""
    return num / den if den > 0 else float("nan")


def _warn_dead(layers: list[str], what: str) -> None:
    """Warn that `layers` are dead (all zero) here, so their `what` is undefined (NaN)."""
    if layers:
        warnings.warn(
            f"layer(s) {layers} are dead here (all-zero features or weights), so their {what} "
            "is undefined and reported as NaN; leave them out with layers=... or check the models",
            stacklevel=3,
        )


@torch.no_grad()
def theorem1(
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    alpha: float = 0.5,
    layers: Sequence[str] | None = None,
    batch_size: int = 500,
    progress: bool | None = None,
) -> dict:
    """Theorem 1's one-step identity measured on real nets, per Linear/Conv layer.

    With W the layer's weights, H its input on `x` in A, B and the interpolated net theta_alpha,
    and H_lin = alpha H_A + (1 - alpha) H_B, the exact identity is

        W_alpha H_alpha - (alpha W_A H_A + (1 - alpha) W_B H_B)
            = W_alpha (H_alpha - H_lin) - alpha (1 - alpha) (W_A - W_B)(H_A - H_B).

    Returns per layer (Frobenius norms over the whole data set, biases left out: they cancel):
    "defect" (the left side: the pre-activation LLFC defect), "predicted"
    (alpha (1 - alpha) ||(W_A - W_B)(H_A - H_B)||), "carried" (||W_alpha (H_alpha - H_lin)||, what
    earlier layers carried in), "input_gap" (||H_alpha - H_lin|| / ||H_lin||) and "scale"
    (||alpha W_A H_A + (1 - alpha) W_B H_B||). Where the input is exactly linear (input_gap 0,
    e.g. the first layer, whose input is the data), defect == predicted.
    """
    from llfc_utils.interpolate import lerp

    check_same_architecture(model_a, model_b)
    check_inputs(x, "theorem1")
    net = lerp(model_a, model_b, alpha)
    mods = [dict(m.named_modules()) for m in (model_a, model_b, net)]
    if layers is None:
        layers = features.weight_layers(model_a)
    layers = list(layers)
    keys = ("defect", "predicted", "carried", "gap", "lin", "scale")
    sums = {l: dict.fromkeys(keys, 0.0) for l in layers}
    batches = features.iter_features(
        [model_a, model_b, net], x, layers, batch_size, inputs=True, flatten=False
    )
    total = math.ceil(len(x) / batch_size)
    for hs in tqdm(
        batches,
        total=total,
        desc="theorem 1",
        leave=False,
        disable=not settings.show_progress(progress),
    ):
        for l in layers:
            m = mods[0][l]
            wa, wb, wt = (d[l].weight.double() for d in mods)
            ha, hb, ht = (h[l].double() for h in hs)
            h_lin = alpha * ha + (1 - alpha) * hb
            mixed = alpha * _linear_map(m, ha, wa) + (1 - alpha) * _linear_map(m, hb, wb)
            s = sums[l]
            s["defect"] += float((_linear_map(m, ht, wt) - mixed).pow(2).sum())
            s["predicted"] += float(_linear_map(m, ha - hb, wa - wb).pow(2).sum())
            s["carried"] += float(_linear_map(m, ht - h_lin, wt).pow(2).sum())
            s["gap"] += float((ht - h_lin).pow(2).sum())
            s["lin"] += float(h_lin.pow(2).sum())
            s["scale"] += float(mixed.pow(2).sum())
    out: dict = {"layers": layers, "alpha": alpha}
    for k in ("defect", "predicted", "carried", "input_gap", "scale"):
        out[k] = {}
    for l in layers:
        s = {k: math.sqrt(v) for k, v in sums[l].items()}
        out["defect"][l] = s["defect"]
        out["predicted"][l] = alpha * (1 - alpha) * s["predicted"]
        out["carried"][l] = s["carried"]
        out["input_gap"][l] = _ratio(s["gap"], s["lin"])
        out["scale"][l] = s["scale"]
    return out


# ---------------------------------------------------------------- the verdicts: LMC <=> LLFC

TOL_LMC = 0.02  # LMC: test-error barrier below 2 percentage points (Frankle et al. 2020)
TOL_LLFC = 0.25  # LLFC: dissimilarity below this fraction of an independent pair's, at every layer


def at_alpha(result: dict, key: str = "cos_dist_per_sample", alpha: float = 0.5) -> dict:
    """One alpha's value per layer from an `llfc` result, e.g. E_x[1 - cos_alpha] at alpha = 0.5."""
    if alpha not in result["alphas"]:
        raise ValueError(f"alpha {alpha} is not in the result's grid {result['alphas']}")
    i = result["alphas"].index(alpha)
    return {l: result[key][l][i] for l in result["layers"]}


def baseline_ratio(result: dict, alpha: float = 0.5) -> float:
    """Largest LLFC / own A-B baseline ratio (E_x[1 - cos]) at `alpha` over the hidden layers.

    The first layer (linear in the weights: exact for any pair) and the logits (whose baseline
    is tiny and fragile) are left out, and so is a layer whose baseline is 0 (NaN if none is left). Chapter 2
    shows why this ratio cannot decide LLFC on its own (an independent MLP pair scores low).
    """
    inner = list(result["layers"])[1:-1]
    if not inner:
        raise ValueError(f"need at least three layers, got {result['layers']}")
    half = at_alpha(result, "cos_dist_per_sample", alpha)
    base = result["baseline_cos_dist_per_sample"]
    ratios = [half[l] / base[l] for l in inner if base[l] > 0]
    return max(ratios) if ratios else math.nan


def llfc_relative(
    result: dict, reference: dict, alpha: float = 0.5, key: str = "cos_dist_per_sample"
) -> dict[str, float]:
    """Per layer: the pair's LLFC dissimilarity at `alpha` over the reference pair's, same layer.

    The reference is an independent pair (no LMC) of the same architecture, trained from other
    seeds: a ratio near 1 means "no more linear than two unrelated nets", near 0 "linear".
    The first layer is left out: it is linear in the weights, so its dissimilarity is ~1e-14
    for every pair (exact, not evidence).
    """
    if result["layers"] != reference["layers"]:
        raise ValueError("the pair and its reference must be measured at the same layers")
    mine, ref = at_alpha(result, key, alpha), at_alpha(reference, key, alpha)
    out = {}
    for l in result["layers"][1:]:
        if not ref[l] > 0:
            raise ValueError(
                f"the reference pair's dissimilarity at {l!r} is {ref[l]}: not a reference"
            )
        out[l] = mine[l] / ref[l]
    return out


def llfc_test(
    pair: dict, reference: dict, lmc_tol: float = TOL_LMC, llfc_tol: float = TOL_LLFC
) -> dict:
    """The book's one verdict on a pair: does it have LMC, and does it have LLFC?

    `pair` is {"llfc": an `llfc` result with alpha 0.5, "barrier": test-loss barrier,
    "error_barrier": test-error barrier}; `reference` is {"llfc", "barrier"} of an independent
    pair of the same model from other seeds. LMC holds iff the error barrier is below `lmc_tol`
    (Frankle et al.'s 2 %); LLFC holds iff at every layer but the exact first one (logits
    included) the dissimilarity at alpha = 0.5 is below `llfc_tol` times the reference's
    (`llfc_relative`). Returns {"lmc", "llfc", "barrier_ratio" (loss barrier over the
    reference's; NaN where it has none), "max_relative", "worst_layer", "relative"}; the paper's
    claim is lmc == llfc.
    """
    rel = llfc_relative(pair["llfc"], reference["llfc"])
    worst = max(rel, key=rel.get)
    return {
        "lmc": bool(pair["error_barrier"] < lmc_tol),
        "llfc": bool(rel[worst] < llfc_tol),
        "barrier_ratio": pair["barrier"] / reference["barrier"]
        if reference["barrier"] > 0
        else math.nan,
        "max_relative": rel[worst],
        "worst_layer": worst,
        "relative": rel,
    }
