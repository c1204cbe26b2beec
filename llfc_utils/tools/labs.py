"""Course labs: the chapters with their solutions removed, `python -m llfc_utils.tools.labs [--out labs]`.

Convention in `notebooks/NN_*.ipynb`: an exercise is a markdown cell tagged `exercise` (the
question), then a code cell tagged `solution` whose source starts with comment lines (the prompt)
followed by the answer, then a code cell tagged `check` that asserts the answer. In the lab the
solution cell keeps its prompt and raises NotImplementedError until the student writes an answer;
the check cells stay, so the student sees when the answer is right. Outputs are stripped and the
book-only display tags dropped. `labs/` is generated, never committed.
"""

from __future__ import annotations

import argparse
import copy
import re
import sys
from pathlib import Path

import nbformat
from nbformat import NotebookNode

from llfc_utils.tools.colab import BADGE_SVG
from llfc_utils.tools.paths import NOTEBOOKS, ROOT, chapters

OUTPUT = ROOT / "labs"

SOLUTION, CHECK = "solution", "check"
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
NOTE_TAG = "lab-note"
NOTE = (
    "**This is the lab version of the chapter.** Each exercise's answer has been removed: write "
    "yours in the cell that says `# YOUR ANSWER HERE` (delete the `raise NotImplementedError` line), "
    "then run the check cell right after it. A check that passes prints nothing; a wrong answer "
    "stops with an `AssertionError` saying what is off. Run the cells in order from the top "
    "(Run > Run All Cells stops at the first exercise you have not done yet). The rendered book "
    "shows the solutions. This lab has no Colab badge, because the chapter's badge opens the "
    "book's version, with the answers; to work on the lab in Colab, upload it (File > Upload "
    "notebook)."
)
# the "Open in Colab" badge line that `llfc_utils.tools.colab` writes under a chapter's title
BADGE_LINE = re.compile(r"^\[!\[[^\]]*\]\(" + re.escape(BADGE_SVG) + r"\)\]\([^)]*\)\n*", re.M)


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


def make_lab(source_nb: NotebookNode, name: str = "notebook") -> NotebookNode:
    """The lab version of one chapter notebook (a new notebook; the source is not changed)."""
    solutions = set(exercises(source_nb, name))
    lab = copy.deepcopy(source_nb)
    for i, cell in enumerate(lab.cells):
        tags = [t for t in _tags(cell) if t not in BOOK_ONLY_TAGS]
        if "tags" in cell.metadata:
            cell.metadata["tags"] = tags
            if not tags:
                del cell.metadata["tags"]
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
            if i in solutions:
                cell.source = prompt(cell.source) + "\n" + ANSWER_STUB
    for cell in lab.cells:
        if cell.cell_type == "markdown":
            cell.source = BADGE_LINE.sub("", cell.source)
    note = nbformat.v4.new_markdown_cell(NOTE, metadata={"tags": [NOTE_TAG]})
    first_is_title = lab.cells and lab.cells[0].cell_type == "markdown"
    lab.cells.insert(1 if first_is_title else 0, note)
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
    """Write the lab of every chapter `src_dir/NN_*.ipynb` into `out_dir`; return the paths."""
    sources = chapters(src_dir)
    if not sources:
        raise FileNotFoundError(f"no chapter notebooks NN_*.ipynb in {src_dir}")
    labs = [(p.name, make_lab(nbformat.read(p, as_version=4), p.name)) for p in sources]
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for filename, lab in labs:  # every chapter is checked before the first lab is written
        out = out_dir / filename
        nbformat.write(lab, out)
        written.append(out)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
