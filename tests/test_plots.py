"""The figure helpers: right number of panels and frames, labelled axes, inputs drawn where they belong."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from llfc_utils import plots  # noqa: E402

ALPHAS = [0.0, 0.5, 1.0]
CURVES = {
    "spawned": {"alpha": ALPHAS, "test_loss": [0.3, 0.32, 0.31], "test_err": [0.1, 0.11, 0.1]},
    "independent": {"alpha": ALPHAS, "test_loss": [0.3, 1.5, 0.3], "test_err": [0.1, 0.5, 0.12]},
}
LLFC = {
    name: {
        "layers": ["fc1", "fc2"],
        "alphas": ALPHAS,
        "cos_dist_per_sample": {"fc1": [0.0, 1e-14, 0.0], "fc2": [0.0, s, 0.0]},
    }
    for name, s in (("spawned", 1e-3), ("independent", 1e-1))
}


def _labelled(ax) -> bool:
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel())


def test_alpha_frames_one_figure_per_alpha_with_the_current_point() -> None:
    frames = plots.alpha_frames(CURVES, LLFC)
    assert len(frames) == len(ALPHAS)
    for j, fig in enumerate(frames):
        ax_curve, ax_bars = fig.axes
        assert _labelled(ax_curve) and _labelled(ax_bars)
        assert ax_bars.get_yscale() == "log"
        marked = [ln for ln in ax_curve.get_lines() if ln.get_marker() == "o"]
        assert [list(ln.get_xdata()) for ln in marked] == [[ALPHAS[j]]] * 2
        assert [list(ln.get_ydata()) for ln in marked] == [
            [CURVES[n]["test_loss"][j]] for n in CURVES
        ]
        heights = [p.get_height() for p in ax_bars.patches]
        if j == 1:  # the independent pair's fc2 bar is the tallest at the midpoint
            assert max(heights) == 1e-1
        assert ax_bars.get_ylim() == frames[0].axes[1].get_ylim()  # fixed limits across frames
    plt.close("all")


def test_lemma1_one_panel_per_pair_with_the_bound() -> None:
    logit = {"spawned": [0.1, 0.1, 0.1], "independent": [0.1, 0.12, 0.12]}
    fig = plots.lemma1(CURVES, logit)
    assert [ax.get_title() for ax in fig.axes] == list(CURVES)
    assert fig.axes[0].get_ylabel() and all(ax.get_xlabel() for ax in fig.axes)
    bound_line = fig.axes[1].get_lines()[-1]
    assert list(bound_line.get_ydata()) == [24.0, 24.0]  # 2 * max(10 %, 12 %)
    plt.close("all")


def test_theorem1_scatter_places_each_layer_at_relative_prediction_and_defect() -> None:
    r = {
        "layers": ["fc1", "fc2"],
        "defect": {"fc1": 2.0, "fc2": 3.0},
        "predicted": {"fc1": 2.0, "fc2": 1.0},
        "scale": {"fc1": 10.0, "fc2": 10.0},
    }
    fig = plots.theorem1_scatter({"pair": r})
    ax = fig.axes[0]
    assert _labelled(ax) and ax.get_xscale() == ax.get_yscale() == "log"
    points = ax.collections[0].get_offsets().tolist()
    assert points == [[0.2, 0.2], [0.1, 0.3]]
    plt.close("all")


def test_series_vs_x_returns_its_figure_with_one_line_per_series() -> None:
    fig = plots.series_vs_x(
        [0, 1, 2], {"a": [1.0, 2.0, 3.0], "b": [[1, 2], [2, 3], [3, 4]]}, "x", "y"
    )
    assert isinstance(fig, plt.Figure), "a plot function returns its figure"
    assert len(fig.axes[0].containers) == 2
    plt.close(fig)


def test_against_width_returns_one_panel_per_quantity() -> None:
    fig = plots.against_width({"p": {"s": {1: [1.0, 2.0], 2: 0.5}}, "q": {"s": {1: 1.0, 2: 1.0}}})
    assert isinstance(fig, plt.Figure) and len(fig.axes) == 2
    plt.close(fig)
