"""Every chapter runs end to end in the `smoke` profile, including its tagged check cells."""

from __future__ import annotations

import json

import pytest

from llfc_utils import run

CHAPTERS = run.chapters()


def test_there_are_chapters() -> None:
    assert "00_training" in CHAPTERS


@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_source_is_clean(name: str) -> None:
    nb = json.loads((run.NOTEBOOKS / f"{name}.ipynb").read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c.get("outputs") or c.get("execution_count") for c in code), "strip outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged `parameters`"
    assert "profile" in "".join(tagged[0]["source"])


@pytest.mark.slow
@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_runs_in_smoke_profile(name: str, tmp_path) -> None:
    out = run.run_chapter(name, "smoke", {}, out_dir=tmp_path)
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    assert nb["metadata"]["papermill"]["parameters"]["profile"] == "smoke"


def test_runner_rejects_unknown_or_mistyped_parameters() -> None:
    with pytest.raises(ValueError, match="no parameter 'sead'; valid: profile, seed"):
        run.check_parameters("00_training", {"sead": 3})
    with pytest.raises(ValueError, match="'seed' must be int"):
        run.check_parameters("00_training", {"seed": "three"})
    with pytest.raises(ValueError, match="unknown profile 'gpu'"):
        run.check_parameters("00_training", {"profile": "gpu"})
    run.check_parameters("00_training", {"profile": "smoke", "seed": 3})
    with pytest.raises(SystemExit):
        run.main(["--chapters", "00_training", "-p", "seed", "x"])
    with pytest.raises(SystemExit):
        run.main(["--chapters", "no_such_chapter"])
