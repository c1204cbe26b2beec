"""Two fixes to what Jupyter Book 1's theme puts on every page, both seen as browser console errors.

- sphinx-thebe registers its inline configuration script twice (`const THEBE_JS_URL` declared
  twice is a SyntaxError in the console); every page's scripts are de-duplicated here.
- pydata-sphinx-theme reads the light/dark mode from `default_mode` and, when it is empty, logs
  "Got invalid theme mode"; the book defaults to light (the figures have white backgrounds), and
  the theme's switcher still changes it.
"""

from __future__ import annotations

from typing import Any


def _fix_page(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Drop repeated scripts (the same file or body and attributes); default to light mode."""
    scripts = context.get("script_files")
    if isinstance(scripts, list):
        seen, unique = set(), []
        for js in scripts:  # an inline script comes once with filename None, once with ""
            key = (
                str(getattr(js, "filename", js) or ""),
                repr(sorted(getattr(js, "attributes", {}).items())),
            )
            if key not in seen:
                seen.add(key)
                unique.append(js)
        scripts[:] = unique
    context.setdefault("default_mode", "light")


def setup(app: Any) -> dict[str, Any]:
    """Sphinx entry point: run after the extensions that add scripts to the page."""
    app.connect("html-page-context", _fix_page, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
