"""Colab: the badge and install cell at the top of every chapter, and the profile a GPU picks.

The repository's address lives in one place, `_config.yml` (`repository.url` and
`repository.branch`). The badge and the install cell of each notebook are written from it by
`python -m llfc_utils.tools.colab` (run it after changing the address); `--check` (run by the tests)
fails when a notebook is out of date. The install cell installs the tagged release of this
package's version (`v{__version__}`), so a chapter runs against the code it was written for.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from llfc_utils import __version__, settings
from llfc_utils.config import PROFILES
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


def release_tag() -> str:
    """The git tag of this package's release, `v{__version__}`: what the install cells install."""
    return f"v{__version__}"


def install_requirement(config: Path = CONFIG) -> str:
    """The pip requirement that installs this release of `llfc_utils` from the repository."""
    url, _ = repository(config)
    return f"llfc_utils @ git+{url}@{release_tag()}"


def install_source(config: Path = CONFIG) -> str:
    """The code of the install cell: on Colab only, install this release of `llfc_utils`."""
    return (
        "# On Colab only: install this book's package, the release these chapters were written\n"
        "# for, from its repository (elsewhere `make` did).\n"
        "import sys\n"
        "\n"
        'if "google.colab" in sys.modules:\n'
        f'    %pip install -q "{install_requirement(config)}"'
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


def automatic_profile() -> str:
    """The profile for this machine when the user chose none: "gpu" with CUDA, else "cpu"."""
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def choose_profile(
    profile: str | None, chapter: str | None = None, params: dict[str, Any] | None = None
) -> str:
    """The profile a chapter runs, then (given `chapter` and its `params`) its training plan.

    Called right after each chapter's parameters cell, whose `profile = None` means "choose for
    me". A profile the user set (in that cell, by papermill's `-p profile ...`, which the runner
    always passes) is used as given; else $LLFC_PROFILE; else `automatic_profile()`, and it says
    what it chose and the line that changes it. With `chapter`, it then prints what the chapter
    will train, what is already cached and how long the rest should take here (`tools.plan`).
    """
    if profile is None:
        profile = settings.get("LLFC_PROFILE")
    if profile is None:
        profile = automatic_profile()
        where = "on a GPU" if profile == "gpu" else "without a GPU"
        other = "cpu" if profile == "gpu" else "smoke"
        print(f'No profile chosen; {where} this runs profile "{profile}". To choose another')
        print(f"({', '.join(PROFILES)}), set it in the parameters cell above and run again, e.g.:")
        print(f'    profile = "{other}"')
    if profile not in PROFILES:
        raise ValueError(f"unknown profile {profile!r}; valid: {', '.join(PROFILES)}")
    if chapter is not None:
        show_plan(chapter, profile, params or {})
    return profile


def show_plan(chapter: str, profile: str, params: dict[str, Any]) -> None:
    """Print the chapter's training plan on this device; a plan that cannot be made never stops it."""
    from llfc_utils.tools import plan

    try:
        print(plan.chapter_summary(chapter, profile, {**params, "profile": profile}))
    except Exception as e:  # noqa: BLE001 - the plan is a courtesy: never block a chapter
        print(f"(no training plan: {type(e).__name__}: {e})")
    if profile == "paper":
        print(
            'Profile "paper" trains the paper\'s full recipes: hours to days (see the estimate). '
            'For the same models in minutes, set profile = "gpu".'
        )


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
