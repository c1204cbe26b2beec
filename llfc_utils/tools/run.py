"""Execute the chapter notebooks with papermill: `python -m llfc_utils.tools.run --profile cpu`.

Each chapter `notebooks/<name>.ipynb` is executed with its `parameters` cell overridden
(`profile`, and any `-p name value`) and written to `book/<name>.ipynb`, the copy the book renders.
Executed copies are generated, never committed.

Before it runs anything it prints what the chapters will train and how long that should take on
this device (`llfc_utils.tools.plan`); `--dry-run` prints the whole plan and stops there, and
`--assume-device "Tesla T4"` prices it for another device (a GPU's name as CUDA reports it, or cpu).
`--amp fp32` trains in float32 instead of 16-bit autocast (sets LLFC_AMP); `--compile` uses
torch.compile where it works (sets LLFC_COMPILE=1). An installed package runs the chapters it
carries and writes them under ~/.cache/llfc_book/book (`paths`).

A chapter is skipped as up to date only if its executed copy ran to the end (the runner stamps it
then; a killed run leaves none) with the same sources, parameters, profile, precision, compile flag
and checkpoint cache, and its results JSON is still the one that run wrote.
"""

from __future__ import annotations

import argparse
import ast
import hashlib
import json
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from llfc_utils import settings
from llfc_utils.config import AMP, PROFILES
from llfc_utils.tools import paths
from llfc_utils.tools.paths import BOOK as OUTPUT
from llfc_utils.tools.paths import CHECKOUT, NOTEBOOKS, PACKAGE, ROOT

RESULTS_PAGE = "results"  # collects every chapter's claims; executed after the chapters


def chapters() -> list[str]:
    """The chapter names, in book order (the sorted notebook file names)."""
    return [p.stem for p in paths.chapters()]


def no_chapters_message() -> str:
    """What to do when no chapter notebooks are found (a package installed without them)."""
    return (
        f"no chapter notebooks in {NOTEBOOKS}: this installation of llfc_utils lacks them. "
        "Clone the book's repository (its address is repository.url in its _config.yml) and run "
        "from there, or reinstall the package from it."
    )


def _value(text: str) -> object:
    """A -p value: a Python literal if it parses as one, else the string itself."""
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parameters(name: str) -> dict[str, object]:
    """The parameters of chapter `name` and their default values (from its `parameters` cell)."""
    import papermill as pm

    return {
        k: ast.literal_eval(v["default"])
        for k, v in pm.inspect_notebook(str(NOTEBOOKS / f"{name}.ipynb")).items()
    }


def _like(value: object, default: object) -> bool:
    """Whether `value` has the type of `default`, inside lists and dicts too (an int for a float)."""
    want = type(default)
    if default is None:  # "choose for me" (e.g. seeds = None): the chapter checks the value
        return True
    if isinstance(value, bool) or isinstance(default, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if want is float:
        return isinstance(value, (int, float))
    if isinstance(default, list):
        return isinstance(value, list) and all(not default or _like(v, default[0]) for v in value)
    if isinstance(default, dict):
        first = next(iter(default.values()), None)
        return isinstance(value, dict) and all(
            _like(v, default.get(k, first)) for k, v in value.items() if default
        )
    return isinstance(value, want)


def _values(value: object) -> list:
    """The numbers in a parameter value: itself, or those of a list or a dict's values."""
    if isinstance(value, dict):
        return [x for v in value.values() for x in _values(v)]
    return [x for v in value for x in _values(v)] if isinstance(value, list) else [value]


def _check_value(key: str, value: object) -> str | None:
    """Why `value` would make chapter parameter `key` trivially true or meaningless, or None."""
    numbers = _values(value)
    if isinstance(value, (list, dict)) and not value:
        return "must not be empty (a claim over nothing holds trivially)"
    if key == "n_alphas" and not (value >= 3 and value % 2 == 1):
        return "must be an odd number >= 3, so the alpha grid has interior points and alpha = 0.5"
    if key == "alphas" and not (all(0 <= a <= 1 for a in numbers) and 0.5 in numbers):
        return "must be values in [0, 1] that include the interior point 0.5"
    if (key.endswith(("_size", "_samples")) or key == "top_k") and min(numbers, default=1) < 1:
        return "must be >= 1 (a count)"
    if (key == "seed" or key.endswith("_seed")) and min(numbers, default=0) < 0:
        return "must be >= 0 (numpy and torch take no negative seeds)"
    return None


def check_parameters(name: str, params: dict[str, object]) -> None:
    """Raise ValueError before anything runs if a parameter is unknown, of the wrong type, or of a
    value that would make the chapter's claim trivially true."""
    defaults = parameters(name)
    for key, value in params.items():
        if key not in defaults:
            raise ValueError(
                f"chapter {name} has no parameter {key!r}; valid: {', '.join(defaults)}"
            )
        if key == "profile":  # None in the notebook: "choose for me"; checked below
            continue
        if not _like(value, defaults[key]):
            raise ValueError(
                f"chapter {name}: parameter {key!r} must be {type(defaults[key]).__name__} like "
                f"its default {defaults[key]!r}, got {type(value).__name__} {value!r}"
            )
        why = _check_value(key, value)
        if why:
            raise ValueError(f"chapter {name}: parameter {key!r} {why}; got {value!r}")
    profile = params.get("profile", defaults.get("profile"))
    if profile is not None and profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")


@contextmanager
def environment(env: dict[str, str]) -> Iterator[None]:
    """Within the block, `os.environ` has the variables of `env`; afterwards they are as before."""
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def run_chapter(
    name: str,
    profile: str,
    params: dict[str, object],
    out_dir: Path = OUTPUT,
    train_log: Path | None = None,
) -> Path:
    """Execute one chapter into `out_dir`; return the executed notebook's path.

    With `train_log`, the kernel appends the seconds of every epoch it trains to that file.
    """
    import papermill as pm

    check_parameters(name, {"profile": profile, **params})
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{name}.ipynb"
    # The kernel inherits the environment: it runs `profile` even where $LLFC_PROFILE says
    # otherwise, and without progress bars (nobody watches them; the runner prints a line per
    # chapter) unless $LLFC_PROGRESS asks for them.
    env = {"LLFC_PROFILE": profile, "LLFC_PROGRESS": settings.get("LLFC_PROGRESS") or "0"}
    if train_log is not None:
        env["LLFC_TRAIN_LOG"] = str(train_log)
    with environment(env):
        pm.execute_notebook(
            str(NOTEBOOKS / f"{name}.ipynb"),
            str(out),
            parameters={"profile": profile, **params},
            cwd=str(ROOT if CHECKOUT else out_dir),  # never site-packages
            progress_bar=False,
            kernel_name="python3",
            # The kernel listens on localhost only; without this it warns on every chapter that
            # its local TCP sockets are not encrypted. Its errors still show.
            extra_arguments=["--IPKernelApp.log_level=ERROR"],
        )
    _hide_injected_parameters(out)
    _stamp(out, name, profile, params)
    return out


def fingerprint(name: str, profile: str, params: dict[str, object]) -> dict[str, object]:
    """What a run of chapter `name` depends on: sources, parameters, precision, compile, cache root."""
    from llfc_utils import cache, config, train

    h = hashlib.sha256()
    for path in [NOTEBOOKS / f"{name}.ipynb", *sorted(PACKAGE.rglob("*.py"))]:
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return {
        "sources": h.hexdigest(),
        "parameters": json.loads(json.dumps({"profile": profile, **params})),  # as JSON has them
        "amp": config.amp_override(),
        "compile": train.compile_requested(),
        "cache": str(cache.cache_dir().resolve()),
    }


def _results_sha256(name: str) -> str | None:
    from llfc_utils.tools import results

    path = results.results_dir() / f"{name}.json"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None


def _stamp(path: Path, name: str, profile: str, params: dict[str, object]) -> None:
    """Mark the executed `path` as run to the end, with its fingerprint and its results' sha256.

    Written only after papermill returns: a copy left by a killed run has no stamp.
    """
    nb = json.loads(path.read_text())
    stamp = {**fingerprint(name, profile, params), "results_sha256": _results_sha256(name)}
    nb["metadata"]["llfc_run"] = stamp
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def _hide_injected_parameters(path: Path) -> None:
    """Tag papermill's injected `# Parameters` cell `remove-cell`: the page shows the profile anyway."""
    nb = json.loads(path.read_text())
    for cell in nb["cells"]:
        tags = cell.get("metadata", {}).get("tags", [])
        if "injected-parameters" in tags and "remove-cell" not in tags:
            tags.append("remove-cell")
    path.write_text(json.dumps(nb, indent=1, ensure_ascii=False) + "\n")


def up_to_date(name: str, profile: str, params: dict[str, object], out_dir: Path = OUTPUT) -> bool:
    """Whether `out_dir/<name>.ipynb` is a clean run of the current sources with these parameters.

    True when the executed copy ran to the end (the runner stamped it) with the same sources,
    parameters, profile, precision (--amp), compile flag and cache root as now, has no error
    output, and the results JSON is the one that run wrote.
    """
    try:
        nb = json.loads((out_dir / f"{name}.ipynb").read_text())
        stamp = dict(nb["metadata"]["llfc_run"])
        errors = any(
            o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", [])
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    results = stamp.pop("results_sha256", None)
    return (
        not errors
        and results is not None
        and results == _results_sha256(name)
        and stamp == fingerprint(name, profile, params)
    )


def _plan(
    todo: list[str], profile: str, params: dict[str, object], device: str | None = None
) -> list:
    """The training plan of chapters `todo` (llfc_utils.tools.plan) with their full parameters."""
    from llfc_utils.tools import plan

    full = {name: {**parameters(name), "profile": profile, **params} for name in todo}
    return plan.make(todo, profile, full, device)


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m llfc_utils.tools.run", description=__doc__)
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument("--chapters", nargs="+", metavar="NAME", help="default: all")
    parser.add_argument(
        "-p", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"), help="parameter"
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"where executed notebooks go, and their results JSON into OUT/results (default {OUTPUT})",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="re-run chapters whose executed copy is up to date",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print what would be trained and how long; run nothing",
    )
    parser.add_argument(
        "--assume-device",
        metavar="NAME",
        help='with --dry-run: price the plan for this device, e.g. "Tesla T4", '
        '"NVIDIA A100-SXM4-40GB" or cpu',
    )
    parser.add_argument(
        "--amp",
        choices=AMP,
        help="precision on CUDA (default: bf16 autocast, fp16 on GPUs without bf16); sets LLFC_AMP",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="torch.compile the training step; sets LLFC_COMPILE=1",
    )
    args = parser.parse_args(argv)
    if args.out is None:
        args.out = OUTPUT
    else:  # the results JSON go with the notebooks: a smoke run never overwrites the book's
        if args.out.exists() and not args.out.is_dir():
            parser.error(f"--out {args.out} is a file; give a folder")
        os.environ["LLFC_RESULTS"] = str(args.out / "results")
    if args.amp:  # read by config.get in this process and in the notebooks' kernels
        os.environ["LLFC_AMP"] = args.amp
    if args.compile:
        os.environ["LLFC_COMPILE"] = "1"
    known = chapters()
    if not known:
        parser.error(no_chapters_message())
    if args.assume_device and not args.dry_run:
        parser.error("--assume-device prices a plan: use it with --dry-run")
    todo = args.chapters or known
    unknown = [c for c in todo if c not in known]
    if unknown:
        parser.error(f"unknown chapter(s) {unknown}; valid: {', '.join(known)}")
    params = {k: _value(v) for k, v in args.p}
    for name in todo:  # every chapter's parameters are checked before the first one runs
        try:
            check_parameters(name, {"profile": args.profile, **params})
        except ValueError as e:
            parser.error(str(e))
    from llfc_utils import timings, train  # after the cheap checks: this imports torch
    from llfc_utils.tools import plan  # after the cheap checks: this imports torch

    try:
        plans = _plan(todo, args.profile, params, args.assume_device)
    except ValueError as e:  # a parameter the chapters cannot use: fail before anything runs
        parser.error(str(e))
    except Exception as e:  # noqa: BLE001 - the estimate is a courtesy: never block a real run
        if args.dry_run:
            raise
        print(f"(no time estimate: {type(e).__name__}: {e})", file=sys.stderr)
        plans = None
    if args.dry_run:
        print(plan.report(plans, args.profile, args.assume_device))
        full = {n: {**parameters(n), "profile": args.profile, **params} for n in todo}
        print("Each chapter alone (a fresh runtime, as on Colab: nothing shared between chapters):")
        print(plan.summary(plan.alone(todo, args.profile, full, args.assume_device)), flush=True)
        return 0
    if plans is not None:
        print(
            f"Estimated training (profile {args.profile} on {timings.device_kind(train.default_device())}):"
        )
        print(plan.summary(plans), flush=True)
    for i, name in enumerate(todo, 1):
        t0 = time.perf_counter()
        if not args.force and up_to_date(name, args.profile, params, args.out):
            print(f"[{i}/{len(todo)}] {name}: up to date, not re-run (--force re-runs)", flush=True)
            continue
        print(f"[{i}/{len(todo)}] {name} (profile {args.profile}) ...", flush=True)
        log = args.out / f".{name}.train_seconds"
        log.unlink(missing_ok=True)
        try:
            run_chapter(name, args.profile, params, args.out, train_log=log)
        except Exception as e:  # papermill's PapermillExecutionError names the failing cell
            print(f"[{i}/{len(todo)}] {name} FAILED: {e}", file=sys.stderr)
            return 1
        total = time.perf_counter() - t0
        trained = sum(float(s) for s in log.read_text().split()) if log.exists() else 0.0
        log.unlink(missing_ok=True)
        print(
            f"[{i}/{len(todo)}] {name} done in {total:.0f} s "
            f"(training {trained:.0f} s, evaluation and the rest {total - trained:.0f} s)",
            flush=True,
        )
    run_chapter(RESULTS_PAGE, args.profile, {}, args.out)
    print(f"results page: {args.out / (RESULTS_PAGE + '.ipynb')}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
