"""Each chapter's "What we reproduced": a claims table for the page and `book/results/<chapter>.json`."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from llfc_utils import settings
from llfc_utils.tools.paths import RESULTS


def results_dir() -> Path:
    """Where chapters write their results: $LLFC_RESULTS, else book/results of the checkout, or of
    ~/.cache/llfc_book for an installed package (`paths.RESULTS`)."""
    return settings.folder("LLFC_RESULTS") if settings.get("LLFC_RESULTS") else RESULTS


def claim(id: str, claim: str, ours: str, paper: str, holds: bool) -> dict[str, Any]:
    """One row: the paper's claim, our number (as text), the paper's number or statement, whether it holds."""
    return {"id": id, "claim": claim, "ours": ours, "paper": paper, "holds": bool(holds)}


def _clean(x: Any) -> Any:
    """JSON-safe: floats rounded to 6 significant digits, NaN/inf as None, tuples as lists."""
    if isinstance(x, float):
        return None if not math.isfinite(x) else float(f"{x:.6g}")
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    return x


def write(
    chapter: str,
    profile: str,
    claims: list[dict[str, Any]],
    metrics: dict[str, Any],
    folder: Path | None = None,
) -> Path:
    """Write {"chapter", "profile", "claims", "metrics"} to `folder/<chapter>.json`; return the path."""
    folder = folder or results_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{chapter}.json"
    record = {"chapter": chapter, "profile": profile, "claims": claims, "metrics": _clean(metrics)}
    path.write_text(json.dumps(record, indent=1))
    return path


def glue(name: str, value: Any, fmt: str = "{}") -> None:
    """Make a number quotable in the chapter's prose as {glue:md}`name`.

    `value` is formatted with `fmt` (e.g. "{:.3f}", or a ready string such as "0.12 ± 0.01").
    Outside the book build (no myst-nb, e.g. on Colab) it does nothing.
    """
    try:
        from IPython.display import Markdown
        from myst_nb import glue as _glue
    except ImportError:
        return
    _glue(name, Markdown(fmt.format(value)), display=False)


def mean_std(values: Any, fmt: str = "{:.3f}") -> str:
    """'mean ± std' over seeds (sample std), formatted with `fmt`; one value has no ±."""
    import numpy as np

    v = np.asarray(values, dtype=float).ravel()
    if len(v) == 1:
        return fmt.format(v[0])
    return f"{fmt.format(v.mean())} ± {fmt.format(v.std(ddof=1))}"


def table(claims: list[dict[str, Any]]) -> Any:
    """The claims as a table: a pandas Styler, rendered as HTML (a failing claim in bold)."""
    import pandas as pd

    frame = pd.DataFrame(
        [
            {"claim": c["claim"], "ours": c["ours"], "paper": c["paper"], "holds": bool(c["holds"])}
            for c in claims
        ],
        columns=["claim", "ours", "paper", "holds"],
    )
    return (
        frame.style.format({"holds": lambda h: "yes" if h else "no"})
        .hide(axis="index")
        .map(lambda h: "" if h else "font-weight: bold", subset=["holds"])
    )
