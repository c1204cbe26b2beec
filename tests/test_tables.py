"""Chapters build their tables with pandas (a DataFrame, a Styler for number formats), never by
gluing Markdown strings together."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from llfc_utils.tools.paths import NOTEBOOKS

# A string literal holding a Markdown table's separator row ("| --- |", "|---|", "| --- " * 5), or
# the claims table as Markdown (results.markdown; results.table gives a DataFrame's Styler).
SEPARATOR = re.compile(r"""["'][^"'\n]*\|\s*:?-{3,}|results\.markdown\(""")


def markdown_tables(path: Path) -> list[str]:
    """The lines of `path`'s code cells that build a Markdown table from strings."""
    cells = json.loads(path.read_text())["cells"]
    return [
        line.strip()
        for c in cells
        if c["cell_type"] == "code"
        for line in "".join(c["source"]).splitlines()
        if SEPARATOR.search(line)
    ]


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_no_chapter_builds_a_markdown_table_by_hand(path: Path) -> None:
    found = markdown_tables(path)
    assert not found, f"{path.name} builds Markdown tables by hand (use a DataFrame): {found}"


def test_the_check_sees_a_hand_built_table(tmp_path: Path) -> None:
    nb = tmp_path / "x.ipynb"
    cell = {"cell_type": "code", "source": ['rows = ["| a | b |", "| --- " * 2 + "|"]\n']}
    nb.write_text(json.dumps({"cells": [cell]}))
    assert markdown_tables(nb) == ['rows = ["| a | b |", "| --- " * 2 + "|"]']
