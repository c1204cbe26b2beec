"""Weight matching: llfc_utils.permute against Git Re-Basin's reference algorithm, on random pairs.

For each net (the MLP 784-512-512-512-10; VGG-16 with BN and the authors' 4096-wide classifier;
ResNet-20 with conv shortcuts at width 1 and 4) two independently initialised models are matched
by both implementations, interleaved, best of `--repeats`:

* ours: `llfc_utils.permute.weight_matching` (skips a permutation whose neighbours did not change,
  keeps each weight's contribution and updates it where a neighbour moved, float32 products).
* reference: `reference_weight_matching` below, a line-by-line numpy port of
  samuela/git-re-basin `src/weight_matching.py` (float32 like the JAX original, every
  permutation re-solved in every sweep, `perm[p] = ci` after each assignment, progress when
  `newL > oldL + 1e-12`). One deviation, which only makes the reference faster: oldL and newL
  are read off the similarity by indexing instead of a dot product with a dense n x n permutation
  matrix.

Both visit the permutations in the same seeded order per sweep (`sweep_order`), so they walk the
same path and the objectives can be compared. Reported per net and implementation: seconds in
all, seconds per sweep, sweeps, the share of time spent in the linear assignment
(`lap_fraction`), and the objective gain over the identity, sum_l <W_A, P W_B> - sum_l <W_A, W_B>,
as a ratio ours / reference.

This is a measurement, not a test: it prints a table and, as its last line, one JSON object
`{"bench": "weight_matching", "seconds": {...}, "lap_fraction": {...}, "iterations": {...}, ...}`.

    PYTHONPATH=. .venv/bin/python bench/weight_matching.py [--models mlp,vgg16] [--repeats 1]

`--max-iter k` stops both after k sweeps (a quick look; it favours the reference, whose sweeps
all cost the same, while ours get cheaper as fewer units move).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

from llfc_utils import models, permute

NETS = {
    "mlp": ("mlp", {}, 1, 28),
    "vgg16": ("vgg16", {"norm": "bn", "init": "authors"}, 3, 32),
    "resnet20_w1": ("resnet20", {"width": 1, "norm": "bn", "shortcut": "conv"}, 3, 32),
    "resnet20_w4": ("resnet20", {"width": 4, "norm": "bn", "shortcut": "conv"}, 3, 32),
}


def sweep_order(seed: int, sweep: int, n: int) -> np.ndarray:
    """The order in which both implementations visit the n permutations in `sweep`."""
    return np.random.default_rng([seed, sweep]).permutation(n)


def reference_weight_matching(
    perm_to_axes: Mapping[str, list[tuple[str, int]]],
    axes_to_perm: Mapping[str, tuple[str | None, ...]],
    params_a: Mapping[str, np.ndarray],
    params_b: Mapping[str, np.ndarray],
    max_iter: int = 100,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """Git Re-Basin's `weight_matching`, ported to numpy; returns (perm, stats)."""
    t_start = time.perf_counter()

    def get_permuted_param(perm, k, params, except_axis=None):
        w = params[k]
        for axis, p in enumerate(axes_to_perm[k]):
            if axis == except_axis:
                continue
            if p is not None:
                w = np.take(w, perm[p], axis=axis)
        return w

    perm_sizes = {p: params_a[axes[0][0]].shape[axes[0][1]] for p, axes in perm_to_axes.items()}
    perm = {p: np.arange(n) for p, n in perm_sizes.items()}
    perm_names = sorted(perm)
    stats = {"sweeps": 0, "solved": 0, "lap_seconds": 0.0}
    for iteration in range(max_iter):
        stats["sweeps"] += 1
        progress = False
        for p_ix in sweep_order(seed, iteration, len(perm_names)):
            p = perm_names[p_ix]
            n = perm_sizes[p]
            A = np.zeros((n, n), dtype=np.float32)
            for wk, axis in perm_to_axes[p]:
                w_a = params_a[wk]
                w_b = get_permuted_param(perm, wk, params_b, except_axis=axis)
                w_a = np.moveaxis(w_a, axis, 0).reshape((n, -1))
                w_b = np.moveaxis(w_b, axis, 0).reshape((n, -1))
                A += w_a @ w_b.T
            t0 = time.perf_counter()
            ri, ci = linear_sum_assignment(A, maximize=True)
            stats["lap_seconds"] += time.perf_counter() - t0
            stats["solved"] += 1
            assert (ri == np.arange(len(ri))).all()
            oldL = A[np.arange(n), perm[p]].sum()
            newL = A[np.arange(n), ci].sum()
            progress = progress or newL > oldL + 1e-12
            perm[p] = np.array(ci)
        if not progress:
            break
    stats["seconds"] = time.perf_counter() - t_start
    return perm, stats


def random_pair(name: str) -> tuple[permute.PermSpec, dict, dict]:
    """The spec and the state dicts of two independently initialised copies of net `name`."""
    arch, kw, channels, size = NETS[name]
    states = []
    for seed in (1, 2):
        torch.manual_seed(seed)
        net = models.build(arch, in_channels=channels, image_size=size, **kw)
        states.append({k: v.detach() for k, v in net.state_dict().items()})
    return permute.spec_for(net), states[0], states[1]


def reference_inputs(spec: permute.PermSpec, state: Mapping[str, torch.Tensor]):
    """The reference's (perm_to_axes, axes_to_perm, params): parameters only, float32 numpy."""
    stats = ("running_mean", "running_var", "num_batches_tracked")
    params = {k: state[k].float().numpy() for k in spec.axes if not k.endswith(stats)}
    axes_to_perm = {k: spec.axes[k] for k in params}
    perm_to_axes: dict[str, list[tuple[str, int]]] = {}
    for k, ps in axes_to_perm.items():
        for axis, p in enumerate(ps):
            if p is not None:
                perm_to_axes.setdefault(p, []).append((k, axis))
    return perm_to_axes, axes_to_perm, params


def objective(spec: permute.PermSpec, a: dict, b: dict, perm: permute.Perm) -> float:
    """sum over parameters of <W_A, P W_B>, in float64."""
    pb = permute.apply(spec, perm, b)
    stats = ("running_mean", "running_var", "num_batches_tracked")
    return sum(
        float((a[k].double() * pb[k].double()).sum()) for k in spec.axes if not k.endswith(stats)
    )


def run(name: str, repeats: int, max_iter: int = 100) -> dict:
    """Both implementations on net `name`, interleaved; the best time of each and the objectives."""
    spec, a, b = random_pair(name)
    pta, atp, pa = reference_inputs(spec, a)
    _, _, pb = reference_inputs(spec, b)
    ours_best, ref_best = None, None
    for _ in range(repeats):
        st: dict = {}
        perm = permute.weight_matching(spec, a, b, max_iter=max_iter, stats=st)
        if ours_best is None or st["seconds"] < ours_best[1]["seconds"]:
            ours_best = (perm, st)
        ref_perm, rst = reference_weight_matching(pta, atp, pa, pb, max_iter=max_iter)
        if ref_best is None or rst["seconds"] < ref_best[1]["seconds"]:
            ref_best = ({p: torch.from_numpy(v) for p, v in ref_perm.items()}, rst)
    base = objective(spec, a, b, permute.identity(spec, a))
    gain_ours = objective(spec, a, b, ours_best[0]) - base
    gain_ref = objective(spec, a, b, ref_best[0]) - base
    return {"ours": ours_best[1], "reference": ref_best[1], "gain_ratio": gain_ours / gain_ref}


def main(argv: list[str] | None = None) -> int:
    """Run the nets asked for, print the table, then the JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(NETS), help=f"comma-separated, from {list(NETS)}")
    p.add_argument("--repeats", type=int, default=1, help="runs per implementation; best kept")
    p.add_argument("--max-iter", type=int, default=100, help="at most this many sweeps")
    p.add_argument("--threads", type=int, default=2, help="torch threads")
    args = p.parse_args(argv)
    names = args.models.split(",")
    unknown = [n for n in names if n not in NETS]
    if unknown or args.repeats < 1:
        p.error(f"unknown model(s) {unknown}; valid: {list(NETS)}; --repeats must be >= 1")
    torch.set_num_threads(args.threads)
    seconds, lap, iters, per_sweep, gains, speedup = {}, {}, {}, {}, {}, {}
    header = (
        f"{'net':<13}{'impl':<11}{'seconds':>9}{'sweeps':>8}{'s/sweep':>9}{'solved':>8}{'lap':>7}"
    )
    print(f"weight_matching: random pairs, {args.threads} threads, best of {args.repeats}")
    print(header + f"{'gain ours/ref':>15}")
    print("-" * (len(header) + 15))
    for name in names:
        r = run(name, args.repeats, args.max_iter)
        for impl in ("ours", "reference"):
            st = r[impl]
            key = f"{name}/{impl}"
            seconds[key] = round(st["seconds"], 3)
            iters[key] = st["sweeps"]
            lap[key] = round(st["lap_seconds"] / st["seconds"], 3)
            per_sweep[key] = round(st["seconds"] / st["sweeps"], 4)
            tail = f"{r['gain_ratio']:>15.6f}" if impl == "ours" else ""
            print(
                f"{name:<13}{impl:<11}{st['seconds']:>9.2f}{st['sweeps']:>8}"
                f"{per_sweep[key]:>9.3f}{st['solved']:>8}{lap[key]:>7.2f}{tail}"
            )
        gains[name] = round(r["gain_ratio"], 6)
        speedup[name] = round(per_sweep[f"{name}/reference"] / per_sweep[f"{name}/ours"], 2)
    print(
        "per-sweep speed-up ours/reference: " + ", ".join(f"{k} {v}x" for k, v in speedup.items())
    )
    result = {
        "bench": "weight_matching",
        "seconds": seconds,
        "lap_fraction": lap,
        "iterations": iters,
        "seconds_per_sweep": per_sweep,
        "speedup_per_sweep": speedup,
        "gain_ratio": gains,
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
