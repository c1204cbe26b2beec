"""Every chapter runs end to end in the `smoke` profile, including its tagged check cells."""

from __future__ import annotations

import json

import pytest

from llfc_utils import results, run

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
@pytest.mark.parametrize("name", CHAPTERS)
def test_chapter_runs_in_smoke_profile(name: str, tmp_path) -> None:
    out = run.run_chapter(name, "smoke", {}, out_dir=tmp_path)
    nb = json.loads(out.read_text())
    errors = [o for c in nb["cells"] for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert not errors
    assert nb["metadata"]["papermill"]["parameters"]["profile"] == "smoke"
    record = json.loads((results.results_dir() / f"{name}.json").read_text())
    assert record["chapter"] == name and record["profile"] == "smoke"
    assert record["claims"] and all(
        set(c) == {"id", "claim", "ours", "paper", "holds"} for c in record["claims"]
    )


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


def test_results_page_collects_the_chapters_claims(tmp_path) -> None:
    results.write("01_x", "smoke", [results.claim("a", "claim A", "1.0", "paper A", True)], {})
    results.write("02_y", "smoke", [results.claim("b", "claim B", "2.0", "paper B", False)], {})
    out = run.run_chapter(run.RESULTS_PAGE, "smoke", {}, out_dir=tmp_path)
    text = json.dumps(json.loads(out.read_text())["cells"])
    assert "1 of 2 claims hold" in text and "claim A" in text and "claim B" in text
