"""Parameter sweeps: a grid of chapter runs as independent jobs on a Dask cluster.

    python -m llfc_utils.tools.sweep --chapter 01_lmc_basics --profile cpu \\
        --grid spawn_epoch=0,1,2,4 seed=0,1,2 --workers 2

Every point of the grid (the product of its values) is one job: one papermill run of the chapter
in its own folder `OUT/<job id>/`, holding the executed notebook, the chapter's results JSON and
`job.json` (parameters, status, seconds; for a failed job the error and the failing cell).
Jobs run on a Dask `Client`: by default a LocalCluster of single-threaded worker processes, or any
scheduler (`--scheduler tcp://host:8786`), whose workers need this package, the data, OUT on a
shared file system, and one thread each (`dask worker ADDRESS --nthreads 1`).

A job that already finished with the same parameters is skipped, so a re-run only does what is
missing or failed. A failing `check` cell (a chapter's assertion about its claim, run after the
results are written) does not fail the job: at those parameters the claim does not hold, which is
a result; `job.json` and the table's `check` column keep the assertion.
At the end: `OUT/table.csv` (one row per job) and `OUT/barrier_vs_<x>.png`.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import re
import socket
import sys
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llfc_utils import cache
from llfc_utils.config import PROFILES
from llfc_utils.tools import run
from llfc_utils.tools.paths import ROOT

Grid = dict[str, list[Any]]
SWEEPS = ROOT / "sweeps"
SPLITS = (("test", "-"), ("train", "--"))  # (split, line style) in the figure


@dataclass
class JobResult:
    """What became of one job: status "done", "skipped" (finished earlier) or "failed"."""

    id: str
    params: dict[str, Any]
    status: str
    folder: Path
    seconds: float = 0.0
    error: str | None = None  # "ExceptionName: message" of a failed job
    cell: int | None = None  # execution count of the failing cell, when papermill names it
    check: str | None = None  # a done job whose chapter check did not hold: the assertion


def parse_grid(items: list[str]) -> Grid:
    """["spawn_epoch=0,1", "seed=0"] -> {"spawn_epoch": [0, 1], "seed": [0]} (values as Python literals)."""
    grid: Grid = {}
    for item in items:
        name, sep, values = item.partition("=")
        if not sep or not name or not values:
            raise ValueError(f"grid entry {item!r} must look like NAME=V1,V2,... (e.g. seed=0,1,2)")
        if name in grid:
            raise ValueError(f"grid parameter {name!r} is given twice; list its values once")
        grid[name] = [run._value(v) for v in values.split(",")]
    return grid


def job_id(params: dict[str, Any]) -> str:
    """The job's folder name, from its parameters in sorted order, e.g. "seed=0,spawn_epoch=2"."""
    text = ",".join(f"{k}={params[k]}" for k in sorted(params))
    return re.sub(r"[^A-Za-z0-9_.,=+-]", "_", text)


def expand(chapter: str, profile: str, grid: Grid) -> list[dict[str, Any]]:
    """Every parameter set of `grid` (the product of its values); ValueError if one is invalid."""
    if chapter not in run.chapters():
        raise ValueError(f"unknown chapter {chapter!r}; valid: {', '.join(run.chapters())}")
    if not grid:
        raise ValueError("the grid is empty; give at least one NAME=V1,V2,... (e.g. seed=0,1)")
    if "profile" in grid:
        raise ValueError("set the profile with --profile (one per sweep), not in the grid")
    for name, values in grid.items():
        if not values:
            raise ValueError(f"grid parameter {name!r} has no values")
        for value in values:  # names and types, checked per value: every job combines them
            run.check_parameters(chapter, {"profile": profile, name: value})
    jobs = [dict(zip(grid, values, strict=True)) for values in itertools.product(*grid.values())]
    ids = [job_id(p) for p in jobs]
    if len(set(ids)) != len(ids):
        raise ValueError(
            f"the grid repeats a parameter set (job ids {sorted(ids)}); drop duplicates"
        )
    return jobs


def _write_json(path: Path, record: dict[str, Any]) -> None:
    """Write `record` to `path` atomically: a reader never sees half a file."""
    text = json.dumps(record, indent=1, default=str)
    cache.atomic_write(path, lambda tmp: Path(tmp).write_text(text))


def finished(folder: Path, chapter: str, profile: str, params: dict[str, Any]) -> bool:
    """True if `folder` holds a done job of these exact parameters and its valid results JSON."""
    try:
        job = json.loads((folder / "job.json").read_text())
        record = json.loads((folder / f"{chapter}.json").read_text())
    except (OSError, ValueError):
        return False
    same = job.get("params") == json.loads(json.dumps(params))  # as JSON stores them
    return (
        same
        and job.get("status") == "done"
        and (job.get("chapter"), job.get("profile")) == (chapter, profile)
        and (record.get("chapter"), record.get("profile")) == (chapter, profile)
        and isinstance(record.get("metrics"), dict)
    )


def _is_check(notebook: Path, exec_count: int | None) -> bool:
    """True if the cell that ran as In [exec_count] in `notebook` is tagged "check"."""
    try:
        cells = json.loads(notebook.read_text())["cells"]
    except (OSError, ValueError, KeyError):
        return False
    return any(
        c.get("execution_count") == exec_count and "check" in c["metadata"].get("tags", [])
        for c in cells
        if exec_count is not None and c["cell_type"] == "code"
    )


def run_job(
    chapter: str, profile: str, params: dict[str, Any], folder: str, threads: int = 1
) -> dict[str, Any]:
    """Execute one job into `folder` (runs on a worker); write and return its job.json record.

    The kernel inherits this process's environment, set here: results into `folder`, this
    profile (as the parameter and as $LLFC_PROFILE), no progress bars, `threads`
    torch threads. So a worker process must run one job at a time (one thread).
    """
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    results = f"{chapter}.json"
    for stale in ("job.json", results):
        (out / stale).unlink(missing_ok=True)
    env = {
        "LLFC_RESULTS": str(out),
        "LLFC_PROFILE": profile,
        "LLFC_PROGRESS": "0",
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    record: dict[str, Any] = {"chapter": chapter, "profile": profile, "params": params}
    t0 = time.perf_counter()
    with run.environment(env):
        try:
            run.run_chapter(chapter, profile, params, out)
            record["status"] = "done"
        except Exception as e:
            record["status"] = "failed"
            if hasattr(e, "ename"):  # papermill.PapermillExecutionError: an exception in a cell
                record["error"] = f"{e.ename}: {e.evalue}"
                record["cell"] = e.exec_count
                record["traceback"] = re.sub(r"\x1b\[[0-9;]*m", "", "\n".join(e.traceback))
                if _is_check(out / f"{chapter}.ipynb", e.exec_count) and (out / results).exists():
                    # The chapter's assertion about its claim, after its results were written: at
                    # these parameters the claim does not hold. A result of the sweep, not a failure.
                    record |= {"status": "done", "check": record.pop("error")}
            else:
                record["error"] = f"{type(e).__name__}: {e}"
                record["traceback"] = traceback.format_exc()
    record["seconds"] = round(time.perf_counter() - t0, 1)
    _write_json(out / "job.json", record)
    return record


def _local_client(workers: int):
    """A Client on a new LocalCluster of `workers` single-threaded worker processes."""
    from dask.distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None
    )
    return Client(cluster)


def _process() -> tuple[str, int]:
    return socket.gethostname(), os.getpid()


def check_workers(client) -> None:
    """ValueError unless every worker process runs one thread (jobs set its environment)."""
    processes = client.run(_process)  # {worker address: (host, pid)}
    threads: dict[tuple[str, int], int] = {}
    for worker, n in client.nthreads().items():
        threads[processes[worker]] = threads.get(processes[worker], 0) + n
    busy = {f"{host} pid {pid}": n for (host, pid), n in threads.items() if n > 1}
    if busy:
        raise ValueError(
            f"worker processes {busy} run several threads; jobs set environment variables per "
            "process, so use one thread per process (LocalCluster(processes=True, "
            "threads_per_worker=1), or dask worker ADDRESS --nthreads 1)"
        )


def _claim(out_dir: Path, chapter: str, profile: str, jobs: list[dict[str, Any]]) -> None:
    """Mark `out_dir` as this chapter, profile and grid's sweep (git-ignored); refuse another's.

    The same grid, or a larger one that contains every job already in the folder, may go on there;
    a job folder outside the grid would mix two grids in the table and the figure.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"the output folder {out_dir} is a file; choose a folder (--out)")
    mark = out_dir / "sweep.json"
    if mark.exists():
        try:
            old = json.loads(mark.read_text())
            old_sweep = (old["chapter"], old["profile"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"{mark} is unreadable ({type(e).__name__}); delete it, or choose another "
                "output folder (--out)"
            ) from e
        if old_sweep != (chapter, profile):
            raise ValueError(
                f"{out_dir} holds a sweep of chapter {old_sweep[0]} in profile "
                f"{old_sweep[1]}; choose another output folder (--out)"
            )
    ids = {job_id(p) for p in jobs}
    others = sorted(p.parent.name for p in out_dir.glob("*/job.json") if p.parent.name not in ids)
    if others:
        raise ValueError(
            f"{out_dir} holds jobs of another grid ({', '.join(others[:3])}"
            f"{', ...' if len(others) > 3 else ''}); choose another output folder (--out) "
            "or give a grid that contains them"
        )
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ".gitignore").write_text("*\n")
    _write_json(mark, {"chapter": chapter, "profile": profile, "jobs": sorted(ids)})


def summary(results: list[JobResult]) -> str:
    """Counts of done / skipped / failed jobs, then a line per failed job or check, with parameters."""
    count = {s: sum(r.status == s for r in results) for s in ("done", "skipped", "failed")}
    checks = sum(r.check is not None for r in results)
    lines = [f"{count['done']} done, {count['skipped']} skipped, {count['failed']} failed"]
    if checks:
        lines[0] += f"; {checks} with a chapter check that did not hold (results kept)"
    for r in results:
        if r.check is not None:
            lines.append(f"  CHECK {r.params}: {_short(r.check)}; see {r.folder / 'job.json'}")
        if r.status == "failed":
            cell = f" in cell [{r.cell}]" if r.cell is not None else ""
            error = _short(r.error or "")
            lines.append(f"  FAILED {r.params}: {error}{cell}; see {r.folder / 'job.json'}")
    return "\n".join(lines)


def _short(text: str, n: int = 300) -> str:
    return text if len(text) <= n else text[: n - 3] + "..."


def run_grid(
    chapter: str,
    profile: str,
    grid: Grid,
    out_dir: Path | str,
    client=None,
    workers: int = 2,
    threads: int = 1,
) -> list[JobResult]:
    """Run every job of `grid` not finished yet on `client` (default: a LocalCluster of `workers`).

    Prints a line per finished job and a summary; returns one JobResult per job, in grid order.
    """
    jobs = expand(chapter, profile, grid)
    out_dir = Path(out_dir)
    _claim(out_dir, chapter, profile, jobs)
    results: dict[str, JobResult] = {}
    todo = []
    for params in jobs:
        folder = out_dir / job_id(params)
        if finished(folder, chapter, profile, params):
            check = json.loads((folder / "job.json").read_text()).get("check")
            results[job_id(params)] = JobResult(
                job_id(params), params, "skipped", folder, check=check
            )
        else:
            todo.append(params)
    print(
        f"sweep {chapter} ({profile}) -> {out_dir}: {len(jobs)} jobs, "
        f"{len(jobs) - len(todo)} finished earlier, {len(todo)} to run",
        flush=True,
    )
    if todo:
        from dask.distributed import as_completed

        own = client is None
        client = _local_client(workers) if own else client
        try:
            check_workers(client)
            futures = {
                client.submit(
                    run_job, chapter, profile, p, str(out_dir / job_id(p)), threads, pure=False
                ): p
                for p in todo
            }
            for i, future in enumerate(as_completed(futures), 1):
                params = futures[future]
                folder = out_dir / job_id(params)
                try:
                    record = future.result()
                except Exception as e:  # the job never returned: its worker died (KilledWorker)
                    record = {"chapter": chapter, "profile": profile, "params": params}
                    record |= {"status": "failed", "error": f"{type(e).__name__}: {e}"}
                    folder.mkdir(parents=True, exist_ok=True)
                    _write_json(folder / "job.json", record)
                r = JobResult(
                    job_id(params),
                    params,
                    record["status"],
                    folder,
                    record.get("seconds", 0.0),
                    record.get("error"),
                    record.get("cell"),
                    record.get("check"),
                )
                results[r.id] = r
                note = f": {r.error}" if r.error else (f", check: {r.check}" if r.check else "")
                line = f"[{i}/{len(todo)}] {r.status} {r.id} ({r.seconds:.0f} s){note}"
                print(_short(line), flush=True)
        finally:
            if own:
                client.close()
                client.cluster.close()
    ordered = [results[job_id(p)] for p in jobs]
    print(summary(ordered), flush=True)
    return ordered


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": 1}: nested scalars, lists left out."""
    flat: dict[str, Any] = {}
    for k, v in d.items():
        if isinstance(v, dict):
            flat.update(_flatten(v, f"{prefix}{k}."))
        elif not isinstance(v, list):
            flat[f"{prefix}{k}"] = v
    return flat


def collect(out_dir: Path | str):
    """One row per job folder in `out_dir`: job, status, seconds, check, parameters, metrics.

    Metrics are the results JSON's nested scalars, as dotted columns ("spawned_barrier.test_loss");
    a failed job has its error instead. Returns a pandas DataFrame.
    """
    import pandas as pd

    out_dir = Path(out_dir)
    rows = []
    for path in sorted(out_dir.glob("*/job.json")):
        job = json.loads(path.read_text())
        row = {"job": path.parent.name, "status": job["status"], "seconds": job.get("seconds")}
        row |= {"check": job.get("check"), **job["params"]}
        if job["status"] == "done":
            record = json.loads((path.parent / f"{job['chapter']}.json").read_text())
            for k, v in _flatten(record["metrics"]).items():
                row.setdefault(k, v)  # a metric that repeats a parameter keeps the parameter
        else:
            row["error"] = job.get("error")
        rows.append(row)
    if not rows:
        raise FileNotFoundError(
            f"no jobs in {out_dir}; run a sweep into it first (python -m llfc_utils.tools.sweep --help)"
        )
    return pd.DataFrame(rows)


def plot_barrier_vs(
    df,
    x: str = "spawn_epoch",
    over: str = "seed",
    by: list[str] | tuple[str, ...] = (),
    barrier: str = "spawned_barrier",
    reference: str = "barriers.independent",
):
    """Loss and error barrier against `x`, mean +- std over `over`; one colour per `by` group.

    Reads the columns `<barrier>.<split>_loss` and `<barrier>.<split>_err` of `collect`'s table
    (split = test, solid, and train, dashed); failed jobs are left out. The mean test barrier of
    `reference` (the independent pair), if in the table, is quoted in the panel titles.
    """
    import matplotlib.pyplot as plt

    from llfc_utils import plots

    df = df[df["status"] == "done"]
    need = [x, over, *by] + [f"{barrier}.{s}_{k}" for s, _ in SPLITS for k in ("loss", "err")]
    missing = [c for c in need if c not in df.columns]
    if missing or df.empty:
        raise ValueError(
            f"cannot plot: columns {missing} missing, {len(df)} done jobs; "
            f"the table has {', '.join(map(str, df.columns))}"
        )
    plots.use_style()
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(9, 3.6))
    groups = df.groupby(list(by)) if by else [((), df)]
    for i, (key, group) in enumerate(groups):
        name = ", ".join(f"{b}={v}" for b, v in zip(by, key, strict=True))
        for split, style in SPLITS:
            for ax, kind, scale in ((ax_loss, "loss", 1), (ax_err, "err", 100)):
                stats = group.groupby(x)[f"{barrier}.{split}_{kind}"].agg(["mean", "std"])
                ax.errorbar(
                    stats.index,
                    scale * stats["mean"],
                    yerr=scale * stats["std"].fillna(0),
                    fmt=style,
                    marker="o" if split == "test" else "s",
                    capsize=3,
                    color=f"C{i}",
                    label=f"{name} {split} ({'solid' if style == '-' else 'dashed'})".strip(),
                )
    label = x.replace("_", " ")
    for ax, kind, title, unit, scale in (
        (ax_loss, "loss", "Loss barrier", "", 1),
        (ax_err, "err", "Error barrier", " %", 100),
    ):
        ref = f"{reference}.test_{kind}"
        if ref in df.columns:
            title += f" (independent pair: {scale * df[ref].mean():.3g}{unit})"
        ax.set(xlabel=label, title=title)
        if df[x].map(lambda v: isinstance(v, int)).all():
            ax.set_xticks(sorted(df[x].unique()))
    ax_loss.set_ylabel("loss barrier")
    ax_err.set_ylabel("error barrier (%)")
    ax_loss.legend(fontsize=8)
    n = df.groupby([x, *by])[over].nunique()
    n_text = f"{n.min()}" if n.min() == n.max() else f"{n.min()} to {n.max()}"
    fig.suptitle(f"{barrier.replace('_', ' ')} vs {label}: mean ± std over {n_text} {over}s")
    fig.tight_layout()
    return fig


def report(
    out_dir: Path | str, x: str = "spawn_epoch", over: str = "seed", by: list[str] | None = None
) -> tuple[Path, Path | None]:
    """Write `out_dir/table.csv` and, if the table has barriers, `out_dir/barrier_vs_<x>.png`."""
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    df = collect(out_dir)
    table = out_dir / "table.csv"
    df.to_csv(table, index=False)
    try:
        fig = plot_barrier_vs(df, x, over, by or [])
    except ValueError as e:
        print(f"no figure: {e}", file=sys.stderr)
        return table, None
    figure = out_dir / f"barrier_vs_{x}.png"
    fig.savefig(figure)
    plt.close(fig)
    return table, figure


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; exit status 1 if a job failed."""
    parser = argparse.ArgumentParser(
        prog="python -m llfc_utils.tools.sweep",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--chapter", required=True, help="e.g. 01_lmc_basics")
    parser.add_argument("--profile", default="cpu", choices=sorted(PROFILES))
    parser.add_argument(
        "--grid", nargs="+", action="extend", required=True, metavar="NAME=V1,V2", help="an axis"
    )
    parser.add_argument("--scheduler", metavar="ADDRESS", help="default: a LocalCluster")
    parser.add_argument("--workers", type=int, default=2, help="LocalCluster worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per job")
    parser.add_argument("--out", type=Path, help="default: sweeps/<chapter>-<profile>")
    parser.add_argument("--x", help="the figure's x axis (default: spawn_epoch, else first axis)")
    parser.add_argument("--over", default="seed", help="averaged over in the figure")
    args = parser.parse_args(argv)
    try:
        grid = parse_grid(args.grid)
        expand(args.chapter, args.profile, grid)
    except ValueError as e:
        parser.error(str(e))
    if args.workers < 1 or args.threads < 1:
        parser.error("--workers and --threads must be >= 1")
    out = args.out or SWEEPS / f"{args.chapter}-{args.profile}"
    x = args.x or ("spawn_epoch" if "spawn_epoch" in grid else next(iter(grid)))
    by = [k for k, v in grid.items() if k not in (x, args.over) and len(v) > 1]
    client = None
    if args.scheduler:
        from dask.distributed import Client

        try:
            client = Client(args.scheduler, timeout="10s")
        except (OSError, ValueError, TimeoutError) as e:
            parser.error(f"cannot reach the scheduler {args.scheduler} ({e}); check the address")
    t0 = time.perf_counter()
    try:
        results = run_grid(
            args.chapter, args.profile, grid, out, client, args.workers, args.threads
        )
    except ValueError as e:  # raised before any job runs: another sweep's folder, busy workers
        parser.error(str(e))
    finally:
        if client is not None:
            client.close()
    table, figure = report(out, x, args.over, by)
    print(f"table: {table}" + (f"\nfigure: {figure}" if figure else ""))
    print(f"sweep took {time.perf_counter() - t0:.0f} s", flush=True)
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    # Run main from the importable module, not __main__, so that workers can unpickle run_job.
    from llfc_utils.tools import sweep

    sys.exit(sweep.main())
