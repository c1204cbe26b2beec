"""The chapters' prose quotes no result typed by hand: every number a sentence quotes is glued from the run."""

from __future__ import annotations

import json
import re

import pytest

from llfc_utils.tools import paths

# What may carry a number in prose: glue roles, math, inline code, citations of the paper's
# sections, figures, equations and appendices, links.
ALLOWED = [
    r"\{glue(:\w+)?\}`[^`]*`",
    r"\$\$.*?\$\$",
    r"\$[^$]*\$",
    r"`[^`]*`",
    r"\b(Sec|Section|Appendix|App|Fig|Figure|Eq|Table|Def|Definition|Lemma|Theorem)s?\.?\s*[A-Z]?\.?\d+(\.\d+)*(-\d+)?",
    r"\]\([^)]*\)",
    r"\{cite\w*\}`[^`]*`",
]
NUMBER = re.compile(r"\d+\.\d+|\d+(\.\d+)?\s*%")


def typed_numbers(markdown: str) -> list[str]:
    """The decimals and percentages of `markdown` outside the allowed places."""
    text = markdown
    for pattern in ALLOWED:
        text = re.sub(pattern, " ", text, flags=re.S)
    return [m.group(0) for m in NUMBER.finditer(text)]


def test_the_scan_finds_typed_numbers_and_spares_glue() -> None:
    assert typed_numbers("the barrier is 0.42 and 3 % of units") == ["0.42", "3 %"]
    assert typed_numbers("barrier {glue:md}`b_mlp` at $\\alpha = 0.5$ (Sec. 5.2, App. B.1.2)") == []


@pytest.mark.parametrize("path", paths.chapters(), ids=lambda p: p.stem)
def test_chapter_prose_has_no_typed_result(path) -> None:
    cells = json.loads(path.read_text())["cells"]
    found = {
        i: typed_numbers("".join(c["source"]))
        for i, c in enumerate(cells)
        if c["cell_type"] == "markdown"
    }
    found = {i: v for i, v in found.items() if v}
    assert not found, f"{path.name}: numbers typed into prose (glue them from the run): {found}"


def repeated_paragraphs(markdown: str, min_sentence: int = 60) -> list[str]:
    """The paragraphs of `markdown`, and its sentences of `min_sentence` characters or more, that
    appear more than once (the opening words of each)."""
    paragraphs = [p.strip() for p in markdown.split("\n\n") if p.strip()]
    flat = " ".join(" ".join(p.split()) for p in paragraphs)
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", flat) if len(s) >= min_sentence]
    twice = {p for p in paragraphs if paragraphs.count(p) > 1}
    twice |= {s for s in sentences if sentences.count(s) > 1}
    return sorted({t[:60] for t in twice})


def test_the_repeat_scan_finds_a_repeated_paragraph() -> None:
    assert repeated_paragraphs("A claim.\n\nA test.\n\nA claim.") == ["A claim."]
    assert repeated_paragraphs("A claim.\n\nA test.") == []
    long = "This sentence is long enough to count as a sentence of a chapter's prose."
    assert repeated_paragraphs(f"Start. {long}\n{long} End.") == [long[:60]]
    assert repeated_paragraphs(f"Start. {long} End.") == []


@pytest.mark.parametrize("path", paths.chapters(), ids=lambda p: p.stem)
def test_chapter_prose_repeats_no_paragraph(path) -> None:
    cells = json.loads(path.read_text())["cells"]
    text = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    assert not repeated_paragraphs(text), f"{path.name}: a paragraph or sentence appears twice"
