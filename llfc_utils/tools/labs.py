"""Course labs: the chapters with their solutions removed, `python -m llfc_utils.tools.labs [--out labs]`.

Convention in `notebooks/NN_*.ipynb`: an exercise is a markdown cell tagged `exercise` (the
question), then a code cell tagged `solution` whose source starts with comment lines (the prompt)
followed by the answer, then a code cell tagged `check`: one call to the package's check,
`assert checks.exercise("NN.i", answer, ...)` (`llfc_utils.tools.checks`), which prints right or
wrong with a hint and never the expected value. In the lab the solution cell keeps its prompt and
raises NotImplementedError until the student writes an answer; the check cells stay as they are.

The lab is written for students: a note under the title (what to run first, the menus of
Jupyter and Colab, how long training takes on a laptop by the planner's estimate), the text under
"## Exercises" replaced by the lab's, outputs stripped and the book-only display tags dropped. It
runs the `cpu` profile wherever it runs, a Colab GPU runtime included (its parameters cell sets
`profile = "cpu"` and the cell after it sets $LLFC_PROFILE from it, which
`colab.choose_profile` obeys; a teacher changes that one line), and its install cell installs the
tagged release `v{llfc_utils.__version__}`, not the moving branch. The teacher's key, each lab with
its solutions in, goes to `labs/key/` (keep it; hand out only `labs/*.ipynb`). `labs/` is
generated, never committed.
"""

from __future__ import annotations

import argparse
import ast
import contextlib
import copy
import re
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
from nbformat import NotebookNode

import llfc_utils
from llfc_utils.config import PROFILES
from llfc_utils.tools import colab, run
from llfc_utils.tools.colab import BADGE_SVG, INSTALL_TAG
from llfc_utils.tools.paths import NOTEBOOKS, ROOT, chapters

OUTPUT = ROOT / "labs"
KEY = "key"  # the teacher's key: a subfolder of the labs' folder

SOLUTION, CHECK, PARAMETERS = "solution", "check", "parameters"
BOOK_ONLY_TAGS = {
    "remove-cell",
    "remove-input",
    "remove-output",
    "hide-cell",
    "hide-input",
    "hide-output",
}
ANSWER_LINE = "# YOUR ANSWER HERE"
ANSWER_STUB = (
    ANSWER_LINE + "\n"
    'raise NotImplementedError("Exercise: write your answer above, then run the check cell below")'
)
LAB_PROFILE = "cpu"
PROFILE_LINE = re.compile(r"^profile\s*=.*$", re.M)
PROFILE_TAG = "lab-profile"
PROFILE_CELL = (
    "# The lab runs the profile set above wherever it runs, a Colab GPU runtime included.\n"
    "import os\n"
    "\n"
    'os.environ["LLFC_PROFILE"] = profile'
)
INSTALL_REF = re.compile(r"(git\+https://github\.com/[^@\s\"]+)@[^\s\"]+")
NOTE_TAG, KEY_TAG = "lab-note", "lab-key-note"
NOTE = """**This is the course-lab version of the chapter.**

- **First**, run every cell from the top: in Jupyter, *Run > Run All Cells*; in Colab, upload
  this file (*File > Upload notebook*), then *Runtime > Run all*. On Colab the first code cell
  installs this book's package (release {release}, about a minute). The run stops at the first
  exercise you have not answered.
- **Time**: {time}
- **Each exercise**: write your answer in the cell that says `# YOUR ANSWER HERE` and delete the
  `raise NotImplementedError` line, run it, then run the check cell right after it. The check
  prints *right*, or *wrong* with a hint (and stops there: fix the answer and run both cells
  again). Then carry on from there: *Run > Run Selected Cell and All Below* in Jupyter,
  *Runtime > Run after* in Colab.
- **Profile**: the lab trains the small networks of the `cpu` profile, even on a GPU runtime. A
  teacher can choose another in the parameters cell (`profile = ...`, one of {profiles})."""
KEY_NOTE = """**Teacher's key: this lab with its solutions in. Do not hand it out.**

The students' version is the notebook of the same name one folder up."""
EXERCISES_HEADING = "## Exercises"
EXERCISES_INTRO = (
    "Each exercise asks for a value in a named variable. Write it in the cell under the question,\n"
    "run that cell, then run the check right after it."
)
# the "Open in Colab" badge line that `llfc_utils.tools.colab` writes under a chapter's title
BADGE_LINE = re.compile(r"^\[!\[[^\]]*\]\(" + re.escape(BADGE_SVG) + r"\)\]\([^)]*\)\n*", re.M)


def release() -> str:
    """The git tag of this package's release, `v` + `llfc_utils.__version__`."""
    return f"v{llfc_utils.__version__}"


def install_source() -> str:
    """The lab's install cell: the chapters' Colab install cell, pinned to this release's tag."""
    source = colab.install_source()
    if not INSTALL_REF.search(source):
        raise ValueError(
            "the Colab install cell no longer installs from `git+https://github.com/OWNER/NAME@REF`; "
            "update INSTALL_REF in llfc_utils/tools/labs.py"
        )
    return INSTALL_REF.sub(lambda m: f"{m.group(1)}@{release()}", source)


@contextlib.contextmanager
def _fresh_machine() -> Iterator[None]:
    """Point the checkpoint cache and the measured timings at an empty folder, as on a student's laptop."""
    with tempfile.TemporaryDirectory() as empty:
        fresh = {"LLFC_CACHE": empty, "LLFC_TIMINGS": str(Path(empty) / "timings.json")}
        with run.environment(fresh):
            yield


def _parameters(nb: NotebookNode) -> dict[str, Any]:
    """The names and literal values its `parameters` cell assigns (what papermill would inject over)."""
    values = {}
    for cell in (c for c in nb.cells if PARAMETERS in _tags(c)):
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                with contextlib.suppress(ValueError, TypeError, SyntaxError, AttributeError):
                    values[node.targets[0].id] = ast.literal_eval(node.value)
    return values


def laptop_seconds(nb: NotebookNode, name: str) -> float | None:
    """The planner's estimate of the training seconds of chapter `name` in the lab's profile on a
    2-core CPU with an empty cache, in float32 (a laptop CPU seldom has bfloat16, and the estimate
    must not depend on the machine that writes the labs); None if the planner does not know it."""
    from llfc_utils.tools import plan

    params = {**_parameters(nb), "profile": LAB_PROFILE}
    with _fresh_machine(), run.environment({"LLFC_AMP": "fp32"}):
        (chapter,) = plan.make([name], LAB_PROFILE, {name: params}, device="cpu")
    return None if chapter.runs is None else chapter.seconds


def time_line(seconds: float | None) -> str:
    """The note's sentence on how long the lab takes to run."""
    if seconds is None:
        return "the planner has no estimate for this chapter's training."
    from llfc_utils.tools.plan import duration

    return (
        f"its training takes about {duration(seconds)} on a 2-core laptop CPU (the planner's "
        "estimate, for a first run in float32); the evaluation adds from seconds to about 11 "
        "minutes, by chapter (How to run has the measured times). Trained networks are cached, "
        "so running it again is quicker."
    )


def _tags(cell: NotebookNode) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def prompt(source: str) -> str:
    """The leading comment lines of a solution cell (blank lines between them kept)."""
    lines = []
    for line in source.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines).strip("\n")


def exercises(nb: NotebookNode, name: str = "notebook") -> list[int]:
    """Indices of the `solution` cells of `nb`; ValueError if one breaks the convention."""
    found = []
    for i, cell in enumerate(nb.cells):
        if SOLUTION not in _tags(cell):
            continue
        where = f"{name}: cell {i} (tagged `solution`)"
        if cell.cell_type != "code":
            raise ValueError(f"{where} is a {cell.cell_type} cell; tag a code cell `solution`")
        if not prompt(cell.source):
            raise ValueError(
                f"{where} must start with comment lines telling the student what to write "
                "(e.g. `# Exercise 1: set k_pred to ...`); the lab keeps only those lines"
            )
        following = next((c for c in nb.cells[i + 1 :] if c.cell_type == "code"), None)
        if following is None or CHECK not in _tags(following):
            raise ValueError(
                f"{where} must be followed by a code cell tagged `check` that asserts the answer "
                "(so a student sees when it is right); add one right after it"
            )
        found.append(i)
    return found


def _set_profile(lab: NotebookNode, name: str) -> None:
    """Set `profile = "cpu"` in the lab's parameters cell and insert the cell that exports it."""
    found = [i for i, c in enumerate(lab.cells) if PARAMETERS in _tags(c)]
    if len(found) != 1 or not PROFILE_LINE.search(lab.cells[found[0]].source):
        raise ValueError(
            f"{name}: a chapter needs one cell tagged `parameters` with a `profile = ...` line "
            "(the lab sets its profile there)"
        )
    cell = lab.cells[found[0]]
    line = f'profile = "{LAB_PROFILE}"  # the lab\'s profile: one of {", ".join(sorted(PROFILES))}'
    cell.source = PROFILE_LINE.sub(lambda _: line, cell.source, count=1)
    export = nbformat.v4.new_code_cell(PROFILE_CELL, metadata={"tags": [PROFILE_TAG]})
    lab.cells.insert(found[0] + 1, export)


def make_lab(
    source_nb: NotebookNode,
    name: str = "notebook",
    seconds: float | None = None,
    key: bool = False,
) -> NotebookNode:
    """The lab version of one chapter notebook (a new notebook; the source is not changed).

    `seconds`: the planner's estimate of its training on a laptop (None: no estimate). With
    `key`, the teacher's key: the same lab with the solutions kept.
    """
    solutions = set(exercises(source_nb, name))
    lab = copy.deepcopy(source_nb)
    # the chapter's own claim checks (tagged `check`, not right after a solution) assert the
    # chapter's results, which would give answers away: a lab keeps only the exercise checks
    exercise_checks = {
        next(j for j in range(i + 1, len(lab.cells)) if lab.cells[j].cell_type == "code")
        for i in solutions
    }
    kept = [
        (j, c) for j, c in enumerate(lab.cells) if CHECK not in _tags(c) or j in exercise_checks
    ]
    solutions = {new for new, (old, _) in enumerate(kept) if old in solutions}
    lab.cells = [c for _, c in kept]
    for i, cell in enumerate(lab.cells):
        tags = [t for t in _tags(cell) if t not in BOOK_ONLY_TAGS]
        if "tags" in cell.metadata:
            cell.metadata["tags"] = tags
            if not tags:
                del cell.metadata["tags"]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if i in solutions and not key:
                cell.source = prompt(cell.source) + "\n" + ANSWER_STUB
        elif cell.source.startswith(EXERCISES_HEADING):
            cell.source = f"{EXERCISES_HEADING}\n\n{EXERCISES_INTRO}"
        if cell.cell_type == "markdown":
            cell.source = BADGE_LINE.sub("", cell.source)
    _set_profile(lab, name)
    lab.cells = [c for c in lab.cells if INSTALL_TAG not in _tags(c)]
    first_is_title = lab.cells and lab.cells[0].cell_type == "markdown"
    at = 1 if first_is_title else 0
    text = (
        KEY_NOTE
        if key
        else NOTE.format(
            release=release(), time=time_line(seconds), profiles=", ".join(sorted(PROFILES))
        )
    )
    note = nbformat.v4.new_markdown_cell(text, metadata={"tags": [KEY_TAG if key else NOTE_TAG]})
    install = nbformat.v4.new_code_cell(install_source(), metadata={"tags": [INSTALL_TAG]})
    lab.cells[at:at] = [note, install]
    lab.metadata.pop("papermill", None)
    return lab


def fill_solutions(lab_nb: NotebookNode, source_nb: NotebookNode) -> NotebookNode:
    """The lab with each exercise's answer put back from the source chapter (for testing)."""
    lab_cells = [i for i, c in enumerate(lab_nb.cells) if SOLUTION in _tags(c)]
    src_cells = [source_nb.cells[i] for i in exercises(source_nb)]
    if len(lab_cells) != len(src_cells):
        raise ValueError(
            f"the lab has {len(lab_cells)} exercises and the source {len(src_cells)}; "
            "regenerate the lab (`make labs`)"
        )
    filled = copy.deepcopy(lab_nb)
    for i, src in zip(lab_cells, src_cells, strict=True):
        lab_prompt = prompt(filled.cells[i].source).removesuffix(ANSWER_LINE).rstrip("\n")
        if lab_prompt != prompt(src.source):
            raise ValueError(
                f"lab cell {i}: its prompt differs from the source's; regenerate the lab (`make labs`)"
            )
        filled.cells[i].source = src.source
    return filled


def make_labs(src_dir: Path = NOTEBOOKS, out_dir: Path = OUTPUT) -> list[Path]:
    """Write the lab of every chapter `src_dir/NN_*.ipynb` into `out_dir`, and its key into
    `out_dir/key/`; return the labs' paths."""
    sources = chapters(src_dir)
    if not sources:
        raise FileNotFoundError(f"no chapter notebooks NN_*.ipynb in {src_dir}")
    labs = []
    for p in sources:  # every chapter is checked before the first lab is written
        nb = nbformat.read(p, as_version=4)
        seconds = laptop_seconds(nb, p.stem)
        labs.append((p.name, make_lab(nb, p.name, seconds), make_lab(nb, p.name, key=True)))
    out_dir = Path(out_dir)
    (out_dir / KEY).mkdir(parents=True, exist_ok=True)
    written = []
    for filename, lab, key in labs:
        nbformat.write(lab, out_dir / filename)
        nbformat.write(key, out_dir / KEY / filename)
        written.append(out_dir / filename)
    return written


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m llfc_utils.tools.labs", description=__doc__)
    parser.add_argument("--src", type=Path, default=NOTEBOOKS, help="chapter notebooks")
    parser.add_argument("--out", type=Path, default=OUTPUT, help="where the labs go")
    args = parser.parse_args(argv)
    try:
        written = make_labs(args.src, args.out)
    except (ValueError, FileNotFoundError) as e:
        print(f"labs: {e}", file=sys.stderr)
        return 1
    for path in written:
        n = len(exercises(nbformat.read(path, as_version=4)))
        print(f"{path}  ({n} exercise{'s' * (n != 1)})")
    print(
        f"{args.out / KEY}/: the teacher's key (the labs with their solutions); keep it, do not hand it out"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
