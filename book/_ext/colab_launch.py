"""Point the theme's Colab launch button at the chapter's source notebook, `notebooks/NAME.ipynb`.

The book renders the executed copies in `book/`, which are generated and not in the repository, so
sphinx-book-theme's button (built from the page's path) would open a file that does not exist.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def _fix_launch_urls(
    app: Any, pagename: str, templatename: str, context: dict, doctree: Any
) -> None:
    """Rewrite `.../book/NAME.ipynb` to `.../notebooks/NAME.ipynb` in the launch buttons."""
    name = pagename.rsplit("/", 1)[-1]
    if not pagename.startswith("book/") or not (NOTEBOOKS / f"{name}.ipynb").exists():
        return
    for group in context.get("header_buttons", []):
        if group.get("label") != "launch-buttons":
            continue
        for button in group.get("buttons", []):
            if "url" in button:
                button["url"] = button["url"].replace(
                    f"/{pagename}.ipynb", f"/notebooks/{name}.ipynb"
                )


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point: run after the theme has added its launch buttons (priority 501)."""
    app.connect("html-page-context", _fix_launch_urls, priority=502)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
