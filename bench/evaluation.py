"""Evaluation cost: the chapters' measurements, today's code against an older revision of it.

On a trained pair of each `cpu` role (the spawned pair of chapter 02: MLP k = 2, CNN k = 3, first
replicate; trained or read from the cache by today's code), times what the chapters call:
`interpolate.lmc_curve` (11 alphas on the role's test set; with a BatchNorm reset on 2,000 train
images for a BN net), `metrics.llfc` (11 alphas, and alpha = 0.5 alone), `metrics.weak_additivity`,
`metrics.commutativity`, `metrics.theorem1` and `permute.align` (WM; AM on 5,000 train images).

Both sides run in fresh processes (this file with `--worker`), the baseline from `git archive` of
`--baseline` (default edaf20e, the code before issue 22's evaluation work), today's from this
checkout, one after the other per role, on the same weights (saved once by this process) and the
same data, best of `--repeats`. Reported per case: seconds of each, the ratio new / old, and the
largest difference between any two numbers the two return (`max_diff`: |new - old| / max(|old|,
1e-6) over every float of the result; for `align`, over a checksum of each aligned tensor): what
"the same numbers up to float rounding" means here.

This is a measurement, not a test: it prints a table and, as its last line, one JSON object
`{"bench": "evaluation", "seconds": {...}, "ratio": {...}, "max_diff": {...}}`.

Measured here (2 idle cores, best of 1, against edaf20e): CNN llfc 11 alphas 11.7 -> 5.9 s
(0.51x), alpha 0.5 alone 0.62x, weak additivity 0.49x, commutativity 0.21x, theorem1 0.71x; MLP
llfc 0.81x, commutativity 0.67x, the others 0.9-1.0x (lmc_curve and align unchanged, within
+-20 % run-to-run noise); largest difference 3.3e-9 (theorem1), float64 rounding elsewhere.

    PYTHONPATH=. .venv/bin/python bench/evaluation.py [--roles mlp,cnn] [--repeats 2]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
SPAWN = {"mlp": 2, "cnn": 3}
ALPHAS = [i / 10 for i in range(11)]


def cases(role: str) -> dict:
    """name -> function of (a, b, data) for the measurements of `role` (imported in the worker)."""
    from llfc_utils import interpolate, metrics, permute

    out = {
        "lmc_curve": lambda a, b, d: interpolate.lmc_curve(a, b, {"test": d["test"]}, ALPHAS),
        "llfc": lambda a, b, d: metrics.llfc(a, b, d["test"][0], ALPHAS),
        "llfc_half": lambda a, b, d: metrics.llfc(a, b, d["test"][0], [0.5]),
        "weak_additivity": lambda a, b, d: metrics.weak_additivity(a, b, d["test"][0]),
        "commutativity": lambda a, b, d: metrics.commutativity(a, b, d["test"][0]),
        "theorem1": lambda a, b, d: metrics.theorem1(a, b, d["test"][0]),
        "align_wm": lambda a, b, d: permute.align(a, b, "wm"),
        "align_am": lambda a, b, d: permute.align(a, b, "am", data=d["train"][:5000]),
    }
    if role == "cnn":
        out["lmc_curve_bn_reset"] = lambda a, b, d: interpolate.lmc_curve(
            a, b, {"test": d["test"]}, ALPHAS, bn_reset=d["train"][:2000]
        )
    return out


def numbers(result: object) -> list[float]:
    """Every float of a result, in a fixed order (a model: one checksum per state tensor)."""
    if isinstance(result, torch.nn.Module):
        return [float(v.double().sum()) for v in result.state_dict().values()]
    if isinstance(result, dict):
        return [v for k in result for v in numbers(result[k])]
    if isinstance(result, (list, tuple)):
        return [v for r in result for v in numbers(r)]
    return [float(result)] if isinstance(result, (int, float)) else []


def worker(role: str, weights: str, repeats: int, subset: int | None) -> None:
    """Run every case of `role` on the saved pair; print {case: {"seconds", "numbers"}} as JSON."""
    from llfc_utils import config, train

    cfg = config.profile("cpu")[role]
    saved = torch.load(weights, weights_only=True)
    a, b = (train.build_model(cfg, 0) for _ in range(2))
    a.load_state_dict(saved["a"])
    b.load_state_dict(saved["b"])
    (xt, yt), (x, _) = train.dataset(cfg, "test"), train.dataset(cfg, "train")
    data = {"test": (xt[:subset], yt[:subset]), "train": x[:subset]}
    out = {}
    for name, fn in cases(role).items():
        best = math.inf
        for _ in range(repeats):
            t0 = time.perf_counter()
            result = fn(a.eval(), b.eval(), data)
            best = min(best, time.perf_counter() - t0)
        out[name] = {"seconds": best, "numbers": numbers(result)}
    print(json.dumps(out))


def run_worker(tree: Path, role: str, weights: str, args: argparse.Namespace) -> dict:
    """One worker process on the llfc_utils of `tree`; returns its JSON."""
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(args.threads)}
    env["LLFC_PROGRESS"] = "0"
    cmd = [sys.executable, __file__, "--worker", role, weights, "--repeats", str(args.repeats)]
    cmd += ["--subset", str(args.subset)] if args.subset else []
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if done.returncode:
        sys.exit(f"worker on {tree} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def max_diff(old: list[float], new: list[float]) -> float:
    """The largest |new - old| / max(|old|, 1e-6) (NaN == NaN; inf if the counts differ).

    Relative for numbers of 1e-6 and more; below, absolute / 1e-6: the first layer's LLFC
    dissimilarity (about 1e-14) is rounding noise whose relative change means nothing.
    """
    if len(old) != len(new):
        return math.inf
    diffs = [
        0.0 if (math.isnan(o) and math.isnan(n)) or o == n else abs(n - o) / max(abs(o), 1e-6)
        for o, n in zip(old, new, strict=True)
    ]
    return max(diffs, default=0.0)


def main(argv: list[str] | None = None) -> int:
    """Save each role's pair, run both revisions on it, print the table and the JSON line."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--roles", default="mlp,cnn")
    p.add_argument("--repeats", type=int, default=2, help="runs per case; the best is kept")
    p.add_argument("--baseline", default="edaf20e", help="git revision to compare with")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--subset", type=int, default=None, help="first N images only (a quick look)")
    p.add_argument("--worker", nargs=2, metavar=("ROLE", "WEIGHTS"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        torch.set_num_threads(args.threads)
        worker(*args.worker, args.repeats, args.subset)
        return 0
    from llfc_utils import config, train

    seconds, ratio, diff = {}, {}, {}
    print(f"evaluation: {args.baseline} (old) vs this checkout (new), best of {args.repeats}")
    print(f"{'case':<28}{'old s':>9}{'new s':>9}{'new/old':>9}{'max diff':>10}")
    with tempfile.TemporaryDirectory() as tmp:
        old_tree = Path(tmp) / "old"
        old_tree.mkdir()
        archive = subprocess.run(
            ["git", "-C", str(ROOT), "archive", args.baseline, "llfc_utils"],
            capture_output=True,
            check=True,
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(old_tree)], input=archive, check=True)
        for role in args.roles.split(","):
            cfg = config.profile("cpu")[role]
            a, b, _, _ = train.train_spawned_pair(cfg, SPAWN[role], seed=0, child_seeds=(1, 2))
            weights = str(Path(tmp) / f"{role}.pt")
            torch.save({"a": a.state_dict(), "b": b.state_dict()}, weights)
            old = run_worker(old_tree, role, weights, args)
            new = run_worker(ROOT, role, weights, args)
            for name in new:
                key = f"{role}/{name}"
                seconds[key] = {"old": round(old[name]["seconds"], 3)}
                seconds[key]["new"] = round(new[name]["seconds"], 3)
                ratio[key] = round(new[name]["seconds"] / old[name]["seconds"], 3)
                diff[key] = max_diff(old[name]["numbers"], new[name]["numbers"])
                print(
                    f"{key:<28}{seconds[key]['old']:>9.2f}{seconds[key]['new']:>9.2f}"
                    f"{ratio[key]:>9.2f}{diff[key]:>10.1e}"
                )
    total_old = sum(s["old"] for s in seconds.values())
    total_new = sum(s["new"] for s in seconds.values())
    print(f"{'all':<28}{total_old:>9.2f}{total_new:>9.2f}{total_new / total_old:>9.2f}")
    result = {
        "bench": "evaluation",
        "seconds": seconds,
        "ratio": ratio,
        "max_diff": diff,
        "ratio_all": round(total_new / total_old, 3),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
