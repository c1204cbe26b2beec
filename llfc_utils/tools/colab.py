"""Colab: the badge and install cell at the top of every chapter, and the profile a GPU picks.

The repository's address lives in one place, `_config.yml` (`repository.url` and
`repository.branch`). The badge and the install cell of each notebook are written from it by
`python -m llfc_utils.tools.colab` (run it after changing the address); `--check` (run by the tests)
fails when a notebook is out of date.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from llfc_utils import settings
from llfc_utils.tools.paths import CONFIG, NOTEBOOKS, chapters

INSTALL_TAG = "colab-install"
BADGE_SVG = "https://colab.research.google.com/assets/colab-badge.svg"


def repository(config: Path = CONFIG) -> tuple[str, str]:
    """(url, branch) of the repository, from `_config.yml`."""
    import yaml

    repo = (yaml.safe_load(config.read_text()) or {}).get("repository") or {}
    url, branch = str(repo.get("url", "")).rstrip("/"), str(repo.get("branch", "main"))
    if not url.startswith("https://github.com/") or url.count("/") != 4:
        raise ValueError(
            f"{config}: repository.url must look like https://github.com/OWNER/NAME, got {url!r}"
        )
    return url, branch


def badge_markdown(name: str, config: Path = CONFIG) -> str:
    """The "Open in Colab" badge of notebook `name`, linking to its source in the repository."""
    url, branch = repository(config)
    target = url.replace("https://github.com/", "https://colab.research.google.com/github/")
    return f"[![Open In Colab]({BADGE_SVG})]({target}/blob/{branch}/notebooks/{name}.ipynb)"


def install_source(config: Path = CONFIG) -> str:
    """The code of the install cell: on Colab only, install `llfc_utils` from the repository."""
    url, branch = repository(config)
    return (
        "# On Colab only: install this book's package from its repository (elsewhere `make` did).\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q "llfc_utils @ git+{url}@{branch}"'
    )


def _cell(kind: str, source: str, tags: list[str]) -> dict[str, Any]:
    cell: dict[str, Any] = {"cell_type": kind, "id": tags[0], "metadata": {"tags": tags}}
    cell["source"] = source
    if kind == "code":
        cell.update(execution_count=None, outputs=[])
    return cell


def synced(nb: dict[str, Any], name: str, config: Path = CONFIG) -> dict[str, Any]:
    """`nb` with the badge under its title and the install cell after its first cell, from `_config.yml`."""
    install = _cell("code", install_source(config), [INSTALL_TAG, "remove-cell"])
    cells = [
        {**c, "source": "".join(c["source"])}
        for c in nb["cells"]
        if INSTALL_TAG not in c.get("metadata", {}).get("tags", [])
    ]
    title, *rest = cells[0]["source"].split("\n")
    if not title.startswith("# "):
        raise ValueError(f"{name}: the first cell must start with the chapter's '# title' line")
    rest = [line for line in rest if not line.startswith("[![Open In Colab]")]
    while rest and rest[0] == "":
        rest = rest[1:]
    head = "\n".join([title, "", badge_markdown(name, config), "", *rest])
    return {**nb, "cells": [{**cells[0], "source": head}, install, *cells[1:]]}


def _normalise(nb: dict[str, Any]) -> list[tuple[str, str, list[str]]]:
    return [
        (c["cell_type"], "".join(c["source"]), c.get("metadata", {}).get("tags", []))
        for c in nb["cells"]
    ]


def sync(notebooks: Path = NOTEBOOKS, check: bool = False, config: Path = CONFIG) -> list[str]:
    """Write (or with `check`, only compare) every chapter's badge and install cell; return stale names."""
    stale = []
    for path in chapters(notebooks):
        nb = json.loads(path.read_text())
        new = synced(nb, path.stem, config)
        if _normalise(new) == _normalise(nb):
            continue
        stale.append(path.stem)
        if not check:
            for c in new["cells"]:  # source as a list of lines, as Jupyter writes it
                c["source"] = c["source"].splitlines(keepends=True)
            path.write_text(json.dumps(new, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    return stale


def on_colab() -> bool:
    """True inside Google Colab."""
    return "google.colab" in sys.modules


def choose_profile(profile: str) -> str:
    """The profile a chapter runs: $LLFC_PROFILE if set, "paper" on a Colab GPU, else `profile`.

    Called right after each chapter's parameters cell. Papermill's `-p profile ...` sets
    `profile`; $LLFC_PROFILE wins over it (the notebook tests use it), and on Colab with a GPU
    the default "cpu" becomes "paper", the paper's own settings.
    """
    chosen = settings.get("LLFC_PROFILE")
    if chosen:
        return chosen
    if on_colab() and profile == "cpu":
        import torch

        if torch.cuda.is_available():
            print(
                'Colab with a GPU: running the "paper" profile, the paper\'s own settings (hours).'
            )
            print('For the small CPU nets (minutes), run os.environ["LLFC_PROFILE"] = "cpu" first.')
            return "paper"
    return profile


def main(argv: list[str] | None = None) -> int:
    """Command line: rewrite (or `--check`) the notebooks' badge and install cells."""
    parser = argparse.ArgumentParser(prog="python -m llfc_utils.tools.colab", description=__doc__)
    parser.add_argument("--check", action="store_true", help="only report stale notebooks")
    args = parser.parse_args(argv)
    stale = sync(check=args.check)
    verb = "out of date" if args.check else "updated"
    for name in stale:
        print(f"{name}: badge / install cell {verb}")
    if args.check and stale:
        print(
            "run `python -m llfc_utils.tools.colab` to rewrite them from _config.yml",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
