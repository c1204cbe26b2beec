"""The evidence machinery: the LLFC test on every pair, seeds and spread, against direct computations."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pytest
import torch

from llfc_utils import config, metrics, plots, train
from llfc_utils.tools import results


def _result(values: dict[str, float], baseline: float = 1.0) -> dict:
    """A minimal `metrics.llfc` result at alpha 0.5 (what the LLFC test reads)."""
    layers = list(values)
    return {
        "layers": layers,
        "alphas": [0.5],
        "cos_dist_per_sample": {l: [v] for l, v in values.items()},
        "baseline_cos_dist_per_sample": dict.fromkeys(layers, baseline),
    }


def test_per_sample_spread_matches_a_direct_computation() -> None:
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(37, 5, generator=g), torch.randn(37, 5, generator=g)
    acc = metrics.Cosine()
    acc.update(a[:20], b[:20])
    acc.update(a[20:], b[20:])
    d = 1 - torch.nn.functional.cosine_similarity(a.double(), b.double()).abs()
    assert acc.per_sample == pytest.approx(float(d.mean()), rel=1e-12)
    assert acc.per_sample_std == pytest.approx(float(d.std()), rel=1e-9)


def test_llfc_relative_divides_layer_by_layer_and_skips_the_exact_first_layer() -> None:
    pair = _result({"fc1": 1e-14, "relu1": 0.01, "fc2": 0.04})
    ref = _result({"fc1": 1e-14, "relu1": 0.1, "fc2": 0.08})
    assert metrics.llfc_relative(pair, ref) == pytest.approx({"relu1": 0.1, "fc2": 0.5})
    with pytest.raises(ValueError, match="same layers"):
        metrics.llfc_relative(pair, _result({"fc1": 1.0, "relu1": 1.0}))
    with pytest.raises(ValueError, match="not a reference"):
        metrics.llfc_relative(pair, _result({"fc1": 1.0, "relu1": 0.0, "fc2": 1.0}))


def test_the_llfc_test_passes_a_linear_pair_and_fails_its_controls() -> None:
    ref = {"llfc": _result({"fc1": 0.0, "relu1": 0.2, "fc2": 0.3}), "barrier": 1.2}
    linear = {"llfc": _result({"fc1": 0.0, "relu1": 0.002, "fc2": 0.003}), "barrier": 0.01}
    v = metrics.llfc_test(linear | {"error_barrier": 0.003}, ref)
    assert v["lmc"] and v["llfc"] and v["worst_layer"] in ("relu1", "fc2")
    assert v["barrier_ratio"] == pytest.approx(0.01 / 1.2)
    # a control: as far from linear as the reference, with a large barrier: both verdicts fail
    control = {"llfc": _result({"fc1": 0.0, "relu1": 0.21, "fc2": 0.28}), "barrier": 1.1}
    v = metrics.llfc_test(control | {"error_barrier": 0.19}, ref)
    assert not v["lmc"] and not v["llfc"] and v["max_relative"] == pytest.approx(1.05)
    # one layer above the tolerance is enough to fail LLFC ("at every layer")
    one_bad = {"llfc": _result({"fc1": 0.0, "relu1": 0.002, "fc2": 0.3 * 0.3}), "barrier": 0.0}
    assert not metrics.llfc_test(one_bad | {"error_barrier": 0.0}, ref)["llfc"]
    assert np.isnan(
        metrics.llfc_test(linear | {"error_barrier": 0.0}, {**ref, "barrier": 0.0})["barrier_ratio"]
    )


def test_replicates_start_at_the_defaults_and_never_share_a_model() -> None:
    assert train.replicate_seeds(0) == {"independent": (1, 2), "parent": 0, "children": (1, 2)}
    inits = set()
    for r in range(4):
        s = train.replicate_seeds(r)
        inits |= {("ind", x) for x in s["independent"]} | {("parent", s["parent"])}
    assert len(inits) == 4 * 3
    with pytest.raises(ValueError, match="replicate"):
        train.replicate_seeds(-1)


def test_seeds_default_per_profile_and_reject_bad_lists() -> None:
    assert config.seeds("cpu") == list(range(config.SEEDS["cpu"])) and len(config.seeds("cpu")) >= 3
    assert config.seeds("smoke", [4, 7]) == [4, 7]
    for bad in ([], [0, 0], [-1], [0.5], "01"):
        with pytest.raises(ValueError, match="distinct integers"):
            config.seeds("cpu", bad)


def test_mean_std_is_the_sample_spread() -> None:
    assert results.mean_std([1.0, 2.0, 3.0]) == "2.000 ± 1.000"
    assert results.mean_std([0.5], "{:.1f}") == "0.5"


def test_the_central_figure_and_bars_with_spread() -> None:
    pts = [
        {"kind": "independent", "barrier": 1.2, "deepest": 0.1, "logits": 0.2},
        {"kind": "spawned", "barrier": 0.0, "deepest": 1e-4, "logits": 1e-5},
    ]
    fig = plots.barrier_vs_llfc(pts)
    assert len(fig.axes) == 2 and all(ax.get_yscale() == "log" for ax in fig.axes)
    fig = plots.layer_bars({"a": {"l1": [1.0, 3.0], "l2": [2.0, 2.0]}}, "y", log=False)
    bars = fig.axes[0].patches
    assert [b.get_height() for b in bars] == [2.0, 2.0]  # the mean over seeds
    (errorbar,) = [
        c for c in fig.axes[0].containers if hasattr(c, "has_yerr")
    ]  # one std over seeds
    (low, high), _ = (seg[:, 1] for seg in errorbar.lines[2][0].get_segments())
    assert high - low == pytest.approx(2 * np.std([1.0, 3.0], ddof=1))
    plt.close("all")
