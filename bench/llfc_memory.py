"""LLFC memory and time: llfc_utils' streaming metric against the authors' collect-everything approach.

Both sides measure the same thing on the same trained pair (the `cpu` profile MLP,
784-512-512-512-10 on Fashion-MNIST, an independent pair from `train.train_independent_pair`),
the same N test images and the same alphas: for every layer of `features.layers(model)` and
every alpha, the LLFC cosine dissimilarity between f_l(theta_alpha) (theta_alpha =
alpha * theta_A + (1 - alpha) * theta_B, as `interpolate.lerp` builds it) and alpha * f_l(theta_A) + (1 - alpha) * f_l(theta_B), over the
whole (N, D) block and as a per-sample mean, and the A-vs-B dissimilarity as a reference.

* ours: `llfc_utils.metrics.llfc(..., batch_size=500, progress=False)`, called as a user would:
  it streams over batches of the inputs and keeps a few float64 running sums per (layer, alpha),
  so its memory does not grow with N (how it schedules the interpolated nets is its business;
  the bench only calls it).
* baseline: the authors' code (zzp1012/LLFC, scripts/LLFC.py with src/utils/featuremap.py and
  src/utils/dissimilarity.py), re-implemented faithfully: a FeatureMap hooks every layer,
  keeps the outputs of ALL N samples (batches of 128, their default `--bs`) on the CPU in
  float32 and concatenates them, for model A, model B and the interpolated model; then per
  layer `featuremap_int = alpha * A + beta * B` (float32) and `DissimilarityMetric("cosine")`
  (1 - |<A,B>| / (|A| |B|) on the whole block, `.double()` copies) and
  `DissimilarityMetricOverSamples("cosine")` (per-row inner products and norms, 1 - |ip| / (nA nB),
  coef = ip / nB^2), for alpha-vs-int and for A-vs-B. Their script handles one alpha per run, so
  the loop over alphas re-collects the interpolated model's features for each alpha and keeps
  A's and B's (the previous alpha's features are freed first, as a fresh run would). The per-sample
  tensors they `torch.save` per layer are computed (with their mean and std) but not written.

The bench checks that both give the same numbers (per layer and alpha, block cosine distance and
per-sample mean within 1e-6; also the A-vs-B reference) and prints the largest difference.

Memory. Each measurement runs in a fresh process (this file with `--worker {ours,baseline}`),
which loads the cached pair and the data, runs one forward of a few samples (one-time library
set-up), collects garbage, returns freed heap to the OS (`malloc_trim`) and reads its resident set
size (VmRSS): the *post-load RSS*. It then resets the kernel's peak-RSS mark (writing 5 to
/proc/self/clear_refs, which `getrusage` honours; checked, and flagged if it did not take), runs
the metric and reads the peak with `resource.getrusage(RUSAGE_SELF).ru_maxrss`. Reported:
the total peak RSS in MB, and the increment of the peak over the post-load RSS, which is the
metric's own memory and the number used as `*_peak_mb` (and in `ratio_memory`), so that the
Python interpreter, torch, the two models and the input images, common to both sides, do not
dominate the comparison. Without the reset, the peak would include any transient of the loading
phase (without /proc, e.g. on macOS, that is what happens, and the increment is a lower bound).
The heap allocator makes the increment of one run noisy: glibc's main heap sometimes fragments
and keeps 20 to 30 MB of freed memory resident (ours reads about 35 MB in most runs at
N = 10000 and about 60 MB in some, at any N; mallinfo shows the difference as free heap, not live
tensors), and the machine's load makes times noisy. So each run is repeated `--repeats` times
(default 3), interleaved, each in its own fresh process; the memory reported is that of the
repetition with the smallest increment (what the computation itself needs, with the allocator's
slack least in the way; the same rule for both sides), the time is the median, and the table
shows min and max of both.
Time is the wall time of the metric computation only (building the interpolated models
included, loading excluded). For N larger than the test split (the 4N run) the test images are
tiled (repeated); the output says so. Runs: ours at N, baseline at N, ours at 4N. Goals (not
asserted): ratio_memory <= 0.1, ratio_time <= 1, ours at 4N within 10 % of ours at N.

This is a measurement, not a test: it prints a table and, as its last line, one JSON object.
It exits with status 1 only if ours and the baseline disagree.

    .venv/bin/python bench/llfc_memory.py [--n 10000] [--alphas 11 | --alphas 0,0.5,1]
                                          [--profile cpu|smoke] [--repeats 3]
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # torch is imported by the workers only: the parent process stays small
    import torch
    from torch import nn

BASELINE_BS = 128  # the authors' default --bs in scripts/LLFC.py
OURS_BS = 500
TOL = 1e-6
PAIR_SEEDS = (1, 2)  # train.train_independent_pair's default


# ---------------------------------------------------------------- memory probes


def rss_mb() -> float:
    """The current resident set size of this process in MB (VmRSS; the peak so far if no /proc)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return maxrss_mb()


def maxrss_mb() -> float:
    """The peak resident set size of this process in MB, from getrusage (KB on Linux, B on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024


def trim_heap() -> None:
    """Hand freed malloc memory back to the OS where glibc allows it (a no-op elsewhere)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def reset_peak() -> bool:
    """Reset the kernel's peak-RSS mark to the current RSS; True if getrusage now reflects it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return maxrss_mb() <= rss_mb() + 1.0


# ---------------------------------------------------------------- the baseline (authors' code)


class FeatureMap:
    """The authors' FeatureMap: hook every layer, keep every batch's output on the CPU, concatenate."""

    def __init__(self, model: nn.Module) -> None:
        """Wrap `model` (put in eval mode)."""
        self.model = model.eval()
        self.featuremaps: dict[str, list[torch.Tensor]] = defaultdict(list)
        self.hooks: dict[str, Any] = {}

    def get_featuremaps(
        self, x: torch.Tensor, layer_names: Sequence[str], bs: int
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        """({layer: (N, ...) float32 outputs for all of x}, predictions), batch size `bs`."""
        import torch

        self.featuremaps = defaultdict(list)
        mods = dict(self.model.named_modules())
        for name in layer_names:

            def forward_hook(_m: nn.Module, _inp: Any, output: torch.Tensor, name: str = name):
                self.featuremaps[name].append(output.detach().cpu())

            self.hooks[name] = mods[name].register_forward_hook(forward_hook)
        preds: list[Any] = []
        with torch.no_grad():
            for i in range(0, len(x), bs):
                outputs = self.model(x[i : i + bs])
                assert len(outputs.shape) == 2
                preds.extend(outputs.argmax(dim=-1).detach().cpu().numpy())
        featuremaps = {k: torch.cat(v, dim=0) for k, v in self.featuremaps.items()}
        self.featuremaps = defaultdict(list)
        for h in self.hooks.values():
            h.remove()
        self.hooks = {}
        return featuremaps, torch.tensor(np.array(preds))


def dissimilarity(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' DissimilarityMetric("cosine") with get_coef: (1 - |<A,B>|/(|A||B|), <A,B>/|B|^2)."""
    import torch

    assert a.shape == b.shape
    a = a.view(a.shape[0], -1).double()
    b = b.view(b.shape[0], -1).double()
    inner_product = torch.sum(a * b)
    a_norm = torch.norm(a, p="fro")
    b_norm = torch.norm(b, p="fro")
    dist = 1 - torch.abs(inner_product) / (a_norm * b_norm)
    coef = inner_product / (b_norm**2)
    assert torch.abs(inner_product) <= a_norm * b_norm * (1 + 1e-10)
    return dist, coef


def dissimilarity_over_samples(
    a: torch.Tensor, b: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """The authors' DissimilarityMetricOverSamples("cosine") with get_coef: per-row (dist, coef)."""
    import torch

    assert a.shape == b.shape
    a = a.view(a.shape[0], -1).double()
    b = b.view(b.shape[0], -1).double()
    inner_product = torch.sum(a * b, dim=-1)
    a_norm = torch.norm(a, p="fro", dim=-1)
    b_norm = torch.norm(b, p="fro", dim=-1)
    dist = 1 - torch.abs(inner_product) / (a_norm * b_norm)
    coef = inner_product / (b_norm**2)
    return dist, coef


def eval_linearity(
    featuremaps: dict[str, dict[str, torch.Tensor]], alpha: float, beta: float
) -> list[dict[str, Any]]:
    """The authors' eval_linearity for one alpha: one row of numbers per layer (nothing saved)."""
    rows = []
    for layer_name in featuremaps["A"]:
        featuremap_a = featuremaps["A"][layer_name]
        featuremap_b = featuremaps["B"][layer_name]
        featuremap_alpha = featuremaps["alpha"][layer_name]
        featuremap_int = alpha * featuremap_a + beta * featuremap_b
        dist_a_b, coef_a_b = dissimilarity(featuremap_a.cpu(), featuremap_b.cpu())
        dist_alpha_int, coef_alpha_int = dissimilarity(featuremap_alpha.cpu(), featuremap_int.cpu())
        dist_a_b_s, coef_a_b_s = dissimilarity_over_samples(featuremap_a.cpu(), featuremap_b.cpu())
        dist_alpha_int_s, coef_alpha_int_s = dissimilarity_over_samples(
            featuremap_alpha.cpu(), featuremap_int.cpu()
        )
        rows.append(
            {
                "layer": layer_name,
                "dist_A_B": dist_a_b.item(),
                "coef_A_B": coef_a_b.item(),
                "dist_alpha_int": dist_alpha_int.item(),
                "coef_alpha_int": coef_alpha_int.item(),
                "dist_A_B_over_samples_mean": dist_a_b_s.mean().item(),
                "coef_A_B_over_samples_mean": coef_a_b_s.mean().item(),
                "dist_alpha_int_over_samples_mean": dist_alpha_int_s.mean().item(),
                "coef_alpha_int_over_samples_mean": coef_alpha_int_s.mean().item(),
                "dist_A_B_over_samples_std": dist_a_b_s.std().item(),
                "coef_A_B_over_samples_std": coef_a_b_s.std().item(),
                "dist_alpha_int_over_samples_std": dist_alpha_int_s.std().item(),
                "coef_alpha_int_over_samples_std": coef_alpha_int_s.std().item(),
            }
        )
    return rows


def baseline_alpha(
    model_a: nn.Module,
    model_b: nn.Module,
    fm_ab: dict[str, dict[str, torch.Tensor]],
    x: torch.Tensor,
    layers: Sequence[str],
    alpha: float,
) -> list[dict[str, Any]]:
    """One run of the authors' script at `alpha`, reusing A's and B's collected features."""
    from llfc_utils.interpolate import lerp

    model = lerp(model_a, model_b, alpha)
    fm_alpha, _ = FeatureMap(model).get_featuremaps(x, layers, BASELINE_BS)
    return eval_linearity({**fm_ab, "alpha": fm_alpha}, alpha, 1.0 - alpha)


def run_baseline(
    model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, alphas: Sequence[float]
) -> dict[str, Any]:
    """The authors' approach over all alphas, as {layers, cos_dist, per_sample, ab_*} lists."""
    from llfc_utils import features

    layers = features.layers(model_a)
    fm_ab = {
        "A": FeatureMap(model_a).get_featuremaps(x, layers, BASELINE_BS)[0],
        "B": FeatureMap(model_b).get_featuremaps(x, layers, BASELINE_BS)[0],
    }
    per_alpha = [baseline_alpha(model_a, model_b, fm_ab, x, layers, a) for a in alphas]
    return {
        "layers": layers,
        "cos_dist": {
            l: [rows[i]["dist_alpha_int"] for rows in per_alpha] for i, l in enumerate(layers)
        },
        "per_sample": {
            l: [rows[i]["dist_alpha_int_over_samples_mean"] for rows in per_alpha]
            for i, l in enumerate(layers)
        },
        "ab_cos_dist": {l: per_alpha[0][i]["dist_A_B"] for i, l in enumerate(layers)},
        "ab_per_sample": {
            l: per_alpha[0][i]["dist_A_B_over_samples_mean"] for i, l in enumerate(layers)
        },
    }


def run_ours(
    model_a: nn.Module, model_b: nn.Module, x: torch.Tensor, alphas: Sequence[float]
) -> dict[str, Any]:
    """`metrics.llfc` (streaming), as {layers, cos_dist, per_sample, ab_*} lists."""
    from llfc_utils import metrics

    out = metrics.llfc(model_a, model_b, x, alphas, batch_size=OURS_BS, progress=False)
    return {
        "layers": out["layers"],
        "cos_dist": out["cos_dist"],
        "per_sample": out["cos_dist_per_sample"],
        "ab_cos_dist": out["baseline_cos_dist"],
        "ab_per_sample": out["baseline_cos_dist_per_sample"],
    }


# ---------------------------------------------------------------- workers (fresh processes)


def load_pair(profile: str) -> tuple[nn.Module, nn.Module, Any]:
    """The cached (or freshly trained) independent MLP pair of `profile` on the CPU, and its config."""
    from llfc_utils import config, train

    cfg = config.get(profile, "mlp")
    model_a, model_b, _, _ = train.train_independent_pair(cfg, seeds=PAIR_SEEDS, device="cpu")
    return model_a, model_b, cfg


def test_inputs(cfg: Any, n: int) -> tuple[torch.Tensor, int, int]:
    """The first `n` test images, tiled if the split is smaller: (x, split size, repeats)."""
    from llfc_utils import train

    x, _ = train.dataset(cfg, "test", "cpu")
    split = len(x)
    reps = math.ceil(n / split)
    if reps > 1:
        x = x.repeat(reps, *([1] * (x.dim() - 1)))
    return x[:n].contiguous(), split, reps


def worker(method: str, n: int, alphas: Sequence[float], profile: str) -> dict[str, Any]:
    """Load pair and data, then measure one method's peak memory and time; return a JSON-ready dict."""
    import torch

    model_a, model_b, cfg = load_pair(profile)
    x, split, reps = test_inputs(cfg, n)
    with torch.no_grad():  # one-time library set-up (thread pools, kernels) outside the metric
        model_a(x[:8])
    gc.collect()
    trim_heap()
    rss_load = rss_mb()
    maxrss_load = maxrss_mb()
    reset_ok = reset_peak()
    run = run_ours if method == "ours" else run_baseline
    t0 = time.perf_counter()
    result = run(model_a, model_b, x, alphas)
    seconds = time.perf_counter() - t0
    peak_total = maxrss_mb()
    fcs = [m for m in model_a.modules() if isinstance(m, torch.nn.Linear)]
    arch = "-".join(str(d) for d in [fcs[0].in_features, *(m.out_features for m in fcs)])
    return {
        "method": method,
        "n": n,
        "split": split,
        "tiled": reps,
        "arch": arch,
        "threads": torch.get_num_threads(),
        "rss_load_mb": rss_load,
        "maxrss_load_mb": maxrss_load,
        "peak_reset": reset_ok,
        "peak_total_mb": peak_total,
        "peak_mb": peak_total - rss_load,
        "seconds": seconds,
        **result,
    }


def prepare(profile: str) -> None:
    """Train (or find in the cache) the pair, so that no measured worker trains."""
    load_pair(profile)


# ---------------------------------------------------------------- parent


def spawn(method: str, n: int, alphas: Sequence[float], profile: str) -> dict[str, Any]:
    """Run one worker in a fresh interpreter and parse the JSON line it prints last."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", method, "--n", str(n)]
    cmd += ["--alphas", ",".join(repr(float(a)) for a in alphas), "--profile", profile]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout + proc.stderr)
        sys.exit(f"llfc_memory: worker {method} (n={n}) failed with status {proc.returncode}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def max_diff(ours: dict[str, Any], base: dict[str, Any]) -> dict[str, float]:
    """Largest |ours - baseline| of the LLFC block and per-sample distances and the A-vs-B ones.

    Also "nonfinite": how many compared numbers are NaN or infinite on either side (the authors'
    per-sample cosine gives NaN for an all-zero feature row); each makes its difference inf.
    """
    out = {"cos_dist": 0.0, "per_sample": 0.0, "ab": 0.0, "nonfinite": 0}
    if ours["layers"] != base["layers"]:
        return {**dict.fromkeys(out, math.inf), "nonfinite": 0}

    def note(key: str, x: float, y: float) -> None:
        if not (math.isfinite(x) and math.isfinite(y)):
            out["nonfinite"] += 1
            out[key] = math.inf
        else:
            out[key] = max(out[key], abs(x - y))

    for l in ours["layers"]:
        for key in ("cos_dist", "per_sample"):
            for x, y in zip(ours[key][l], base[key][l], strict=True):
                note(key, x, y)
        for key in ("ab_cos_dist", "ab_per_sample"):
            note("ab", ours[key][l], base[key][l])
    return out


def parse_alphas(text: str) -> list[float]:
    """`11` -> np.linspace(0, 1, 11); `0,0.5,1` -> those values (each in [0, 1])."""
    if "," in text:
        alphas = [float(a) for a in text.split(",") if a.strip()]
    else:
        k = int(text)
        if k < 1:
            raise argparse.ArgumentTypeError(f"need at least one alpha, got {k}")
        alphas = [float(a) for a in np.linspace(0.0, 1.0, k)]
    if not alphas or not all(0.0 <= a <= 1.0 for a in alphas):
        raise argparse.ArgumentTypeError(f"alphas must lie in [0, 1], got {text!r}")
    return alphas


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    """The command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=10_000, help="test samples (default 10000)")
    p.add_argument(
        "--alphas",
        type=parse_alphas,
        default=parse_alphas("11"),
        help="a count k (np.linspace(0, 1, k), default 11) or comma-separated values",
    )
    p.add_argument("--profile", default="cpu", choices=("cpu", "smoke"), help="the MLP's profile")
    p.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="fresh-process repetitions of each run (default 3): smallest peak, median time",
    )
    p.add_argument("--worker", choices=("ours", "baseline", "prepare"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.n < 1:
        p.error(f"--n must be >= 1, got {args.n}")
    if args.repeats < 1:
        p.error(f"--repeats must be >= 1, got {args.repeats}")
    return args


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Memory from the repetition with the smallest peak increment, time as the median.

    Adds "peak_range" and "seconds_range" (min, max) over the repetitions.
    """
    best = min(runs, key=lambda r: r["peak_mb"])
    return {
        **best,
        "seconds": statistics.median(r["seconds"] for r in runs),
        "peak_reset": all(r["peak_reset"] for r in runs),
        "peak_range": (min(r["peak_mb"] for r in runs), max(r["peak_mb"] for r in runs)),
        "seconds_range": (min(r["seconds"] for r in runs), max(r["seconds"] for r in runs)),
    }


def data_note(r: dict[str, Any]) -> str:
    """Which images a run used, in words."""
    if r["n"] < r["split"]:
        return f"first {r['n']} of the test split"
    if r["tiled"] == 1:
        return f"test split ({r['split']})"
    return f"test split tiled x{r['tiled']}"


def main(argv: list[str] | None = None) -> int:
    """Run the three measurements in fresh processes, print the table, then the JSON line."""
    args = parse_args(argv)
    if args.worker == "prepare":
        prepare(args.profile)
        return 0
    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.alphas, args.profile)))
        return 0

    n, alphas = args.n, args.alphas
    print(f"llfc_memory: preparing the {args.profile} MLP pair (trained once, then cached) ...")
    me = [sys.executable, os.path.abspath(__file__)]
    prep = subprocess.run([*me, "--worker", "prepare", "--profile", args.profile])
    if prep.returncode != 0:
        sys.exit(f"llfc_memory: could not train or load the pair (status {prep.returncode})")
    plan = (("ours", n), ("baseline", n), ("ours", 4 * n))
    runs: list[list[dict[str, Any]]] = [[] for _ in plan]
    for _ in range(args.repeats):  # interleaved, so drift in the machine's load hits all alike
        for k, (method, size) in enumerate(plan):
            runs[k].append(spawn(method, size, alphas, args.profile))
    ours, base, ours4 = (summarise(r) for r in runs)

    ratio_memory = ours["peak_mb"] / base["peak_mb"] if base["peak_mb"] > 0 else math.nan
    ratio_time = ours["seconds"] / base["seconds"]
    growth = ours4["peak_mb"] / ours["peak_mb"] if ours["peak_mb"] > 0 else math.nan
    diffs = [max_diff(o, b) for o, b in zip(runs[0], runs[1], strict=True)]
    diff = {k: max(d[k] for d in diffs) for k in diffs[0]}
    agree = max(diff["cos_dist"], diff["per_sample"], diff["ab"]) <= TOL

    print(
        f"llfc_memory: {args.profile} mlp {ours['arch']}, independent pair (seeds "
        f"{PAIR_SEEDS[0]}, {PAIR_SEEDS[1]}), {len(ours['layers'])} layers x {len(alphas)} alphas "
        f"({', '.join(f'{a:g}' for a in alphas)}), {ours['threads']} torch threads; "
        f"ours batch {OURS_BS}, baseline batch {BASELINE_BS}"
    )
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else math.nan
    busy = (
        " (more than the cores: other processes compete, timings are noisy)" if load > cores else ""
    )
    print(f"machine: {cores} cores, 1-min load average {load:.1f} at the end{busy}")
    print(
        "peak +MB: peak RSS during the metric minus the RSS right after loading pair and data "
        "(the metric's own memory); each run is a fresh process"
    )
    if args.repeats > 1:
        print(
            f"{args.repeats} repetitions: memory of the one with the smallest peak +MB, median "
            "time; [min-max] over the repetitions in brackets"
        )
    header = (
        f"{'run':<20}{'N':>7}{'peak +MB':>10}{'[min-max]':>14}{'peak MB':>9}{'load MB':>9}"
        f"{'seconds':>9}{'[min-max]':>14}  data"
    )
    print(header)
    print("-" * len(header))
    for name, r in (
        ("ours (streaming)", ours),
        ("baseline (authors)", base),
        ("ours (streaming)", ours4),
    ):
        flag = "" if r["peak_reset"] else "  (peak not reset: +MB is a lower bound)"
        lo, hi = r["peak_range"]
        slo, shi = r["seconds_range"]
        print(
            f"{name:<20}{r['n']:>7}{r['peak_mb']:>10.1f}{f'[{lo:.1f}-{hi:.1f}]':>14}"
            f"{r['peak_total_mb']:>9.1f}{r['rss_load_mb']:>9.1f}{r['seconds']:>9.2f}"
            f"{f'[{slo:.1f}-{shi:.1f}]':>14}  {data_note(r)}{flag}"
        )
    if ours4["tiled"] > 1:
        print(
            f"note: the {4 * n} images of the 4N run are the {ours4['split']} test images "
            f"repeated {ours4['tiled']} times (the split has no more)"
        )
    print(
        f"memory ours/baseline {ratio_memory:.3f} (goal <= 0.1); time ours/baseline "
        f"{ratio_time:.2f} (goal <= 1); ours peak +MB at 4N / at N {growth:.2f} (goal within 10 %)"
    )
    print(
        f"agreement over {len(ours['layers'])} layers x {len(alphas)} alphas: max |ours - baseline| "
        f"block cos dist {diff['cos_dist']:.2e}, per-sample mean {diff['per_sample']:.2e}, "
        f"A-vs-B {diff['ab']:.2e} (tolerance {TOL:g}): {'OK' if agree else 'MISMATCH'}"
    )
    if diff["nonfinite"]:
        print(f"  {diff['nonfinite']} compared value(s) are NaN/inf (see max_diff's docstring)")
    result = {
        "bench": "llfc_memory",
        "n": n,
        "ours_peak_mb": round(ours["peak_mb"], 1),
        "baseline_peak_mb": round(base["peak_mb"], 1),
        "ratio_memory": round(ratio_memory, 4),
        "ours_s": round(ours["seconds"], 3),
        "baseline_s": round(base["seconds"], 3),
        "ratio_time": round(ratio_time, 3),
        "ours_peak_mb_4n": round(ours4["peak_mb"], 1),
    }
    print(json.dumps(result))
    return 0 if agree else 1


if __name__ == "__main__":
    sys.exit(main())
