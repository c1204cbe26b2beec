"""Each chapter's "What we reproduced": a claims table for the page and `book/results/<chapter>.json`."""

from __future__ import annotations

import json
import math
import re
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


# ---------------------------------------------------------------- two runs of the book, compared

_NUMBER = r"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?"  # 12, 0.019, 1.61e-03
_SPREAD = re.compile(rf"({_NUMBER})\s*±\s*({_NUMBER})")


def _decimals(text: str) -> int:
    """The decimals a printed number shows, its exponent counted (1.61e-03: 5)."""
    mantissa, _, exponent = text.lower().partition("e")
    shown = len(mantissa.split(".")[1]) if "." in mantissa else 0
    return shown - int(exponent or 0)


def spread_numbers(text: str) -> list[tuple[float, float, float]]:
    """Every 'mean ± std' in a claim's text, as (mean, std, rounding): `rounding` is half a unit
    of the last printed digit, the most that printing can have moved the mean."""
    return [(float(m), float(s), 0.5 * 10.0 ** -_decimals(m)) for m, s in _SPREAD.findall(text)]


def other_numbers(text: str) -> list[float]:
    """The numbers of a claim's text outside its 'mean ± std' pairs (one seed, counts, fractions)."""
    return [float(x) for x in re.findall(_NUMBER, _SPREAD.sub(" ", text))]


def _relative_change(na: list[float], nb: list[float]) -> float | None:
    """The largest relative change between two texts' other numbers (None if they differ in count)."""
    if len(na) != len(nb):
        return None
    return max(
        (abs(x - y) / max(abs(x), abs(y)) for x, y in zip(na, nb, strict=True) if x != y),
        default=0.0,
    )


def _gap(difference: float, rounding: float, spread: float) -> float:
    gap = max(0.0, abs(difference) - rounding)
    return gap / spread if spread > 0 else (math.inf if gap > 0 else 0.0)


def _numbers_row(text_a: str | None, text_b: str | None) -> dict[str, Any]:
    """How two runs' texts of one number or claim compare: each 'mean ± std' gap beyond printing's
    rounding in units of the larger seed spread (within it if at most 1), and the largest relative
    change of the other numbers. Counts are None when the texts print different counts."""
    na, nb = spread_numbers(text_a or ""), spread_numbers(text_b or "")
    ratios = [
        _gap(ma - mb, ra + rb, max(sa, sb))
        for (ma, sa, ra), (mb, sb, rb) in zip(na, nb, strict=False)
    ]
    same = len(na) == len(nb) and text_a is not None and text_b is not None
    return {
        "numbers": len(ratios) if same else None,
        "within spread": sum(r <= 1.0 for r in ratios) if same else None,
        "largest gap / spread": max(ratios, default=0.0),
        "other numbers, largest relative change": _relative_change(
            other_numbers(text_a or ""), other_numbers(text_b or "")
        ),
        "a": text_a or "",
        "b": text_b or "",
    }


def _same_chapters(a: Path, b: Path) -> None:
    missing = sorted({p.name for p in a.glob("*.json")} ^ {p.name for p in b.glob("*.json")})
    if missing or not any(a.glob("*.json")):
        raise ValueError(
            f"{a} and {b} must hold the same chapters' results (differ on {missing or 'none'}); "
            "run the same chapters into both"
        )


def compare(a: Path | str, b: Path | str) -> Any:
    """Two runs' claims side by side (results folders `a` and `b`): one row per claim, with both
    verdicts and whether every 'mean ± std' of its text agrees between the runs within its seed
    spread, |mean_a - mean_b| <= max(std_a, std_b) plus the rounding of the printed means."""
    import pandas as pd

    a, b = Path(a), Path(b)
    _same_chapters(a, b)
    rows = []
    for path in sorted(a.glob("*.json")):
        claims_a = {c["id"]: c for c in json.loads(path.read_text())["claims"]}
        claims_b = {c["id"]: c for c in json.loads((b / path.name).read_text())["claims"]}
        for cid in [*claims_a, *(c for c in claims_b if c not in claims_a)]:
            ca, cb = claims_a.get(cid), claims_b.get(cid)
            rows.append(
                {
                    "chapter": path.stem,
                    "claim": cid,
                    "holds a": ca["holds"] if ca else None,
                    "holds b": cb["holds"] if cb else None,
                    "same verdict": bool(ca and cb and ca["holds"] == cb["holds"]),
                    **_numbers_row(ca and ca["ours"], cb and cb["ours"]),
                }
            )
    return pd.DataFrame(rows)


def glued(notebook: Path | str) -> dict[str, str]:
    """The values an executed chapter glued for its prose ({glue:md}`name`), as the text it shows."""
    out = {}
    for cell in json.loads(Path(notebook).read_text())["cells"]:
        for o in cell.get("outputs", []):
            book = o.get("metadata", {}).get("scrapbook")
            if book:
                data = o.get("data", {})
                prefix = book.get("mime_prefix", "")
                text = data.get(prefix + "text/markdown", data.get(prefix + "text/plain", ""))
                out[book["name"]] = "".join(text)
    return out


def compare_glued(a: Path | str, b: Path | str) -> Any:
    """Two runs' glued numbers side by side: the executed chapters in folders `a` and `b` (each
    run's book/), one row per name either glued, compared as in `compare`."""
    import pandas as pd

    rows = []
    for path in sorted(Path(a).glob("*.ipynb")):
        if not (Path(b) / path.name).exists():
            continue
        ga, gb = glued(path), glued(Path(b) / path.name)
        for name in [*ga, *(n for n in gb if n not in ga)]:
            rows.append(
                {"chapter": path.stem, "name": name, **_numbers_row(ga.get(name), gb.get(name))}
            )
    return pd.DataFrame(rows, columns=["chapter", "name", *_numbers_row("", "")])


def pair_verdicts(folder: Path | str) -> dict[str, dict[str, bool]]:
    """Every pair's LMC and LLFC verdicts in a results folder: {"chapter/where/pair": {"lmc", "llfc"}},
    from each metrics table whose entries all carry both (a chapter's `llfc_test`, a sweep's records)."""
    out: dict[str, dict[str, bool]] = {}

    def verdicts(rows: Any) -> bool:
        return bool(rows) and all(isinstance(r, dict) and {"lmc", "llfc"} <= set(r) for r in rows)

    def walk(node: Any, where: str) -> None:
        if isinstance(node, list) and verdicts(node):  # records, such as a sweep's `verdicts`
            for r in node:
                name = " ".join(f"{f} {r[f]}" for f in ("role", "width", "pair", "seed") if f in r)
                out[f"{where}/{name}"] = {"lmc": r["lmc"], "llfc": r["llfc"]}
        elif isinstance(node, dict) and verdicts(node.values()):  # {pair: verdicts}, `llfc_test`
            out.update(
                {f"{where}/{k}": {"lmc": v["lmc"], "llfc": v["llfc"]} for k, v in node.items()}
            )
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{where}/{k}")

    for path in sorted(Path(folder).glob("*.json")):
        walk(json.loads(path.read_text())["metrics"], path.stem)
    return out


def _spread_summary(frame: Any, what: str) -> tuple[str, bool]:
    """One line on a comparison frame's 'mean ± std' numbers, and whether they all agree."""
    comparable = frame["numbers"].notna()
    within = int(frame.loc[comparable, "within spread"].sum())
    numbers = int(frame.loc[comparable, "numbers"].sum())
    line = (
        f"{within} of {numbers} 'mean ± std' numbers of the {what} agree within their seed spread"
    )
    if (~comparable).any():
        line += f"; {int((~comparable).sum())} {what} print different counts of them"
    return line, within == numbers and bool(comparable.all())


def main(argv: list[str] | None = None) -> int:
    """`python -m llfc_utils.tools.results A B`: compare two runs' results folders, and the
    numbers their executed chapters glued (in each folder's parent); exit 1 on a differing verdict
    or a 'mean ± std' outside its seed spread."""
    import argparse

    p = argparse.ArgumentParser(description="Compare two runs of the book, claim by claim.")
    p.add_argument("a", type=Path, help="a results folder (book/results of one run)")
    p.add_argument("b", type=Path, help="another run's results folder")
    p.add_argument("--markdown", action="store_true", help="print the tables as Markdown")
    args = p.parse_args(argv)
    try:
        frame = compare(args.a, args.b)
    except ValueError as e:
        p.error(str(e))
    glue_frame = compare_glued(args.a.parent, args.b.parent)
    for f in (frame, glue_frame[glue_frame["numbers"].fillna(1) > 0]):
        view = f.drop(columns=["a", "b"])
        print(view.to_markdown(index=False) if args.markdown else view.to_string(index=False))
    verdicts = int(frame["same verdict"].sum())
    claims_line, claims_ok = _spread_summary(frame, "claims")
    glue_line, glue_ok = _spread_summary(glue_frame, "glued values")
    print(f"{verdicts} of {len(frame)} claims give the same verdict; {claims_line}")
    print(f"{len(glue_frame)} glued values compared; {glue_line}")
    change = glue_frame["other numbers, largest relative change"].astype(float)
    if change.notna().any():  # single numbers (one seed, counts) have no spread to be judged by
        top = glue_frame.loc[change.idxmax()]
        print(
            f"their other numbers (no spread) change by at most {change.max():.1%}"
            f" ({top['chapter']} {top['name']}: {top['a']} vs {top['b']})"
        )
    pairs_a, pairs_b = pair_verdicts(args.a), pair_verdicts(args.b)
    same_pairs = [k for k in pairs_a if pairs_b.get(k) == pairs_a[k]]
    differ = sorted(set(pairs_a) ^ set(pairs_b)) + [
        k for k in pairs_a if k in pairs_b and k not in same_pairs
    ]
    print(
        f"{len(same_pairs)} of {len(set(pairs_a) | set(pairs_b))} pairs get the same LMC and LLFC verdicts"
        + "".join(f"\n  differs: {k}: {pairs_a.get(k)} vs {pairs_b.get(k)}" for k in differ)
    )
    ok = verdicts == len(frame) and claims_ok and glue_ok and not differ
    return 0 if ok else 1


if __name__ == "__main__":
    import sys

    sys.exit(main())
