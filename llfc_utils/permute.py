"""Permutation symmetry: specs per architecture, weight matching, activation matching, align.

Hidden units can be reordered without changing the function a network computes. Git Re-Basin
(Ainsworth et al. 2023) finds the reordering of model B that best matches model A, by weights
(weight matching, WM) or by activations on data (activation matching, AM); after it, many
independently trained pairs become linearly mode connected.

A `PermSpec` is a plain table in the spirit of Git Re-Basin's `PermutationSpec`:

    axes[name] = (perm or None for each axis of the state-dict entry `name`)
    acts[perm] = [modules whose output lives in the permuted space]   (for activation matching)

A permutation `perm[p]` is an index tensor: the permuted model's unit i is the old unit perm[p][i].
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import min_weight_full_bipartite_matching
from torch import nn

from llfc_utils import features
from llfc_utils.config import check_batch_size
from llfc_utils.interpolate import check_same_architecture
from llfc_utils.models import MLP, VGG, BasicBlock, ResNet20

Perm = dict[str, torch.Tensor]
METHODS = ("wm", "am")


@dataclass
class PermSpec:
    """Which permutation acts on which axis of which state-dict entry, and where it is observed."""

    axes: dict[str, tuple[str | None, ...]]
    acts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def perm_to_axes(self) -> dict[str, list[tuple[str, int]]]:
        """For each permutation, the (entry, axis) pairs it acts on."""
        out: dict[str, list[tuple[str, int]]] = {}
        for name, ps in self.axes.items():
            for axis, p in enumerate(ps):
                if p is not None:
                    out.setdefault(p, []).append((name, axis))
        return out


def _norm_entries(prefix: str, module: nn.Module, p: str) -> dict[str, tuple[str | None, ...]]:
    """The entries of a norm layer (BN: weight, bias, running stats; LN: weight, bias)."""
    out: dict[str, tuple[str | None, ...]] = {}
    for name, t in module.state_dict().items():
        out[f"{prefix}.{name}"] = (p,) if t.dim() == 1 else ()
    return out


def spec_for(model: nn.Module) -> PermSpec:
    """The permutation spec of one of our models (MLP, VGG, ResNet-20 with conv shortcuts)."""
    if isinstance(model, MLP):
        return _spec_mlp(model)
    if isinstance(model, VGG):
        return _spec_vgg(model)
    if isinstance(model, ResNet20):
        return _spec_resnet(model)
    raise ValueError(f"no permutation spec for {type(model).__name__}; valid: MLP, VGG, ResNet20")


def _spec_mlp(model: MLP) -> PermSpec:
    fcs = [n for n, m in model.named_children() if isinstance(m, nn.Linear)]
    axes, acts, prev = {}, {}, None
    for i, fc in enumerate(fcs):
        p = f"P_{fc}" if i < len(fcs) - 1 else None
        axes[f"{fc}.weight"] = (p, prev)
        axes[f"{fc}.bias"] = (p,)
        if p:
            acts[p] = [f"relu{i + 1}"]
        prev = p
    return PermSpec(axes, acts)


def _spec_vgg(model: VGG) -> PermSpec:
    axes: dict[str, tuple[str | None, ...]] = {}
    acts: dict[str, list[str]] = {}
    prev = None
    children = dict(model.named_children())
    layers = features.weight_layers(model)  # VGG is a Sequential: its weight layers are children
    for j, name in enumerate(layers):
        last = j == len(layers) - 1
        p = None if last else f"P_{name}"
        m = children[name]
        axes[f"{name}.weight"] = (p, prev) + ((None, None) if isinstance(m, nn.Conv2d) else ())
        if m.bias is not None:
            axes[f"{name}.bias"] = (p,)
        if p:
            k = name[len("conv") :] if name.startswith("conv") else None
            norm, relu = (f"norm{k}", f"relu{k}") if k else (None, f"relu_{name}")
            if norm in children:
                axes.update(_norm_entries(norm, children[norm], p))
            acts[p] = [relu]
        prev = p
    return PermSpec(axes, acts)


def _spec_resnet(model: ResNet20) -> PermSpec:
    axes: dict[str, tuple[str | None, ...]] = {"conv1.weight": ("P_res1", None, None, None)}
    axes.update(_norm_entries("norm1", model.norm1, "P_res1"))
    acts: dict[str, list[str]] = {"P_res1": ["relu1"]}
    stream = "P_res1"
    for s in (1, 2, 3):
        for b, block in enumerate(getattr(model, f"stage{s}")):
            assert isinstance(block, BasicBlock)
            pre = f"stage{s}.block{b}"
            out = f"P_res{s}"
            if isinstance(block.shortcut, nn.Sequential):  # conv shortcut: a new stream
                axes[f"{pre}.shortcut.conv.weight"] = (out, stream, None, None)
                axes.update(_norm_entries(f"{pre}.shortcut.norm", block.shortcut.norm, out))
            elif not isinstance(block.shortcut, nn.Identity):
                raise ValueError(
                    f"{pre} has a zero-padding shortcut, which mixes channels in a way a "
                    "permutation cannot follow; build the ResNet with shortcut='conv' to permute it"
                )
            inner = f"P_{pre}"
            axes[f"{pre}.conv1.weight"] = (inner, stream, None, None)
            axes.update(_norm_entries(f"{pre}.norm1", block.norm1, inner))
            axes[f"{pre}.conv2.weight"] = (out, inner, None, None)
            axes.update(_norm_entries(f"{pre}.norm2", block.norm2, out))
            acts[inner] = [f"{pre}.relu1"]
            acts.setdefault(out, []).append(f"{pre}.relu2")
            stream = out
    axes["fc.weight"] = (None, stream)
    axes["fc.bias"] = (None,)
    return PermSpec(axes, acts)


def check_spec(spec: PermSpec, state: Mapping[str, torch.Tensor]) -> None:
    """Raise ValueError if `spec` and `state` disagree on names, ranks or permuted sizes."""
    missing = [k for k in state if k not in spec.axes and state[k].dim() > 0]
    extra = [k for k in spec.axes if k not in state]
    if missing or extra:
        raise ValueError(f"spec and state differ: not in spec {missing}, not in state {extra}")
    sizes: dict[str, int] = {}
    for name, ps in spec.axes.items():
        t = state[name]
        if len(ps) != t.dim():
            raise ValueError(f"{name}: spec has {len(ps)} axes, tensor has shape {tuple(t.shape)}")
        for axis, p in enumerate(ps):
            if p is not None and sizes.setdefault(p, t.shape[axis]) != t.shape[axis]:
                raise ValueError(
                    f"{p} acts on axes of sizes {sizes[p]} and {t.shape[axis]} ({name})"
                )


def apply(spec: PermSpec, perm: Perm, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict with every permuted axis reordered (parameters and BN statistics)."""
    out = {}
    for name, t in state.items():
        for axis, p in enumerate(spec.axes.get(name, ())):
            if p is not None:
                t = t.index_select(axis, perm[p].to(t.device))
        out[name] = t
    return out


def identity(spec: PermSpec, state: Mapping[str, torch.Tensor]) -> Perm:
    """The identity permutation for every permutation of `spec`."""
    return {
        p: torch.arange(state[name].shape[axis])
        for p, [(name, axis), *_] in spec.perm_to_axes.items()
    }


def _assignment(similarity: np.ndarray) -> np.ndarray:
    """The permutation maximising the total similarity (a linear assignment)."""
    rows, cols = linear_sum_assignment(similarity, maximize=True)
    assert (rows == np.arange(len(rows))).all()
    return cols


SPARSE_LAP_MIN = 1024  # from this width on, weight matching solves its assignments on candidates
# The most similar units of B per unit of A. On random VGG-16 pairs (bench/weight_matching.py), 64
# candidates missed the dense optimum often enough to end 0.1-0.5 % below the dense solves'
# objective; 256 walked exactly the dense solves' path, at 0.43x their time.
SPARSE_LAP_CANDIDATES = 256


def _sparse_assignment(similarity: np.ndarray, current: np.ndarray) -> np.ndarray:
    """The best permutation among each row's most similar columns and the `current` permutation.

    Much faster than the dense assignment on wide layers, and never worse than `current`; it can
    miss the dense optimum only if that uses a pair outside every row's candidates. Falls back to
    the dense assignment if the candidates admit no full matching.
    """
    n = len(similarity)
    k = min(SPARSE_LAP_CANDIDATES, n)
    cols = torch.from_numpy(similarity).topk(k, dim=1, sorted=False).indices.numpy()
    has_current = (cols == current[:, None]).any(axis=1)
    cols[~has_current, -1] = current[~has_current]  # the current permutation stays feasible
    cols.sort(axis=1)
    # shifted to positive weights (a zero would read as a missing edge); every full matching has
    # n edges, so the shift does not change which one is best
    weights = np.take_along_axis(similarity, cols, axis=1) - similarity.min() + 1.0
    graph = csr_matrix((weights.ravel(), cols.ravel(), np.arange(0, n * k + 1, k)), shape=(n, n))
    try:
        r, c = min_weight_full_bipartite_matching(graph, maximize=True)
    except ValueError:
        return _assignment(similarity)
    out = np.empty(n, dtype=np.int64)
    out[r] = c
    return out


def weight_matching(
    spec: PermSpec,
    state_a: Mapping[str, torch.Tensor],
    state_b: Mapping[str, torch.Tensor],
    max_iter: int = 100,
    seed: int = 0,
    stats: dict | None = None,
) -> Perm:
    """Git Re-Basin's weight matching: the permutation of B maximising sum_l <W_A^l, P W_B^l>.

    Coordinate descent over the permutations in a seeded random order per sweep; each step solves
    one linear assignment on the summed similarity of every weight the permutation touches (the
    other permutations held fixed), accepts it if it improves the objective, and the loop stops
    when a full sweep improves nothing. Only parameters count (not BN running statistics).

    Three shortcuts leave the result unchanged (up to float32 rounding of the products): a
    permutation none of whose neighbours changed since its last assignment is not solved again
    (its similarity is the same, so is its answer); each weight's contribution to a similarity is
    kept and, when its other permutation moved only a few units, updated by those units alone;
    products run in float32, sums in float64. `stats`, if given, receives the number of sweeps,
    assignments solved and skipped, and the seconds spent in assignments and in all.
    """
    t_start = time.perf_counter()
    check_spec(spec, state_a)
    check_spec(spec, state_b)
    stat_names = ("running_mean", "running_var")
    keep = [k for k in spec.axes if not k.endswith(stat_names) and state_a[k].is_floating_point()]
    a = {k: state_a[k].detach().float().cpu() for k in keep}
    b = {k: state_b[k].detach().float().cpu() for k in keep}
    perm = identity(spec, state_a)
    names = sorted(spec.perm_to_axes)
    terms = {p: [(k, ax) for k, ax in spec.perm_to_axes[p] if k in a] for p in names}
    neighbours = {p: sorted({q for k, ax in terms[p] for q in _others(spec, k, ax)}) for p in names}
    changes = dict.fromkeys(names, 0)  # how often each permutation has changed
    solved_with: dict[str, list[int]] = {}  # neighbours' change counts at p's last assignment
    cache: dict[tuple[str, int], _Contribution] = {}
    counts = {"sweeps": 0, "solved": 0, "skipped": 0, "lap_seconds": 0.0}
    for sweep in range(max_iter):
        counts["sweeps"] += 1
        improved = False
        for i in np.random.default_rng([seed, sweep]).permutation(len(names)):
            p = names[i]
            seen = [changes[q] for q in neighbours[p]]
            if solved_with.get(p) == seen:
                counts["skipped"] += 1
                continue
            n = len(perm[p])
            sim = np.zeros((n, n))
            for k, axis in terms[p]:
                c = cache.get((k, axis))
                if c is None:
                    c = cache[(k, axis)] = _Contribution(a[k], b[k], axis, _others(spec, k, axis))
                sim += c.update(perm)
            t0 = time.perf_counter()
            new = (
                _sparse_assignment(sim, perm[p].numpy())
                if n >= SPARSE_LAP_MIN
                else _assignment(sim)
            )
            counts["lap_seconds"] += time.perf_counter() - t0
            counts["solved"] += 1
            solved_with[p] = seen
            old_score = sim[np.arange(n), perm[p].numpy()].sum()
            new_score = sim[np.arange(n), new].sum()
            if new_score > old_score + 1e-12 * max(1.0, abs(old_score)):
                perm[p] = torch.from_numpy(new)
                changes[p] += 1
                improved = True
        if not improved:
            break
    if stats is not None:
        stats.update(counts, seconds=time.perf_counter() - t_start)
    return perm


def _others(spec: PermSpec, name: str, axis: int) -> list[str]:
    """The permutations acting on the axes of entry `name` other than `axis`."""
    return [q for ax, q in enumerate(spec.axes[name]) if q is not None and ax != axis]


class _Contribution:
    """One weight's term of one permutation's similarity, W_A W_B^T with W_B permuted on its
    other axis, kept between calls and updated only where that other permutation changed."""

    def __init__(self, wa: torch.Tensor, wb: torch.Tensor, axis: int, others: list[str]) -> None:
        if len(others) > 1:
            raise ValueError(f"a weight with {len(others) + 1} permuted axes is not supported")
        self.q = others[0] if others else None
        q_axis = [ax for ax in range(wa.dim()) if ax != axis][0] if self.q else None
        # rows: the units of p; columns: the units of q, then every other axis
        order = [
            axis,
            *([q_axis] if self.q else []),
            *(ax for ax in range(wa.dim()) if ax not in (axis, q_axis)),
        ]
        m = wa.shape[q_axis] if self.q else 1
        self.a = wa.permute(order).reshape(wa.shape[axis], m, -1)
        self.b = wb.permute(order).reshape(wb.shape[axis], m, -1)
        self.used: torch.Tensor | None = None  # the q permutation `value` was computed with
        self.value = np.zeros(0)

    def update(self, perm: Perm) -> np.ndarray:
        """The contribution under `perm` (float32), recomputed only where q's units moved."""
        n = self.a.shape[0]
        if self.q is None:
            if self.used is None:
                self.used = torch.zeros(0)
                self.value = (self.a.reshape(n, -1) @ self.b.reshape(n, -1).T).numpy()
            return self.value
        now = perm[self.q]
        if self.used is not None:
            moved = (now != self.used).nonzero().flatten()
            if len(moved) == 0:
                return self.value
            if 2 * len(moved) < len(now):  # a few units moved: add their difference
                da = self.a[:, moved].reshape(n, -1)
                db = (self.b[:, now[moved]] - self.b[:, self.used[moved]]).reshape(n, -1)
                self.value += (da @ db.T).numpy()
                self.used = now.clone()
                return self.value
        full_b = self.b[:, now].reshape(n, -1)
        self.value = (self.a.reshape(n, -1) @ full_b.T).numpy()
        self.used = now.clone()
        return self.value


@torch.no_grad()
def activation_matching(
    spec: PermSpec,
    model_a: nn.Module,
    model_b: nn.Module,
    x: torch.Tensor,
    batch_size: int = 500,
    similarity: str = "correlation",
) -> Perm:
    """Git Re-Basin's activation matching: match units by their activations on `x`.

    For each permutation, the cross-correlation (or the inner product) of A's and B's activations
    at the modules in `spec.acts`, accumulated over batches in float64 without storing them
    (conv layers: every pixel counts as a sample; residual streams: summed over their sites),
    then one linear assignment per permutation.
    """
    check_batch_size(batch_size)
    if len(x) == 0:
        raise ValueError("activation matching needs at least one input, got an empty x")
    if similarity not in ("correlation", "inner"):
        raise ValueError(f"similarity must be 'correlation' or 'inner', got {similarity!r}")
    check_same_architecture(model_a, model_b)
    sites = [s for p in spec.acts for s in spec.acts[p]]
    sums: dict[str, dict[str, torch.Tensor | float]] = {}
    model_a.eval()
    model_b.eval()
    for i in range(0, len(x), batch_size):
        xb = x[i : i + batch_size]
        with features.capture(model_a, sites) as fa, features.capture(model_b, sites) as fb:
            model_a(xb)
            model_b(xb)
            for s in sites:
                za, zb = (_samples(f[s]) for f in (fa, fb))
                acc = sums.setdefault(s, {"n": 0.0})
                for key, val in (
                    ("a", za.sum(0)),
                    ("b", zb.sum(0)),
                    ("aa", (za * za).sum(0)),
                    ("bb", (zb * zb).sum(0)),
                    ("ab", za.T @ zb),
                ):
                    acc[key] = acc[key] + val if key in acc else val
                acc["n"] += len(za)
    perm = {}
    for p, ss in spec.acts.items():
        sim = 0.0
        for s in ss:
            acc = sums[s]
            n = acc["n"]
            if similarity == "inner":
                sim = sim + acc["ab"] / n
                continue
            mean_a, mean_b = acc["a"] / n, acc["b"] / n
            cov = acc["ab"] / n - torch.outer(mean_a, mean_b)
            std_a = (acc["aa"] / n - mean_a**2).clamp_min(0).sqrt()
            std_b = (acc["bb"] / n - mean_b**2).clamp_min(0).sqrt()
            sim = sim + cov / (torch.outer(std_a, std_b) + 1e-12)
        perm[p] = torch.from_numpy(_assignment(sim.cpu().numpy()))
    return perm


def _samples(f: torch.Tensor) -> torch.Tensor:
    """(N, C) or (N, C, H, W) activations as float64 rows of C units (pixels become samples)."""
    f = f.double()
    return f.movedim(1, -1).reshape(-1, f.shape[1]) if f.dim() == 4 else f


def permuted(model: nn.Module, spec: PermSpec, perm: Perm) -> nn.Module:
    """A copy of `model` with `perm` applied (the same function, reordered units)."""
    out = copy.deepcopy(model)
    out.load_state_dict(apply(spec, perm, model.state_dict()))
    return out


def align(
    model_a: nn.Module,
    model_b: nn.Module,
    method: str = "wm",
    data: torch.Tensor | None = None,
    seed: int = 0,
    similarity: str = "inner",
) -> nn.Module:
    """Model B with its units permuted to match model A, by weight ("wm") or activation ("am") matching.

    Activation matching needs `data` (inputs). By default it maximises the inner product
    <H_A, P H_B>, i.e. minimises ||H_A - P H_B|| (the objective of the paper's Sec. 5.2 and of
    Git Re-Basin's MNIST MLP); `similarity="correlation"` matches Pearson correlations instead.
    The result computes the same function as B.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; valid: {', '.join(METHODS)}")
    check_same_architecture(model_a, model_b)
    spec = spec_for(model_a)
    if method == "wm":
        perm = weight_matching(spec, model_a.state_dict(), model_b.state_dict(), seed=seed)
    else:
        if data is None:
            raise ValueError("activation matching needs data: align(a, b, 'am', data=x)")
        perm = activation_matching(spec, model_a, model_b, data, similarity=similarity)
    return permuted(model_b, spec, perm).eval()
