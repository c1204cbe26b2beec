"""Every chapter runs end to end in the `smoke` profile, including its tagged check cells."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from llfc_utils.tools import results, run

CHAPTERS = run.chapters()


def test_there_are_chapters() -> None:
    assert "00_training" in CHAPTERS


@pytest.mark.parametrize("name", [*CHAPTERS, run.RESULTS_PAGE])
def test_chapter_source_is_clean(name: str) -> None:
    nb = json.loads((run.NOTEBOOKS / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    assert "profile" in "".join(tagged[0]["source"])


@pytest.mark.slow
def test_every_chapter_runs_in_the_smoke_profile_with_its_checks(smoke_book) -> None:
    """The runner executed each chapter (fixture `smoke_book`): every check and exercise cell ran
    without an error (papermill stops at the first), and each chapter wrote its claims."""
    book = smoke_book / "book"
    for name in CHAPTERS:
        nb = json.loads((book / f"{name}.ipynb").read_text())
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        tags = [t for c in code for t in c["metadata"].get("tags", [])]
        assert "check" in tags, f"{name}: no check cell"
        assert all(c.get("execution_count") for c in code), f"{name}: a cell did not run"
        assert not any(o.get("output_type") == "error" for c in code for o in c.get("outputs", []))
    results_dir = book / "results"
    for name in CHAPTERS:  # each chapter wrote its claims, in the profile it was told to use
        record = json.loads((results_dir / f"{name}.json").read_text())
        assert record["chapter"] == name and record["profile"] == "smoke"
        assert record["claims"] and all(
            set(c) == {"id", "claim", "ours", "paper", "holds"} for c in record["claims"]
        )
    lemma1 = json.loads((results_dir / "01_lmc_basics.json").read_text())["metrics"]
    assert lemma1["lemma1"] and all(
        set(v) == {"max_err_interp", "max_err_logit_interp", "bound"}
        for v in lemma1["lemma1"].values()
    )
    thm = json.loads((results_dir / "05_commutativity.json").read_text())["metrics"]
    assert all(
        {"defect", "predicted"} <= set(v)
        for layers in thm["theorem1"].values()
        for v in layers.values()
    )


NBVAL_CHAPTERS = ["00_training"]  # every chapter runs in the smoke book above


@pytest.mark.slow
def test_chapters_as_committed_pass_nbval_with_llfc_profile_smoke(
    tmp_path, shared_smoke_cache
) -> None:
    """nbval (lax) runs chapters as committed, their profile from $LLFC_PROFILE (what a reader
    gets in Jupyter), not injected by the runner: the path the smoke book does not take."""
    env = {**os.environ, "LLFC_PROFILE": "smoke", "OMP_NUM_THREADS": "2"}  # cache: shared
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--nbval-lax",
        "--nbval-current-env",
        "--nbval-cell-timeout=900",
        f"--nbval-sanitize-with={run.ROOT / 'tests' / 'nbval_sanitize.cfg'}",
        *(str(run.NOTEBOOKS / f"{name}.ipynb") for name in NBVAL_CHAPTERS),
    ]
    proc = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout[-6000:] + proc.stderr[-2000:]
    assert " passed" in proc.stdout and "failed" not in proc.stdout, proc.stdout[-2000:]
    for name in NBVAL_CHAPTERS:
        record = json.loads((results.results_dir() / f"{name}.json").read_text())
        assert record["chapter"] == name and record["profile"] == "smoke"


def test_runner_rejects_unknown_or_mistyped_parameters() -> None:
    with pytest.raises(ValueError, match="no parameter 'sead'; valid: profile, seed"):
        run.check_parameters("00_training", {"sead": 3})
    with pytest.raises(ValueError, match="'seed' must be int"):
        run.check_parameters("00_training", {"seed": "three"})
    with pytest.raises(ValueError, match="unknown profile 'tpu'"):
        run.check_parameters("00_training", {"profile": "tpu"})
    run.check_parameters("00_training", {"profile": "smoke", "seed": 3})
    with pytest.raises(SystemExit):
        run.main(["--chapters", "00_training", "-p", "seed", "x"])
    with pytest.raises(SystemExit):
        run.main(["--chapters", "no_such_chapter"])


def test_results_page_collects_the_chapters_claims(tmp_path) -> None:
    results.write("01_x", "smoke", [results.claim("a", "claim A", "1.0", "paper A", True)], {})
    results.write("02_y", "smoke", [results.claim("b", "claim B", "2.0", "paper B", False)], {})
    out = run.run_chapter(run.RESULTS_PAGE, "smoke", {}, out_dir=tmp_path)
    text = json.dumps(json.loads(out.read_text())["cells"])
    assert "1 of 2 claims hold" in text and "claim A" in text and "claim B" in text


def test_an_up_to_date_chapter_is_not_re_run(tmp_path) -> None:
    """A second `make book` with nothing changed skips chapters; any change makes them run."""
    out = tmp_path / "book"
    out.mkdir()
    nb = {
        "cells": [{"cell_type": "code", "outputs": [], "source": "", "metadata": {}}],
        "metadata": {"papermill": {"parameters": {"profile": "smoke", "seed": 3}}},
    }
    path = out / "00_training.ipynb"
    path.write_text(json.dumps(nb))
    results.write("00_training", "smoke", [], {})
    assert not run.up_to_date("00_training", "smoke", {"seed": 3}, out)  # not run to the end
    run._stamp(path, "00_training", "smoke", {"seed": 3})  # as run_chapter does when it ends
    nb = json.loads(path.read_text())
    assert run.up_to_date("00_training", "smoke", {"seed": 3}, out)
    assert not run.up_to_date("00_training", "smoke", {"seed": 4}, out)  # other parameters
    assert not run.up_to_date("00_training", "cpu", {"seed": 3}, out)  # other profile
    nb["cells"][0]["outputs"] = [{"output_type": "error", "ename": "E", "evalue": ""}]
    path.write_text(json.dumps(nb))
    assert not run.up_to_date("00_training", "smoke", {"seed": 3}, out)  # it failed
    nb["cells"][0]["outputs"] = []
    path.write_text(json.dumps(nb))
    assert run.up_to_date("00_training", "smoke", {"seed": 3}, out)
    (results.results_dir() / "00_training.json").unlink()
    assert not run.up_to_date("00_training", "smoke", {"seed": 3}, out)  # no results
