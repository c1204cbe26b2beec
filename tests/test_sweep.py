"""Sweeps: grid validation, the skip cache, and real grids of chapter runs on a Dask LocalCluster.

The cluster uses worker processes (processes=True), as `make sweep` does: jobs set environment
variables per process, which threads in one process would share. Starting it takes ~3 s here.
"""

from __future__ import annotations

import json
import math
import os
import re

import pytest

from llfc_utils.tools import run, sweep

CHAPTER = "01_lmc_basics"
SMALL = {"n_alphas": [3], "train_eval_size": [256], "extras": [False], "n_seeds": [1]}  # fast


def test_parse_grid() -> None:
    grid = sweep.parse_grid(["spawn_epoch=0,1", "seed=3", "n_alphas=5"])
    assert grid == {"spawn_epoch": [0, 1], "seed": [3], "n_alphas": [5]}
    for bad, match in (("seed", "NAME=V1,V2"), ("=1", "NAME=V1,V2"), ("seed=", "NAME=V1,V2")):
        with pytest.raises(ValueError, match=match):
            sweep.parse_grid([bad])
    with pytest.raises(ValueError, match="'seed' is given twice"):
        sweep.parse_grid(["seed=0", "seed=1"])


def test_grid_is_validated_before_anything_runs(tmp_path) -> None:
    jobs = sweep.expand(CHAPTER, "smoke", {"spawn_epoch": [0, 1], "seed": [0, 1, 2]})
    assert len(jobs) == 6 and {"spawn_epoch": 1, "seed": 2} in jobs
    cases = [
        ({"sead": [0]}, "no parameter 'sead'; valid: profile, spawn_epoch, seed"),
        ({"seed": [0, "one"]}, "'seed' must be int like its default 0, got str 'one'"),
        ({"spawn_epoch": [1.5]}, "'spawn_epoch' must be int"),
        ({"profile": ["cpu"]}, "set the profile with --profile"),
        ({"seed": []}, "'seed' has no values"),
        ({}, "the grid is empty"),
        ({"seed": [0, 0]}, "repeats a parameter set"),
    ]
    for grid, match in cases:
        with pytest.raises(ValueError, match=match):
            sweep.run_grid(CHAPTER, "smoke", grid, tmp_path / "out")
    with pytest.raises(ValueError, match="unknown chapter '01_lmc'; valid: 00_training"):
        sweep.expand("01_lmc", "smoke", {"seed": [0]})
    with pytest.raises(ValueError, match="unknown profile 'tpu'"):
        sweep.expand(CHAPTER, "tpu", {"seed": [0]})
    assert not (tmp_path / "out").exists(), "a rejected grid must not create anything"
    with pytest.raises(SystemExit):  # the command line says it and exits with status 2
        sweep.main(["--chapter", CHAPTER, "--grid", "sead=0"])


def test_job_id_is_deterministic_and_readable() -> None:
    assert sweep.job_id({"spawn_epoch": 2, "seed": 0}) == "seed=0,spawn_epoch=2"
    assert sweep.job_id({"seed": 0, "spawn_epoch": 2}) == "seed=0,spawn_epoch=2"
    assert sweep.job_id({"name": "a b/c"}) == "name=a_b_c"


def test_finished_needs_done_status_same_parameters_and_valid_results(tmp_path) -> None:
    params = {"spawn_epoch": 1, "seed": 0}
    job = {"chapter": CHAPTER, "profile": "smoke", "params": params, "status": "done"}
    record = {"chapter": CHAPTER, "profile": "smoke", "claims": [], "metrics": {}}
    (tmp_path / "job.json").write_text(json.dumps(job))
    (tmp_path / f"{CHAPTER}.json").write_text(json.dumps(record))
    assert sweep.finished(tmp_path, CHAPTER, "smoke", params)
    assert not sweep.finished(tmp_path, CHAPTER, "cpu", params)
    assert not sweep.finished(tmp_path, CHAPTER, "smoke", {**params, "seed": 1})
    (tmp_path / f"{CHAPTER}.json").write_text('{"chapter": "01_lmc_basics", "prof')  # cut short
    assert not sweep.finished(tmp_path, CHAPTER, "smoke", params)
    (tmp_path / f"{CHAPTER}.json").write_text(json.dumps(record))
    (tmp_path / "job.json").write_text(json.dumps({**job, "status": "failed"}))
    assert not sweep.finished(tmp_path, CHAPTER, "smoke", params)


def test_workers_must_run_one_thread_per_process() -> None:
    class Client:  # two single-threaded workers in one process, as LocalCluster(processes=False)
        def run(self, fn):
            return {"tcp://w1": ("host", 7), "tcp://w2": ("host", 7), "tcp://w3": ("host", 8)}

        def nthreads(self):
            return {"tcp://w1": 1, "tcp://w2": 1, "tcp://w3": 1}

    with pytest.raises(ValueError, match=r"\{'host pid 7': 2\} run several threads"):
        sweep.check_workers(Client())


def test_a_different_sweep_in_the_same_folder_is_refused(tmp_path) -> None:
    (tmp_path / "sweep.json").write_text(json.dumps({"chapter": CHAPTER, "profile": "cpu"}))
    with pytest.raises(ValueError, match="holds a sweep of chapter 01_lmc_basics in profile cpu"):
        sweep.run_grid(CHAPTER, "smoke", {"seed": [0]}, tmp_path)


def _fake_chapter(folder) -> None:
    """99_fake: writes its results (and the kernel's thread settings), then checks x < 1."""
    import nbformat

    v4 = nbformat.v4
    cells = [
        v4.new_code_cell('profile = "cpu"\nx = 0', metadata={"tags": ["parameters"]}),
        v4.new_code_cell(
            "import os, torch\n"
            "from llfc_utils.tools import results\n"
            'if x == 2:\n    raise RuntimeError("x = 2 breaks")\n'
            "env = {k: os.environ.get(k) for k in ('OMP_NUM_THREADS', 'LLFC_PROFILE')}\n"
            'results.write("99_fake", profile, [], {"x": x, "torch_threads": torch.get_num_threads(), **env})'
        ),
        v4.new_code_cell('assert x < 1, f"x = {x}"', metadata={"tags": ["check", "remove-cell"]}),
    ]
    folder.mkdir()
    kernel = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    nbformat.write(v4.new_notebook(cells=cells, metadata=kernel), folder / "99_fake.ipynb")


@pytest.mark.slow
def test_run_job_sets_the_kernel_env_and_tells_checks_from_errors(tmp_path, monkeypatch) -> None:
    _fake_chapter(tmp_path / "notebooks")
    monkeypatch.setattr(run, "NOTEBOOKS", tmp_path / "notebooks")
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    monkeypatch.setenv("LLFC_PROFILE", "cpu")

    def job(x: int) -> tuple[dict, dict | None]:
        folder = tmp_path / f"x={x}"
        record = sweep.run_job("99_fake", "smoke", {"x": x}, str(folder), threads=1)
        assert json.loads((folder / "job.json").read_text()) == record
        results = folder / "99_fake.json"
        return record, json.loads(results.read_text()) if results.exists() else None

    ok, written = job(0)
    assert ok["status"] == "done" and "check" not in ok and "error" not in ok
    assert written["profile"] == "smoke"
    assert written["metrics"] == {
        "x": 0,
        "torch_threads": 1,
        "OMP_NUM_THREADS": "1",
        "LLFC_PROFILE": "smoke",
    }
    assert os.environ["OMP_NUM_THREADS"] == "2" and os.environ["LLFC_PROFILE"] == "cpu"  # restored
    assert os.environ["LLFC_RESULTS"] == str(tmp_path / "results")

    check, written = job(1)  # the check cell fails after the results were written: a result
    assert check["status"] == "done" and check["check"] == "AssertionError: x = 1"
    assert written["metrics"]["x"] == 1
    assert sweep.finished(tmp_path / "x=1", "99_fake", "smoke", {"x": 1})

    failed, written = job(2)  # an ordinary cell, In [3] after the injected parameters, raises
    assert failed["status"] == "failed" and failed["error"] == "RuntimeError: x = 2 breaks"
    assert failed["cell"] == 3 and failed["params"] == {"x": 2} and written is None
    assert "x = 2 breaks" in failed["traceback"]
    assert not sweep.finished(tmp_path / "x=2", "99_fake", "smoke", {"x": 2})


@pytest.mark.slow
def test_smoke_grid_on_two_workers_then_rerun_skips(tmp_path, monkeypatch, fashion_mnist) -> None:
    from dask.distributed import Client, LocalCluster

    out = tmp_path / "sweep"
    grid = {"spawn_epoch": [0, 1], "seed": [0, 1], **SMALL}
    monkeypatch.setenv("LLFC_PROFILE", "cpu")  # an outside profile: the job must not take it
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as c:
        with Client(c) as client:
            assert len(client.nthreads()) == 2
            first = sweep.run_grid(CHAPTER, "smoke", grid, out, client=client)
    assert [r.status for r in first] == ["done"] * 4
    pairs = {(r.params["spawn_epoch"], r.params["seed"]) for r in first}
    assert pairs == {(0, 0), (0, 1), (1, 0), (1, 1)}
    for r in first:  # each job in its own folder, its results written there, in its profile
        assert (r.folder / f"{CHAPTER}.ipynb").exists()
        record = json.loads((r.folder / f"{CHAPTER}.json").read_text())
        assert record["profile"] == "smoke" and record["metrics"]["seed"] == r.params["seed"]
        assert "lemma1" not in record["metrics"]  # extras=False skipped the slider and Lemma 1
    assert not (tmp_path / "results").exists(), "jobs must not write into the default results"

    df = sweep.collect(out)
    assert len(df) == 4 and set(df["status"]) == {"done"}
    for key in ("test_loss", "test_err", "train_loss", "train_err"):
        assert all(math.isfinite(v) and v >= 0 for v in df[f"spawned_barrier.{key}"])
    table, figure = sweep.report(out)
    assert table == out / "table.csv" and len(table.read_text().splitlines()) == 5
    assert figure == out / "barrier_vs_spawn_epoch.png" and figure.stat().st_size > 10_000

    # A re-run finds all four finished: it starts no cluster and touches no file.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/*")}
    monkeypatch.setattr(sweep, "_local_client", lambda n: pytest.fail("started a cluster"))
    again = sweep.run_grid(CHAPTER, "smoke", grid, out)
    assert [r.status for r in again] == ["skipped"] * 4
    assert stamps == {p: p.stat().st_mtime_ns for p in out.glob("*/*")}


@pytest.mark.slow
def test_failing_job_is_reported_with_its_parameters(tmp_path, capsys, fashion_mnist) -> None:
    out = tmp_path / "sweep"
    # spawn_epoch 99 > the profile's epochs: the chapter raises in train_spawned_pair.
    argv = ["--chapter", CHAPTER, "--profile", "smoke", "--out", str(out), "--workers", "2"]
    argv += ["--grid", "spawn_epoch=1,99", "seed=0", "n_alphas=3", "train_eval_size=256"]
    assert sweep.main(argv) == 1
    printed = capsys.readouterr().out
    assert "1 done, 0 skipped, 1 failed" in printed
    assert re.search(
        r"FAILED \{'spawn_epoch': 99, 'seed': 0, 'n_alphas': 3, 'train_eval_size': 256\}: "
        r"ValueError: spawn_epoch must lie in \[0, epochs=\d+\], got 99 in cell \[\d+\]",
        printed,
    )
    failed = json.loads(
        (out / "n_alphas=3,seed=0,spawn_epoch=99,train_eval_size=256/job.json").read_text()
    )
    assert failed["status"] == "failed" and failed["params"]["spawn_epoch"] == 99
    assert isinstance(failed["cell"], int) and "train_spawned_pair" in failed["traceback"]
    df = sweep.collect(out).set_index("spawn_epoch")
    assert df.loc[1, "status"] == "done" and math.isfinite(df.loc[1, "spawned_barrier.test_loss"])
    assert df.loc[99, "status"] == "failed" and "spawn_epoch must lie" in df.loc[99, "error"]
    assert (out / "table.csv").exists() and (out / "barrier_vs_spawn_epoch.png").exists()
