"""results.compare: two runs of the book, claim by claim (the bf16-vs-fp32 check of How to run)."""

from __future__ import annotations

import json
import math

import pytest

from llfc_utils.tools import results


def _run(folder, claims, metrics=None):
    rows = [results.claim(i, i, ours, "", h) for i, ours, h in claims]
    results.write("02_spawning", "cpu", rows, metrics or {}, folder)
    return folder


def test_spread_numbers_reads_every_mean_and_std():
    text = "barrier 0.019 ± 0.010 vs 2.1 ± 0.03 independent; LMC in 3/3 seeds"
    assert results.spread_numbers(text) == [(0.019, 0.010, 0.0005), (2.1, 0.03, 0.05)]
    assert results.other_numbers(text) == [3.0, 3.0]
    assert results.spread_numbers("1.61e-03 ± 2e-04") == [(1.61e-03, 2e-04, 0.5e-05)]
    assert results.other_numbers("std 1.61e-03, k=2") == [1.61e-03, 2.0]


def test_same_runs_agree(tmp_path):
    claims = [("a", "barrier 0.019 ± 0.010 vs 2.125 ± 0.032", True), ("b", "ratio 0.55", False)]
    a, b = _run(tmp_path / "a", claims), _run(tmp_path / "b", claims)
    frame = results.compare(a, b)
    assert frame["same verdict"].all() and (frame["within spread"] == frame["numbers"]).all()
    assert results.main([str(a), str(b)]) == 0


def test_a_mean_outside_its_spread_is_flagged(tmp_path):
    a = _run(tmp_path / "a", [("a", "barrier 0.019 ± 0.010 vs 2.125 ± 0.032", True)])
    b = _run(tmp_path / "b", [("a", "barrier 0.025 ± 0.010 vs 2.200 ± 0.032", True)])
    row = results.compare(a, b).iloc[0]
    assert row["numbers"] == 2 and row["within spread"] == 1
    assert row["largest gap / spread"] == pytest.approx((0.075 - 0.001) / 0.032)
    assert results.main([str(a), str(b)]) == 1


def test_printing_rounding_is_not_a_gap(tmp_path):
    a = _run(tmp_path / "a", [("a", "barrier 0.000 ± 0.000", True)])
    b = _run(tmp_path / "b", [("a", "barrier 0.001 ± 0.000", True)])
    assert results.compare(a, b).iloc[0]["largest gap / spread"] == 0.0
    c = _run(tmp_path / "c", [("a", "barrier 0.002 ± 0.000", True)])
    assert math.isinf(results.compare(a, c).iloc[0]["largest gap / spread"])


def test_a_flipped_verdict_fails(tmp_path):
    a = _run(tmp_path / "a", [("a", "ratio 0.55 ± 0.12", False)])
    b = _run(tmp_path / "b", [("a", "ratio 0.55 ± 0.12", True)])
    assert not results.compare(a, b).iloc[0]["same verdict"]
    assert results.main([str(a), str(b)]) == 1


def test_a_claim_only_one_run_has_fails(tmp_path):
    a = _run(tmp_path / "a", [("a", "x 1.0 ± 0.1", True)])
    b = _run(tmp_path / "b", [("a", "x 1.0 ± 0.1", True), ("b", "y", True)])
    assert results.main([str(a), str(b)]) == 1


def test_different_chapters_are_an_error(tmp_path):
    a = _run(tmp_path / "a", [("a", "x", True)])
    (tmp_path / "b").mkdir()
    with pytest.raises(ValueError, match="same chapters"):
        results.compare(a, tmp_path / "b")


def test_pair_verdicts_are_compared_pair_by_pair(tmp_path, capsys):
    tests = {
        "mlp/wm/seed 0": {"lmc": True, "llfc": True},
        "mlp/unaligned/seed 0": {"lmc": False, "llfc": False},
    }
    flipped = {**tests, "mlp/wm/seed 0": {"lmc": True, "llfc": False}}
    a = _run(tmp_path / "a", [("a", "x", True)], {"llfc_test": tests, "seeds": [0]})
    b = _run(tmp_path / "b", [("a", "x", True)], {"llfc_test": tests, "seeds": [0]})
    c = _run(tmp_path / "c", [("a", "x", True)], {"llfc_test": flipped, "seeds": [0]})
    assert set(results.pair_verdicts(a)) == {f"02_spawning/llfc_test/{k}" for k in tests}
    records = {
        "sweep": {"verdicts": [{"role": "mlp", "width": 32, "seed": 0, "lmc": 1, "llfc": 0}]}
    }
    d = _run(tmp_path / "d", [("a", "x", True)], records)
    assert results.pair_verdicts(d) == {
        "02_spawning/sweep/verdicts/role mlp width 32 seed 0": {"lmc": 1, "llfc": 0}
    }
    assert results.main([str(a), str(b)]) == 0
    assert "2 of 2 pairs get the same" in capsys.readouterr().out
    assert results.main([str(a), str(c)]) == 1
    assert "differs: 02_spawning/llfc_test/mlp/wm/seed 0" in capsys.readouterr().out


def _executed(folder, values):
    """An executed chapter whose cells glued `values` as papermill records them."""
    prefix = "application/papermill.record/"
    outputs = [
        {
            "output_type": "display_data",
            "data": {prefix + "text/markdown": text, prefix + "text/plain": "<Markdown>"},
            "metadata": {"scrapbook": {"name": name, "mime_prefix": prefix}},
        }
        for name, text in values.items()
    ]
    cell = {"cell_type": "code", "source": "", "metadata": {}, "outputs": outputs}
    (folder / "02_spawning.ipynb").write_text(json.dumps({"cells": [cell]}))


def test_glued_numbers_are_compared_too(tmp_path, capsys):
    a = _run(tmp_path / "a" / "results", [("a", "x", True)])
    b = _run(tmp_path / "b" / "results", [("a", "x", True)])
    _executed(tmp_path / "a", {"barrier_k0": "1.325 ± 0.699", "n_test": "10,000"})
    _executed(tmp_path / "b", {"barrier_k0": "1.053 ± 0.434", "n_test": "10,000"})
    assert results.glued(tmp_path / "a" / "02_spawning.ipynb")["barrier_k0"] == "1.325 ± 0.699"
    assert results.main([str(a), str(b)]) == 0
    assert "1 of 1 'mean ± std' numbers of the glued values agree" in capsys.readouterr().out
    _executed(tmp_path / "b", {"barrier_k0": "0.053 ± 0.034", "n_test": "10,000"})
    frame = results.compare_glued(tmp_path / "a", tmp_path / "b")
    assert frame.set_index("name").loc["barrier_k0", "within spread"] == 0
    assert results.main([str(a), str(b)]) == 1
