"""Where things are: the repository root, the chapter sources, the generated book and its results."""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent  # llfc_utils/
ROOT = PACKAGE.parent  # the repository (for an editable install or a checkout)
NOTEBOOKS = ROOT / "notebooks"  # chapter sources
BOOK = ROOT / "book"  # executed chapters and book pages
RESULTS = BOOK / "results"  # one JSON per chapter
CONFIG = ROOT / "_config.yml"
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"  # a chapter is a notebook named NN_name.ipynb


def is_chapter(name: str) -> bool:
    """Whether the file or page `name` (NN_name.ipynb, NN_name.html, NN_name) is a chapter."""
    return fnmatch(Path(name).stem + ".ipynb", CHAPTER_GLOB)


def chapters(folder: Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks in `folder`, in book order."""
    return sorted(Path(folder).glob(CHAPTER_GLOB))
