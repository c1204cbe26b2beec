"""llfc_utils: the thin module under the llfc-book chapters.

Reproduces *Going Beyond Linear Mode Connectivity: The Layerwise Linear Feature Connectivity*
(Zhou et al., NeurIPS 2023). One file per question (see the README's module table); the book's
tooling (runner, planner, labs, site check) lives apart, in `llfc_utils.tools`.
"""

__version__ = "0.1.0"

import os
from pathlib import Path


def home() -> Path:
    """Base folder for data and checkpoints: $LLFC_HOME, default ~/.cache/llfc_book."""
    return Path(os.environ.get("LLFC_HOME", Path.home() / ".cache" / "llfc_book")).expanduser()
