#!/usr/bin/env bash
# One check of the GPU path, for a machine with a GPU and no network; at most 10 minutes.
#
#   bench/gpu_check.sh [CHAPTER]        # default 03_permutation; prints one JSON line last
#
# 1. bench/gpu_train.py (VGG-16 and ResNet-20 training throughput, ours vs the authors' loop) in
#    bf16 and fp16, each without and with --compile: images/s, achieved TFLOP/s, the device's peak.
# 2. CHAPTER of the `gpu` profile on Fashion-MNIST (LLFC_DATASET=fashion_mnist: the paper's nets and
#    recipes, the one data set carried along), from an empty cache: in bf16, bf16 with --compile,
#    and fp16; its wall time and the planner's estimate for it.
# Fashion-MNIST comes from data/ (git-ignored, 30 MB: `mkdir -p data/FashionMNIST/raw && cp
# /usr/share/datasets/fashion-mnist/*.gz data/FashionMNIST/raw/`) or $LLFC_DATA. Everything it
# writes goes to a temporary folder; each step has a time limit from one overall deadline, and a
# step that runs out is reported as such in the JSON.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
CHAPTER=${1:-03_permutation}
BUDGET_S=${BUDGET_S:-570}
export LLFC_DATA=${LLFC_DATA:-$PWD/data} LLFC_PROGRESS=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
deadline=$((SECONDS + BUDGET_S))
left() { echo $((deadline - SECONDS > 1 ? deadline - SECONDS : 1)); }

for amp in bf16 fp16; do
  for compile in "" --compile; do
    name="$amp${compile:++compile}"
    echo "== gpu_train $name" >&2
    rc=0
    timeout "$(( $(left) < 75 ? $(left) : 75 ))" "$PY" bench/gpu_train.py --amp "$amp" $compile \
      --steps 40 >"$tmp/train-$name.out" 2>"$tmp/train-$name.err" || rc=$?
    tail -n +1 "$tmp/train-$name.out" >&2
    echo "$rc" >"$tmp/train-$name.rc"
  done
done

for variant in bf16 bf16+compile fp16; do
  flags=(--amp "${variant%%+*}")
  [[ $variant == *compile ]] && flags+=(--compile)
  echo "== chapter $CHAPTER ($variant)" >&2
  home="$tmp/home-$variant"  # an empty cache, timings and results for each variant
  export LLFC_HOME="$home" LLFC_CACHE="$home/cache" LLFC_RESULTS="$home/results" \
    LLFC_TIMINGS="$home/timings.json" LLFC_DATASET=fashion_mnist
  LLFC_AMP="${variant%%+*}" "$PY" -m llfc_utils.tools.run --profile gpu --chapters "$CHAPTER" \
    --dry-run >"$tmp/plan-$variant.out" 2>&1 || true
  start=$SECONDS rc=0
  timeout "$(( $(left) < 200 ? $(left) : 200 ))" "$PY" -m llfc_utils.tools.run --profile gpu \
    --chapters "$CHAPTER" --out "$home/book" --force "${flags[@]}" >"$tmp/ch-$variant.out" 2>&1 || rc=$?
  tail -n 3 "$tmp/ch-$variant.out" >&2
  echo "$rc $((SECONDS - start))" >"$tmp/ch-$variant.rc"
  unset LLFC_DATASET
done

"$PY" - "$tmp" "$CHAPTER" <<'PY'
import json, re, sys
from pathlib import Path

tmp, chapter = Path(sys.argv[1]), sys.argv[2]
out = {"bench": "gpu_check", "chapter": chapter, "train": {}, "chapter_runs": {}}
for rc_file in sorted(tmp.glob("train-*.rc")):
    name = rc_file.stem[len("train-"):]
    rc = int(rc_file.read_text())
    lines = (tmp / f"train-{name}.out").read_text().strip().splitlines()
    try:
        r = json.loads(lines[-1])
    except (IndexError, ValueError):
        err = (tmp / f"train-{name}.err").read_text().strip().splitlines()[-1:]
        out["train"][name] = {"rc": rc, "error": "timed out" if rc == 124 else " ".join(err)}
        continue
    out["device"] = r["device"]
    peak = r["peak_tflops"]
    out["train"][name] = {
        "precision": r["precision_ours"],
        "images_per_s": r["images_per_s"],
        "tflops": r["tflops"],
        "peak_tflops": peak,
        "share_of_peak": {m: round(t / peak, 4) for m, t in r["tflops"].items()} if peak else None,
    }
for rc_file in sorted(tmp.glob("ch-*.rc")):
    variant = rc_file.stem[len("ch-"):]
    rc, seconds = map(int, rc_file.read_text().split())
    plan = (tmp / f"plan-{variant}.out").read_text()
    m = re.search(rf"^\s+{re.escape(chapter)}\s+(\d+) epochs to train\s+~\s*(.+?)\s*(\(.*\))?$", plan, re.M)
    log = (tmp / f"ch-{variant}.out").read_text().strip().splitlines()
    out["chapter_runs"][variant] = {
        "rc": rc,
        "status": "ok" if rc == 0 else ("timed out" if rc == 124 else "failed"),
        "wall_s": seconds,
        "planned_epochs": int(m.group(1)) if m else None,
        "estimate": m.group(2) if m else None,
        **({} if rc == 0 else {"last_lines": log[-3:]}),
    }
print(json.dumps(out))
PY
