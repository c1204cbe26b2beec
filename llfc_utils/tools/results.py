"""Each chapter's "What we reproduced": a claims table for the page and `book/results/<chapter>.json`."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from llfc_utils.tools.paths import RESULTS


def results_dir() -> Path:
    """Where chapters write their results: $LLFC_RESULTS, else book/results of the checkout, or of
    ~/.cache/llfc_book for an installed package (`paths.RESULTS`)."""
    return Path(os.environ.get("LLFC_RESULTS", RESULTS))


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


def markdown(claims: list[dict[str, Any]]) -> str:
    """The claims as a Markdown table (for `IPython.display.Markdown`)."""
    rows = ["| claim | ours | paper | holds |", "| --- | --- | --- | --- |"]
    for c in claims:
        rows.append(
            f"| {c['claim']} | {c['ours']} | {c['paper']} | {'yes' if c['holds'] else '**no**'} |"
        )
    return "\n".join(rows)
