"""llfc_utils: the thin module under the llfc-book chapters.

Reproduces *Going Beyond Linear Mode Connectivity: The Layerwise Linear Feature Connectivity*
(Zhou et al., NeurIPS 2023). One file per question (see the README's module table); the book's
tooling (runner, planner, labs, site check) lives apart, in `llfc_utils.tools`.
"""

__version__ = "0.1.0"
