"""The layout shows the architecture: the science in llfc_utils/ never imports the book tooling."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from llfc_utils.tools.paths import PACKAGE

SCIENCE = sorted(p for p in PACKAGE.glob("*.py"))
FORBIDDEN = ("llfc_utils.tools", "IPython", "papermill", "selenium", "dask", "nbformat", "yaml")


def imported_modules(path: Path) -> set[str]:
    """Every module `path` imports, at any depth of the file (late imports included)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
            found |= {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_the_science_layer_is_the_package_top_level() -> None:
    names = {p.stem for p in SCIENCE}
    assert {"config", "data", "models", "train", "metrics", "permute", "plots"} <= names
    assert not names & {"run", "plan", "sweep", "labs", "colab", "sitecheck", "results"}


@pytest.mark.parametrize("path", SCIENCE, ids=lambda p: p.name)
def test_science_module_does_not_import_the_tooling(path: Path) -> None:
    bad = sorted(
        m for m in imported_modules(path) if any(m == f or m.startswith(f + ".") for f in FORBIDDEN)
    )
    assert not bad, f"{path.name} imports {bad}: the science layer takes only the numerical stack"


def test_the_checker_sees_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from llfc_utils.tools import run\n    import IPython.display\n")
    assert {"llfc_utils.tools.run", "IPython.display"} <= imported_modules(bad)


def test_the_bibliography_parses_and_has_every_key_the_chapters_cite() -> None:
    """A broken references.bib stops the whole site build, after every chapter has run."""
    import json
    import re

    from pybtex.database import parse_file

    root = PACKAGE.parent
    keys = set(parse_file(str(root / "book" / "references.bib")).entries)
    cited = set()
    for path in [*(root / "notebooks").glob("*.ipynb"), *(root / "book").glob("*.md")]:
        text = path.read_text()
        if path.suffix == ".ipynb":
            text = "".join("".join(c["source"]) for c in json.loads(text)["cells"])
        for group in re.findall(r"\{cite[a-z:]*\}`([^`]+)`", text):
            cited.update(k.strip() for k in group.split(","))
    assert cited and not cited - keys, f"cited but not in references.bib: {sorted(cited - keys)}"


def test_the_bibliography_check_sees_a_missing_brace(tmp_path: Path) -> None:
    from pybtex.database import parse_file
    from pybtex.scanner import PybtexSyntaxError

    bib = tmp_path / "broken.bib"
    bib.write_text("@misc{a,\n  title = {A},\n  year = {2023}\n\n@misc{b,\n  title = {B}\n}\n")
    with pytest.raises(PybtexSyntaxError):
        parse_file(str(bib))
