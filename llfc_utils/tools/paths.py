"""Where things are: the chapter sources, the generated book and its results, in a checkout or installed.

In a checkout (or an editable install) everything is in the repository: `notebooks/`, `book/`,
`book/results/`. An installed package carries the chapters as package data
(`llfc_utils/notebooks/`) and writes what it generates under the user's data folder
($LLFC_HOME, default ~/.cache/llfc_book): never into site-packages.
"""

from __future__ import annotations

from fnmatch import fnmatch
from pathlib import Path

from llfc_utils import settings

PACKAGE = Path(__file__).resolve().parent.parent  # llfc_utils/
ROOT = PACKAGE.parent  # the repository for a checkout or an editable install; else site-packages
CHECKOUT = (ROOT / "pyproject.toml").is_file() and (ROOT / "notebooks").is_dir()
NOTEBOOKS = ROOT / "notebooks" if CHECKOUT else PACKAGE / "notebooks"  # chapter sources
BOOK = (
    ROOT / "book" if CHECKOUT else settings.path("LLFC_HOME") / "book"
)  # executed chapters (and book pages)
RESULTS = BOOK / "results"  # one JSON per chapter
CONFIG = ROOT / "_config.yml"  # in a checkout only
CHAPTER_GLOB = "[0-9][0-9]_*.ipynb"  # a chapter is a notebook named NN_name.ipynb


def is_chapter(name: str) -> bool:
    """Whether the file or page `name` (NN_name.ipynb, NN_name.html, NN_name) is a chapter."""
    return fnmatch(Path(name).stem + ".ipynb", CHAPTER_GLOB)


def chapters(folder: Path = NOTEBOOKS) -> list[Path]:
    """The chapter notebooks in `folder`, in book order."""
    return sorted(Path(folder).glob(CHAPTER_GLOB))
