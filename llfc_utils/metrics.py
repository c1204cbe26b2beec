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


ROW_BLOCK = 1 << 17  # entries per float64 block of rows (1 MiB): the work stays in the CPU cache


def row_blocks(n: int, d: int) -> list[slice]:
    """Slices of the n rows of an (n, d) array, about ROW_BLOCK entries each."""
    step = max(1, ROW_BLOCK // max(d, 1))
    return [slice(i, min(i + step, n)) for i in range(0, n, step)]


def flat(*ts: torch.Tensor) -> list[torch.Tensor]:
    """Same-shape (B, ...) tensors as (B, D), flattened in one order they share in memory.

    Channels-last feature maps (what a CPU convolution returns for one-channel images) become
    (B, H W C) views instead of (B, C H W) copies; every metric here sums over D, so only float64
    rounding can tell the orders apart.
    """
    cl = torch.channels_last
    if all(
        t.dim() == 4 and not t.is_contiguous() and t.is_contiguous(memory_format=cl) for t in ts
    ):
        ts = tuple(t.permute(0, 2, 3, 1) for t in ts)
    return [t.reshape(len(t), -1) for t in ts]


class Cosine:
    """Streaming comparison of two (N, D) feature blocks A and B, fed batch by batch.

    `block`: 1 - |<A,B>| / (|A| |B|) over the block; `per_sample`: mean over samples of
    1 - |cos(a_i, b_i)| (`per_sample_std` its spread over samples); `scale`: <A, B> / |B|^2, the c minimising |c B - A|;
    `rel_sq_dist`: |A - B|^2 / (|A| |B|) (the authors' "vanilla" distance; NaN with
    `distance=False`, which skips it).
    A sample where one vector is zero and the other not counts as cos = 0; both zero, cos = 1.
    The sums stay float64 tensors on the data's device: an update never waits for the device.
    """

    SUMS = ("ab", "aa", "bb", "diff", "per_sample_sum", "per_sample_sq")

    def __init__(self, distance: bool = True) -> None:
        self.distance = distance
        self.sums: torch.Tensor | None = None  # the SUMS, in that order
        self.n = 0

    def update(self, a: torch.Tensor, b: torch.Tensor) -> None:
        """Add a batch: a and b of shape (B, ...) with the same shape (any float dtype)."""
        if a.shape != b.shape:
            raise ValueError(f"shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
        a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
        per = torch.zeros(4, len(a), dtype=torch.float64, device=a.device)  # ab, aa, bb, diff
        for rows in row_blocks(*a.shape):
            ar, br = a[rows].double(), b[rows].double()
            per[0, rows] = torch.linalg.vecdot(ar, br)
            per[1, rows] = torch.linalg.vecdot(ar, ar)
            per[2, rows] = torch.linalg.vecdot(br, br)
            if self.distance:
                d = ar - br
                per[3, rows] = torch.linalg.vecdot(d, d)
        ab, aa, bb = per[0], per[1], per[2]
        denom = (aa * bb).sqrt()
        cos = torch.where(denom > 0, ab.abs() / denom.clamp_min(1e-300), (aa == bb).double())
        sums = torch.cat([per.sum(1), torch.stack([(1.0 - cos).sum(), ((1.0 - cos) ** 2).sum()])])
        self.sums = sums if self.sums is None else self.sums + sums
        self.n += len(a)

    def totals(self) -> dict[str, float]:
        """The SUMS by name, as floats (one read-back; zeros before any update)."""
        values = [0.0] * len(Cosine.SUMS) if self.sums is None else self.sums.tolist()
        return dict(zip(Cosine.SUMS, values, strict=True))

    @property
    def block(self) -> float:
        """1 - |<A, B>| / (|A| |B|) over everything seen."""
        t = self.totals()
        denom = math.sqrt(t["aa"] * t["bb"])
        return 1.0 - abs(t["ab"]) / denom if denom > 0 else float(t["aa"] != t["bb"])

    @property
    def per_sample(self) -> float:
        """Mean over samples of 1 - |cos(a_i, b_i)|."""
        return self.totals()["per_sample_sum"] / self.n if self.n else float("nan")

    @property
    def per_sample_std(self) -> float:
        """Standard deviation over samples of 1 - |cos(a_i, b_i)| (the spread behind `per_sample`)."""
        if self.n < 2:
            return float("nan")
        var = (self.totals()["per_sample_sq"] - self.n * self.per_sample**2) / (self.n - 1)
        return math.sqrt(max(var, 0.0))

    @property
    def scale(self) -> float:
        """<A, B> / |B|^2."""
        t = self.totals()
        return t["ab"] / t["bb"] if t["bb"] > 0 else float("nan")

    @property
    def rel_sq_dist(self) -> float:
        """|A - B|^2 / (|A| |B|) (NaN without `distance`)."""
        t = self.totals()
        denom = math.sqrt(t["aa"] * t["bb"])
        return t["diff"] / denom if denom > 0 and self.distance else float("nan")


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
    to a list over alphas (`_std` is the spread over test samples), the baselines map each layer to
    one number. Memory: the two models, one interpolated state per alpha strictly between 0 and 1
    (alpha = 1 is A and alpha = 0 is B exactly, so their features are A's and B's), and one batch
    of features of three nets. A's and B's features of a batch are computed once and shared by
    every alpha.
    """
    alphas = check_alphas(alphas, min_points=1)
    check_same_architecture(model_a, model_b)
    check_inputs(x, "llfc")
    check_batch_size(batch_size)
    layers = list(layers or features.layers(model_a))
    state_a, state_b = model_a.state_dict(), model_b.state_dict()
    states = {a: lerp_state(state_a, state_b, a) for a in alphas if a not in (0.0, 1.0)}
    net = copy.deepcopy(model_a).eval()  # runs every interpolated state, one at a time
    stats = {(l, a): Cosine(distance=False) for l in layers for a in alphas}
    base = {l: Cosine(distance=False) for l in layers}
    if bn_reset is not None:  # the interpolated nets with recomputed BatchNorm statistics
        states = {a: reset_bn(lerp(model_a, model_b, a), bn_reset).state_dict() for a in states}
    starts = range(0, len(x), batch_size)
    for i in tqdm(starts, desc="LLFC", leave=False, disable=not settings.show_progress(progress)):
        xb = x[i : i + batch_size]
        fa, fb = features.of_batch([model_a, model_b], xb, layers, flatten=False)
        for l in layers:
            base[l].update(*flat(fa[l], fb[l]))
        for a in alphas:
            f = {1.0: fa, 0.0: fb}.get(a)
            if f is None:
                with features.capture(net, layers) as hooked:
                    torch.func.functional_call(net, states[a], (xb,))
                f = dict(hooked)
            for l in layers:
                f_a, f_b, f_alpha = flat(fa[l], fb[l], f[l])
                for rows in row_blocks(*f_a.shape):  # a block of rows at a time, in cache
                    f_int = a * f_a[rows].double() + (1 - a) * f_b[rows].double()
                    # Cosine.scale = <F_int, F_alpha> / |F_alpha|^2, the paper's c
                    stats[l, a].update(f_int, f_alpha[rows])
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
    batches = features.iter_features(
        [model_a, model_b], x, layers, batch_size, inputs=True, flatten=False
    )
    total = math.ceil(len(x) / batch_size)
    for ha, hb in tqdm(
        batches,
        total=total,
        desc="weak additivity",
        leave=False,
        disable=not settings.show_progress(progress),
    ):
        for l in layers:
            h_a, h_b = flat(ha[l], hb[l])
            for rows in row_blocks(*h_a.shape):  # a block of rows at a time, in cache
                a_, b_ = h_a[rows].double(), h_b[rows].double()
                disagree[l] += ((a_ > 0) != (b_ > 0)).sum()
                count[l] += a_.numel()
                relu_a, relu_b = torch.relu(a_), torch.relu(b_)
                for a in alphas:
                    mixed = torch.relu(a * a_ + (1 - a) * b_)
                    separate = a * relu_a + (1 - a) * relu_b
                    stats[l, a].update(mixed, separate)
    dead = [l for l in layers if any(math.isnan(stats[l, a].rel_sq_dist) for a in alphas)]
    _warn_dead(dead, "rel_sq_dist")
    return {
        "layers": layers,
        "alphas": alphas,
        "cos_dist": {l: [stats[l, a].block for a in alphas] for l in layers},
        "rel_sq_dist": {l: [stats[l, a].rel_sq_dist for a in alphas] for l in layers},
        "sign_disagreement": {l: int(disagree[l]) / count[l] for l in layers},
    }


def _linear_map(module: nn.Module, h: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Apply `weight` (no bias) the way `module` applies its own: W H for Linear, im2col for Conv."""
    if isinstance(module, nn.Conv2d):
        return torch.nn.functional.conv2d(
            h, weight, None, module.stride, module.padding, module.dilation, module.groups
        )
    return h @ weight.T


def _sq(a: torch.Tensor, b: torch.Tensor | None = None) -> torch.Tensor:
    """||a||^2, or ||a - b||^2, summed in float64 (the difference too) a block of rows at a time."""
    a, b = (flat(a)[0], None) if b is None else flat(a, b)
    total = torch.zeros((), dtype=torch.float64, device=a.device)
    for rows in row_blocks(*a.shape):
        d = a[rows].double() if b is None else a[rows].double() - b[rows].double()
        total += torch.linalg.vecdot(d, d).sum()
    return total


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
    The products W H run in the nets' precision (none is a difference of nearly equal terms, so
    float32 nets change them by about 1e-7 relative against float64 products), every sum of
    squares and H_A - H_B in float64.
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
            wa, wb = mods_a[l].weight, mods_b[l].weight
            ha, hb = ha_all[l], hb_all[l]
            s = sums[l]
            s["res"] += _sq(_linear_map(m, ha - hb, wa - wb))
            s["out_a"] += _sq(_linear_map(m, ha, wa))
            s["out_b"] += _sq(_linear_map(m, hb, wb))
            s["dh"] += _sq(ha, hb)
            s["ha"] += _sq(ha)
            s["hb"] += _sq(hb)
    out: dict = {"layers": layers, "com": {}, "dist_w": {}, "dist_h": {}}
    for l in layers:
        s = {k: math.sqrt(float(v)) for k, v in sums[l].items()}
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
    e.g. the first layer, whose input is the data), defect == predicted. The defect's products
    run in float64 (it is a difference of nearly equal terms); "predicted" and "carried", norms of
    products of differences, run in the nets' precision as in `commutativity`; sums in float64.
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
            wa, wb, wt = (d[l].weight for d in mods)
            ha, hb, ht = (h[l] for h in hs)
            wa64, wb64, wt64 = (w.double() for w in (wa, wb, wt))
            ha64, hb64, ht64 = (h.double() for h in (ha, hb, ht))
            h_lin = alpha * ha64 + (1 - alpha) * hb64
            mixed = alpha * _linear_map(m, ha64, wa64) + (1 - alpha) * _linear_map(m, hb64, wb64)
            s = sums[l]
            # the defect is a difference of nearly equal maps: float64 products; the other
            # norms are of maps of differences, in the nets' precision (see `commutativity`)
            s["defect"] += _sq(_linear_map(m, ht64, wt64), mixed)
            s["predicted"] += _sq(_linear_map(m, ha - hb, wa - wb))
            s["carried"] += _sq(_linear_map(m, (ht64 - h_lin).to(ht.dtype), wt))
            s["gap"] += _sq(ht64, h_lin)
            s["lin"] += _sq(h_lin)
            s["scale"] += _sq(mixed)
    out: dict = {"layers": layers, "alpha": alpha}
    for k in ("defect", "predicted", "carried", "input_gap", "scale"):
        out[k] = {}
    for l in layers:
        s = {k: math.sqrt(float(v)) for k, v in sums[l].items()}
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
