"""The floor under the `cpu` book's training time: its FLOPs at this machine's measured peak.

Every run the book's chapters train from an empty cache (as `llfc_utils.tools.plan` lists them,
each shared run counted once) is priced in FLOPs: the matrix products and convolutions of forward
+ backward per image (`plan.train_flops`), times the images of an epoch, times its epochs. Divided
by the practical peaks measured in the same run (`train_throughput.peaks`: a 2048^3 matrix
product and the CNN's heaviest 3x3 convolution, in float32 and bfloat16), that is the least time
training could take on this machine even at 100 % of peak. With `--measured SECONDS` (the
training seconds the runner printed for a whole `make book` from an empty cache) it also prints
the fraction of the best peak the book's training reached.

This is a measurement, not a test: it prints a table and, as its last line, one JSON object.

    .venv/bin/python bench/book_floor.py [--profile cpu] [--measured 2334]
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from train_throughput import heaviest_conv, peaks  # noqa: E402 - a sibling bench script

from llfc_utils import config  # noqa: E402
from llfc_utils.tools import plan, run  # noqa: E402
from llfc_utils.tools.run import environment  # noqa: E402


def book_flops(profile: str) -> dict[str, float]:
    """Training FLOPs per model of every run the book trains from an empty cache."""
    chapters = run.chapters()
    with tempfile.TemporaryDirectory() as empty, environment({"LLFC_CACHE": empty}):
        plans = plan.make(chapters, profile, {c: {} for c in chapters}, "cpu")
    flops: collections.Counter = collections.Counter()
    for p in plans:
        for r in p.runs or []:  # a run shared with an earlier chapter has 0 epochs here
            cfg = r.run.cfg
            images = cfg.train_subset or 60_000
            if cfg.classes is not None:  # a task: about its share of the labels
                images = images * len(cfg.classes) // config.N_CLASSES
            flops[cfg.model] += plan.train_flops(cfg)[1] * images * r.epochs
    return dict(flops)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--profile", default="cpu")
    p.add_argument("--measured", type=float, help="training seconds of a make book, empty cache")
    args = p.parse_args(argv)
    flops = book_flops(args.profile)
    total = sum(flops.values())
    peak = peaks(torch.device("cpu"), heaviest_conv(config.get(args.profile, "cnn")), 128)
    best = max(peak.values())
    floor = {name: total / (g * 1e9) / 60 for name, g in peak.items()}
    print(f"training FLOPs of the {args.profile} book: {total / 1e12:.1f} TFLOP")
    for model, f in sorted(flops.items()):
        print(f"  {model:<10} {f / 1e12:8.1f} TFLOP")
    for name, g in peak.items():
        print(f"  at the {name} peak ({g:.0f} GFLOP/s): {floor[name]:.1f} min")
    out = {
        "bench": "book_floor",
        "profile": args.profile,
        "train_tflop": {m: round(f / 1e12, 2) for m, f in flops.items()},
        "peak_gflops": {k: round(v, 1) for k, v in peak.items()},
        "floor_minutes": {k: round(v, 2) for k, v in floor.items()},
    }
    if args.measured:
        out["fraction_of_peak"] = round(total / args.measured / (best * 1e9), 3)
        print(f"measured {args.measured:.0f} s: {out['fraction_of_peak']:.3f} of the best peak")
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
