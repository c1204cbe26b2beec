"""Course labs: solutions out, prompts and checks in, and the round trip back to the chapter."""

from __future__ import annotations

import os
import re
import sys

import nbformat
import papermill as pm
import pytest
import torch

import llfc_utils
from llfc_utils import train
from llfc_utils.tools import colab, labs, paths, run


def _code(source: str, tags: list[str], output: str | None = None):
    cell = nbformat.v4.new_code_cell(source, metadata={"tags": tags} if tags else {})
    if output is not None:
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=output)]
        cell.execution_count = 3
    return cell


def _chapter(check_after: bool = True, prompt: bool = True):
    """A synthetic chapter with two exercises, in the lead's convention."""
    answer = "k_pred = 2 * 21\nprint(k_pred)"
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_markdown_cell("# A chapter"),
        _code('profile = "cpu"', ["parameters"]),
        _code("import math", [], output="done\n"),
        nbformat.v4.new_markdown_cell(
            "**Exercise 1.** Compute k.", metadata={"tags": ["exercise"]}
        ),
        _code(
            ("# Exercise 1: set `k_pred` to twice 21.\n#\n# (one line)\n" if prompt else "")
            + answer,
            ["solution", "hide-input"],
            output="42\n",
        ),
        _code("assert k_pred == 42, 'k_pred should be 42'", ["check", "remove-cell"]),
        nbformat.v4.new_markdown_cell("**Exercise 2.**", metadata={"tags": ["exercise"]}),
        _code(
            "# Exercise 2: set `root` to the square root of k_pred.\nroot = math.sqrt(k_pred)",
            ["solution", "hide-input"],
        ),
        nbformat.v4.new_markdown_cell("Then check it."),
    ]
    if check_after:
        nb.cells.append(_code("assert abs(root**2 - 42) < 1e-9", ["check", "remove-cell"]))
    return nb


def _sources(nb, kind: str = "code") -> list[str]:
    return [c.source for c in nb.cells if c.cell_type == kind]


def _tagged(nb, tag: str) -> list:
    return [c for c in nb.cells if tag in c.metadata.get("tags", [])]


# boilerplate a solution may share with the chapter: blank, comment, import, closing bracket lines
TRIVIAL = re.compile(r"^(#.*|import .*|from \S+ import .*|[)\]}]+,?|with torch\.no_grad\(\):)?$")


def _answer_lines(source: str) -> set[str]:
    """The non-trivial lines of a solution cell, stripped."""
    return {line.strip() for line in source.splitlines() if not TRIVIAL.match(line.strip())}


def test_lab_removes_the_answers_and_keeps_prompts_and_checks() -> None:
    src = _chapter()
    lab = labs.make_lab(src, "01_x.ipynb")
    code = _sources(lab)
    assert "k_pred = 2 * 21" not in "".join(code) and "math.sqrt" not in "".join(code)
    first = _tagged(lab, "solution")[0]
    assert first.source.startswith("# Exercise 1: set `k_pred` to twice 21.\n#\n# (one line)\n")
    assert first.source.endswith(labs.ANSWER_STUB)
    assert first.metadata["tags"] == ["solution"], "hide-input is dropped, solution kept"
    checks = [c for c in lab.cells if "check" in c.metadata.get("tags", [])]
    assert [c.source for c in checks] == [
        c.source for c in src.cells if "check" in c.metadata.get("tags", [])
    ]
    assert all(c.metadata["tags"] == ["check"] for c in checks), "remove-cell is dropped"
    assert all(
        not c.outputs and c.execution_count is None for c in lab.cells if c.cell_type == "code"
    )
    assert lab.cells[0].source == "# A chapter" and "lab version" in lab.cells[1].source
    assert _sources(lab, "markdown")[2:] == _sources(src, "markdown")[1:], "questions unchanged"
    assert src.cells[4].outputs, "the source notebook is not modified"
    assert src.cells[1].source == 'profile = "cpu"' and len(src.cells) == 10


def test_lab_drops_the_colab_badge_that_opens_the_solutions() -> None:
    src = _chapter()
    badge = colab.badge_markdown("01_x")
    src.cells[0].source = f"# A chapter\n\n{badge}\n\n**The claim.** Something."
    lab = labs.make_lab(src, "01_x.ipynb")
    assert lab.cells[0].source == "# A chapter\n\n**The claim.** Something."
    assert colab.BADGE_SVG not in "".join(c.source for c in lab.cells)
    assert "Upload notebook" in lab.cells[1].source


def test_lab_solution_cell_raises_until_answered() -> None:
    lab = labs.make_lab(_chapter())
    with pytest.raises(NotImplementedError, match="write your answer above"):
        exec(compile(_tagged(lab, "solution")[0].source, "lab", "exec"), {})


def test_filling_the_solutions_back_gives_the_teachers_key() -> None:
    src = _chapter()
    filled = labs.fill_solutions(labs.make_lab(src), src)
    key = labs.make_lab(src, key=True)
    assert _sources(filled) == _sources(key)
    assert [c.source for c in _tagged(key, "solution")] == [
        c.source for c in _tagged(src, "solution")
    ]
    assert "Do not hand it out" in key.cells[1].source


def test_lab_installs_the_release_and_runs_the_cpu_profile_even_on_a_colab_gpu(
    monkeypatch,
) -> None:
    lab = labs.make_lab(_chapter())
    (install,) = _tagged(lab, colab.INSTALL_TAG)
    assert f'@v{llfc_utils.__version__}"' in install.source and "@main" not in install.source
    assert lab.cells.index(install) == 2, "the first code cell a student runs"
    (params,) = _tagged(lab, "parameters")
    (export,) = _tagged(lab, labs.PROFILE_TAG)
    assert lab.cells.index(export) == lab.cells.index(params) + 1
    assert params.source.startswith('profile = "cpu"  #')
    monkeypatch.setitem(sys.modules, "google.colab", object())  # a Colab runtime with a GPU
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    for teacher, expected in [(None, "cpu"), ('profile = "smoke"', "smoke")]:
        monkeypatch.delenv("LLFC_PROFILE", raising=False)
        namespace: dict = {}
        exec(params.source, namespace)
        if teacher:
            exec(teacher, namespace)  # the teacher's line (or papermill's injected one)
        exec(export.source, namespace)
        assert colab.choose_profile(namespace["profile"]) == expected


def test_lab_text_is_written_for_students() -> None:
    src = _chapter()
    src.cells.insert(3, nbformat.v4.new_markdown_cell("## Exercises\n\nEach has a hidden check."))
    lab = labs.make_lab(src, seconds=600)
    note = lab.cells[1].source
    assert "Runtime > Run all" in note and "File > Upload notebook" in note
    assert "about 10 min on a 2-core laptop CPU" in note
    assert f"v{llfc_utils.__version__}" in note
    text = "".join(_sources(lab, "markdown")).lower()
    assert "hidden" not in text and "removed" not in text
    assert "## Exercises\n\n" + labs.EXERCISES_INTRO in _sources(lab, "markdown")
    assert "no estimate" in labs.make_lab(src, seconds=None).cells[1].source


def test_laptop_estimate_comes_from_the_planner_with_an_empty_cache(monkeypatch) -> None:
    monkeypatch.setenv("LLFC_TIMINGS", "/nonexistent/timings.json")
    nb = nbformat.read(run.NOTEBOOKS / "00_training.ipynb", as_version=4)
    seconds = labs.laptop_seconds(nb, "00_training")
    assert seconds is not None and 10 < seconds < 3600
    # priced in float32 whatever the machine that writes the labs: the same with bf16 or without
    has_bf16 = train.cpu_has_bf16()
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: not has_bf16)
    assert labs.laptop_seconds(nb, "00_training") == seconds
    assert "LLFC_AMP" not in os.environ
    assert os.environ["LLFC_TIMINGS"] == "/nonexistent/timings.json", "restored"


def test_fill_solutions_refuses_a_stale_lab() -> None:
    src = _chapter()
    lab = labs.make_lab(src)
    src.cells[4].source = src.cells[4].source.replace("twice 21", "thrice 14")
    with pytest.raises(ValueError, match="prompt differs"):
        labs.fill_solutions(lab, src)


def test_solution_without_prompt_is_an_error(tmp_path) -> None:
    nbformat.write(_chapter(prompt=False), tmp_path / "03_bad.ipynb")
    with pytest.raises(ValueError, match=r"03_bad.ipynb: cell 4 .*must start with comment lines"):
        labs.make_labs(tmp_path, tmp_path / "labs")
    assert not (tmp_path / "labs").exists(), "nothing is written when a chapter is wrong"


def test_solution_without_check_is_an_error(tmp_path) -> None:
    nbformat.write(_chapter(check_after=False), tmp_path / "02_bad.ipynb")
    with pytest.raises(
        ValueError, match=r"02_bad.ipynb: cell 7 .*followed by a code cell tagged `check`"
    ):
        labs.make_labs(tmp_path, tmp_path / "labs")
    assert labs.main(["--src", str(tmp_path), "--out", str(tmp_path / "labs")]) == 1


def test_make_labs_writes_one_lab_per_chapter(tmp_path) -> None:
    nbformat.write(_chapter(), tmp_path / "01_a.ipynb")
    nbformat.write(_chapter(), tmp_path / "02_b.ipynb")
    nbformat.write(_chapter(prompt=False), tmp_path / "results.ipynb")  # not a chapter: ignored
    out = labs.make_labs(tmp_path, tmp_path / "labs")
    assert [p.name for p in out] == ["01_a.ipynb", "02_b.ipynb"]
    lab = nbformat.read(out[0], as_version=4)
    nbformat.validate(lab)
    assert labs.ANSWER_STUB in _tagged(lab, "solution")[0].source
    key = nbformat.read(tmp_path / "labs" / labs.KEY / "01_a.ipynb", as_version=4)
    assert "k_pred = 2 * 21" in _tagged(key, "solution")[0].source
    assert sorted(p.name for p in (tmp_path / "labs" / labs.KEY).iterdir()) == [
        "01_a.ipynb",
        "02_b.ipynb",
    ]
    with pytest.raises(FileNotFoundError, match="no chapter notebooks"):
        labs.make_labs(tmp_path / "labs" / "nothing", tmp_path / "x")


@pytest.mark.parametrize("name", run.chapters())
def test_real_chapter_has_at_least_two_checked_exercises(name: str) -> None:
    nb = nbformat.read(run.NOTEBOOKS / f"{name}.ipynb", as_version=4)
    found = labs.exercises(nb, f"{name}.ipynb")  # raises when a solution has no prompt or check
    assert len(found) >= 2, (
        f"{name}: {len(found)} exercise(s); each chapter needs at least 2 (a markdown cell tagged "
        "`exercise`, a code cell tagged `solution` starting with the prompt, a cell tagged `check`)"
    )
    for i in found:
        before = [c for c in nb.cells[:i] if c.cell_type == "markdown"]
        assert before and "exercise" in before[-1].metadata.get("tags", []), (
            f"{name}: cell {i}: the markdown cell before a solution should be tagged `exercise`"
        )
    assert colab.BADGE_SVG in nb.cells[0].source  # the chapter has its badge ...
    lab = labs.make_lab(nb, f"{name}.ipynb")
    assert colab.BADGE_SVG not in "".join(c.source for c in lab.cells)  # ... its lab does not
    assert lab.cells[0].source.startswith("# ")


@pytest.mark.parametrize("name", run.chapters())
def test_real_lab_checks_call_the_package_and_give_nothing_away(name: str) -> None:
    nb = nbformat.read(run.NOTEBOOKS / f"{name}.ipynb", as_version=4)
    lab = labs.make_lab(nb, f"{name}.ipynb")
    lab_lines = {
        line.strip() for c in lab.cells if c.cell_type == "code" for line in c.source.splitlines()
    }
    check_lines = set()
    for n, i in enumerate(labs.exercises(nb), 1):
        check = next(c for c in nb.cells[i + 1 :] if c.cell_type == "code")
        assert f'checks.exercise("{name[:2]}.{n}", ' in check.source.replace("(\n    ", "("), (
            f"{name}: the check of exercise {n} should be one call, "
            f'`assert checks.exercise("{name[:2]}.{n}", answer, ...)`'
        )
        check_lines |= {line.strip() for line in check.source.splitlines()}
        answer = _answer_lines(nb.cells[i].source)
        assert answer, f"{name}: exercise {n}'s solution has no line to test"
        assert not answer & lab_lines, f"{name}: the lab shows solution lines {answer & lab_lines}"
        assert not answer & check_lines, f"{name}: a check cell repeats {answer & check_lines}"
    assert "hidden" not in lab.cells[1].source.lower()
    text = next(c.source for c in lab.cells if c.source.startswith("## Exercises"))
    assert "hidden" not in text and "removed" not in text


@pytest.mark.slow
def test_real_lab_runs_with_solutions_and_stops_without(tmp_path, shared_smoke_cache) -> None:
    with_exercises = [
        name
        for name in run.chapters()
        if labs.exercises(nbformat.read(run.NOTEBOOKS / f"{name}.ipynb", as_version=4))
    ]
    assert with_exercises, "no chapter has exercises yet (cells tagged `solution` and `check`)"
    name = with_exercises[0]
    labs.make_labs(run.NOTEBOOKS, tmp_path / "labs")
    lab_path = tmp_path / "labs" / f"{name}.ipynb"
    lab = nbformat.read(lab_path, as_version=4)
    source = nbformat.read(run.NOTEBOOKS / f"{name}.ipynb", as_version=4)
    filled_path = tmp_path / f"{name}_filled.ipynb"
    nbformat.write(labs.fill_solutions(lab, source), filled_path)

    def execute(path):
        out = tmp_path / f"out_{path.name}"
        pm.execute_notebook(
            str(path),
            str(out),
            parameters={"profile": "smoke"},
            cwd=str(run.ROOT),
            progress_bar=False,
            kernel_name="python3",
        )
        return out

    execute(filled_path)  # every check passes with the answers in
    with pytest.raises(pm.PapermillExecutionError) as err:
        execute(lab_path)
    assert err.value.ename == "NotImplementedError"
    failed = nbformat.read(tmp_path / f"out_{lab_path.name}", as_version=4)
    errors = [
        c for c in failed.cells if any(o.output_type == "error" for o in c.get("outputs", []))
    ]
    assert len(errors) == 1 and errors[0].source == lab.cells[labs.exercises(lab)[0]].source, (
        "the unfilled lab stops at its first exercise"
    )


def _run_to_first_exercise(name: str, tmp_path) -> None:
    """Execute the lab of chapter `name` in the smoke profile, up to its first exercise."""
    lab = labs.make_lab(nbformat.read(run.NOTEBOOKS / f"{name}.ipynb", as_version=4), name)
    lab.cells = lab.cells[: labs.exercises(lab, name)[0]]
    lab.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(lab, path)
    pm.execute_notebook(
        str(path),
        str(tmp_path / f"out_{name}.ipynb"),
        parameters={"profile": "smoke"},
        cwd=str(tmp_path),
        progress_bar=False,
        kernel_name="python3",
    )


FAST_LABS = ["00_training"]  # the others train for longer than a unit test should


@pytest.mark.parametrize(
    "name",
    [n if n in FAST_LABS else pytest.param(n, marks=pytest.mark.slow) for n in run.chapters()],
)
def test_real_lab_runs_to_its_first_exercise_in_the_smoke_profile(
    name: str, tmp_path, shared_smoke_cache
) -> None:
    _run_to_first_exercise(name, tmp_path)


def test_a_lab_drops_the_chapters_claim_checks() -> None:
    """Claim checks assert the chapter's results (they would give answers away); exercise checks stay."""
    for path in paths.chapters():
        source = nbformat.read(path, as_version=4)
        lab = labs.make_lab(source, path.stem)
        checks_in_lab = [c for c in lab.cells if "check" in c.metadata.get("tags", [])]
        assert checks_in_lab and all("checks.exercise(" in c.source for c in checks_in_lab), path
