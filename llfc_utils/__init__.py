"""llfc_utils: the thin module under the llfc-book chapters.

Reproduces *Going Beyond Linear Mode Connectivity: The Layerwise Linear Feature Connectivity*
(Zhou et al., NeurIPS 2023). One file per question (see the README's module table); the book's
tooling (runner, planner, labs, site check) lives apart, in `llfc_utils.tools`.
"""

__version__ = "0.1.0"

import os
from pathlib import Path


def env(name: str) -> str | None:
    """The value of environment variable `name`, or None where it is unset or empty (blank)."""
    value = os.environ.get(name, "")
    return value if value.strip() else None


def env_dir(name: str, default: Path) -> Path:
    """The folder $`name` names (`default` where it is unset or empty); ValueError if it is a file."""
    path = Path(env(name) or default).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"{path} (from ${name} or its default) is a file, not a folder; set {name} to a folder"
        )
    return path


def home() -> Path:
    """Base folder for data and checkpoints: $LLFC_HOME, default ~/.cache/llfc_book."""
    return env_dir("LLFC_HOME", Path.home() / ".cache" / "llfc_book")
