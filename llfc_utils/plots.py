"""The book's figure style, one helper per kind of figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 110,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "legend.frameon": False,
}


def use_style() -> None:
    """Apply the book's matplotlib style."""
    plt.rcParams.update(STYLE)


def learning_curves(histories: Mapping[str, Mapping[str, Sequence[float]]]) -> Figure:
    """Loss and accuracy per epoch, train (dashed) and test (solid), one colour per run."""
    use_style()
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, (label, h) in enumerate(histories.items()):
        color = f"C{i}"
        epochs = range(1, len(h["train_loss"]) + 1)
        ax_loss.plot(epochs, h["train_loss"], "--", color=color, label=f"{label} train")
        ax_loss.plot(epochs, h["test_loss"], "-", color=color, label=f"{label} test")
        ax_acc.plot(epochs, [100 * a for a in h["train_acc"]], "--", color=color)
        ax_acc.plot(epochs, [100 * a for a in h["test_acc"]], "-", color=color, label=label)
    ax_loss.set(xlabel="epoch", ylabel="cross-entropy loss", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="Accuracy (dashed: train)")
    ax_loss.legend(fontsize=8)
    fig.tight_layout()
    return fig


def lmc_curves(
    curves: Mapping[str, Mapping[str, Sequence[float]]], splits=("train", "test")
) -> Figure:
    """Loss and error along the interpolation path, one colour per pair, dashed = train."""
    use_style()
    fig, (ax_loss, ax_err) = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, (label, c) in enumerate(curves.items()):
        for split in splits:
            if f"{split}_loss" not in c:
                continue
            style = "--" if split == "train" else "-"
            name = f"{label} ({split})"
            ax_loss.plot(
                c["alpha"], c[f"{split}_loss"], style, color=f"C{i}", marker=".", label=name
            )
            ax_err.plot(
                c["alpha"], [100 * e for e in c[f"{split}_err"]], style, color=f"C{i}", marker="."
            )
    ax_loss.set(
        xlabel=r"$\alpha$  (0 = model B, 1 = model A)",
        ylabel="cross-entropy loss",
        title="Loss along the path",
    )
    ax_err.set(
        xlabel=r"$\alpha$  (0 = model B, 1 = model A)",
        ylabel="error (%)",
        title="Error along the path",
    )
    ax_loss.legend(fontsize=8)
    fig.tight_layout()
    return fig


def llfc_by_layer(
    results: Mapping[str, Mapping], alpha: float = 0.5, key: str = "cos_dist_per_sample"
) -> Figure:
    """Per layer: LLFC dissimilarity at `alpha` (filled) and the A-vs-B baseline (hollow), per pair.

    `results` maps a pair label to the output of `metrics.llfc`. Log scale: the two differ by
    orders of magnitude when LLFC holds.
    """
    use_style()
    labels = list(results)
    layers = results[labels[0]]["layers"]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(layers) + 2), 3.6))
    width = 0.8 / len(labels)
    base_key = "baseline_" + key
    for i, label in enumerate(labels):
        r = results[label]
        j = r["alphas"].index(alpha)
        xs = [k + (i - (len(labels) - 1) / 2) * width for k in range(len(layers))]
        ax.bar(
            xs,
            [max(r[key][l][j], 1e-17) for l in layers],
            width,
            color=f"C{i}",
            label=rf"{label}: LLFC at $\alpha$={alpha}",
        )
        ax.scatter(
            xs,
            [r[base_key][l] for l in layers],
            marker="o",
            facecolors="none",
            edgecolors=f"C{i}",
            zorder=3,
            label=f"{label}: baseline A vs B",
        )
    ax.set_yscale("log")
    ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
    ylabel = r"$E_x[1-\cos]$" if key.endswith("per_sample") else r"$1-\cos$ over the block"
    ax.set(xlabel="layer (module name)", ylabel=ylabel)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def alpha_frames(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    llfc_results: Mapping[str, Mapping],
    key: str = "test_loss",
    llfc_key: str = "cos_dist_per_sample",
) -> list[Figure]:
    """One figure per alpha: the path's `key` with the current point marked, and per-layer LLFC bars.

    `curves` and `llfc_results` map the same pair labels to `interpolate.lmc_curve` and
    `metrics.llfc` outputs over the same alphas. Left: the curves; right: the LLFC dissimilarity
    of each pair at the current alpha per layer (log scale, fixed limits so frames compare).
    """
    use_style()
    labels = list(curves)
    alphas = list(curves[labels[0]]["alpha"])
    layers = llfc_results[labels[0]]["layers"]
    values = [v for r in llfc_results.values() for vs in r[llfc_key].values() for v in vs]
    positive = [v for v in values if v > 0] or [1e-6]
    lo, hi = min(positive) / 2, max(positive) * 2
    ymax = max(max(c[key]) for c in curves.values())
    ylabel = {"loss": "cross-entropy loss", "err": "error", "acc": "accuracy"}[key.split("_")[-1]]
    frames = []
    for j, alpha in enumerate(alphas):
        fig, (ax_c, ax_b) = plt.subplots(1, 2, figsize=(9, 3.2))
        width = 0.8 / len(labels)
        for i, label in enumerate(labels):
            c = curves[label]
            ax_c.plot(c["alpha"], c[key], "-", color=f"C{i}", label=label)
            ax_c.plot([alpha], [c[key][j]], "o", color=f"C{i}", markersize=8)
            r = llfc_results[label]
            xs = [k + (i - (len(labels) - 1) / 2) * width for k in range(len(layers))]
            ax_b.bar(xs, [max(r[llfc_key][l][j], lo) for l in layers], width, color=f"C{i}")
        ax_c.axvline(alpha, color="0.6", lw=0.8)
        ax_c.set(
            xlabel=r"$\alpha$  (0 = model B, 1 = model A)",
            ylabel=f"{key.split('_')[0]} {ylabel}",
            ylim=(0, ymax * 1.08),
            title=rf"Along the path: $\alpha$ = {alpha:.2f}",
        )
        ax_c.legend(fontsize=8)
        ax_b.set_yscale("log")
        ax_b.set_ylim(lo, hi)
        ax_b.set_xticks(range(len(layers)), layers, rotation=45, ha="right", fontsize=7)
        ax_b.set(xlabel="layer", ylabel=r"LLFC $E_x[1-\cos]$", title="LLFC dissimilarity per layer")
        fig.tight_layout()
        frames.append(fig)
    return frames


def lemma1(
    curves: Mapping[str, Mapping[str, Sequence[float]]],
    logit_errors: Mapping[str, Sequence[float]],
) -> Figure:
    """Per pair: the interpolated net's test error, the logit mixture's, and Lemma 1's bound."""
    use_style()
    labels = list(curves)
    fig, axes = plt.subplots(1, len(labels), figsize=(2.6 * len(labels) + 1, 3.2), sharey=True)
    axes = [axes] if len(labels) == 1 else list(axes)
    for ax, label in zip(axes, labels, strict=True):
        c = curves[label]
        bound = 2 * max(c["test_err"][0], c["test_err"][-1])
        ax.plot(c["alpha"], [100 * e for e in c["test_err"]], "-", marker=".", label="net")
        ax.plot(c["alpha"], [100 * e for e in logit_errors[label]], "--", label="logit mix")
        ax.axhline(100 * bound, color="C3", ls=":", label=r"$2\max(Err_A, Err_B)$")
        ax.set(title=label, xlabel=r"$\alpha$")
    axes[0].set_ylabel("test error (%)")
    axes[0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def theorem1_scatter(results: Mapping[str, Mapping]) -> Figure:
    """Measured pre-activation LLFC defect against Theorem 1's prediction, one colour per pair.

    `results` maps a pair label to `metrics.theorem1` output; both axes are relative to the
    layer's output scale. On the diagonal the layer's input was exactly linear.
    """
    use_style()
    fig, ax = plt.subplots(figsize=(5, 4.2))
    pts = []
    for i, (label, r) in enumerate(results.items()):
        xs = [r["predicted"][l] / r["scale"][l] for l in r["layers"]]
        ys = [r["defect"][l] / r["scale"][l] for l in r["layers"]]
        ax.scatter(xs, ys, color=f"C{i}", label=label, zorder=3)
        for l, x_, y_ in zip(r["layers"], xs, ys, strict=True):
            ax.annotate(
                l, (x_, y_), fontsize=6, alpha=0.7, xytext=(2, 2), textcoords="offset points"
            )
        pts += [v for v in xs + ys if v > 0]
    lo, hi = min(pts) / 2, max(pts) * 2
    ax.plot([lo, hi], [lo, hi], color="0.5", lw=0.8, label="defect = prediction")
    ax.fill_between([lo, hi], [lo / 2, hi / 2], [lo * 2, hi * 2], color="0.5", alpha=0.1)
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi))
    ax.set(
        xlabel=r"predicted $\alpha(1-\alpha)\|(W_A-W_B)(H_A-H_B)\|$ / scale",
        ylabel=r"measured $\|W_\alpha H_\alpha - (\alpha W_AH_A + (1-\alpha)W_BH_B)\|$ / scale",
    )
    ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def llfc_vs_alpha(result: Mapping, key: str = "cos_dist_per_sample", title: str = "") -> Figure:
    """LLFC dissimilarity and the scale c against alpha, one line per layer (one pair)."""
    use_style()
    fig, (ax_d, ax_c) = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, l in enumerate(result["layers"]):
        ax_d.plot(
            result["alphas"],
            [max(v, 1e-17) for v in result[key][l]],
            marker=".",
            color=plt.cm.viridis(i / max(1, len(result["layers"]) - 1)),
            label=l,
        )
        ax_c.plot(
            result["alphas"],
            result["scale_c"][l],
            marker=".",
            color=plt.cm.viridis(i / max(1, len(result["layers"]) - 1)),
        )
    ax_d.set_yscale("log")
    ax_d.set(
        xlabel=r"$\alpha$", ylabel=r"$E_x[1-\cos_\alpha]$", title=f"LLFC dissimilarity {title}"
    )
    ax_c.set(
        xlabel=r"$\alpha$",
        ylabel="c",
        title=r"scale $c$: $c\,f(\theta_\alpha) \approx$ interpolated features",
    )
    ax_d.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def _mean_std(values: float | Sequence[float]) -> tuple[float, float]:
    """(mean, standard deviation over seeds) of a number or a list of numbers (std 0 for one)."""
    v = np.atleast_1d(np.asarray(values, dtype=float))
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def barrier_vs_spawn(
    ks: Sequence[int],
    barriers: Sequence[float | Sequence[float]],
    independent: float | Sequence[float],
    ylabel: str = "test-loss barrier",
) -> Figure:
    """Barrier of spawned pairs against the spawn epoch k (mean, error bar = std over seeds),
    with the independent pair as a line and band."""
    use_style()
    fig, ax = plt.subplots(figsize=(5, 3.4))
    stats = [_mean_std(b) for b in barriers]
    ax.errorbar(
        ks,
        [m for m, _ in stats],
        [s for _, s in stats],
        marker="o",
        capsize=3,
        label="spawned pair",
    )
    m, s = _mean_std(independent)
    ax.axhline(m, color="C3", ls="--", label="independent pair")
    ax.axhspan(m - s, m + s, color="C3", alpha=0.15, lw=0)
    ax.set(xlabel="spawn epoch k", ylabel=ylabel)
    ax.legend()
    fig.tight_layout()
    return fig


def layer_bars(
    values: Mapping[str, Mapping[str, float | Sequence[float]]],
    ylabel: str,
    log: bool = True,
    title: str = "",
    markers: Mapping[str, Mapping[str, float | Sequence[float]]] | None = None,
) -> Figure:
    """Grouped bars: one group per layer, one bar per series (`values[series][layer]`).

    A value may be a list over seeds: the bar is its mean, the error bar its standard deviation.
    `markers` (same shape) adds one hollow circle per bar, e.g. the A-vs-B baseline of each pair.
    """
    use_style()
    series = list(values)
    layers = list(values[series[0]])
    fig, ax = plt.subplots(figsize=(max(5, 0.7 * len(layers) + 2), 3.6))
    width = 0.8 / len(series)
    floor = 1e-17 if log else -np.inf
    for i, s in enumerate(series):
        xs = _grouped_x(len(layers), i, len(series))
        stats = [_mean_std(values[s][l]) for l in layers]
        ys = [max(m, floor) for m, _ in stats]
        errs = [min(sd, y - floor) if log else sd for (_, sd), y in zip(stats, ys, strict=True)]
        ax.bar(xs, ys, width, color=f"C{i}", label=s, yerr=errs, capsize=2)
        if markers is not None and s in markers:
            ax.scatter(
                xs,
                [_mean_std(markers[s][l])[0] for l in layers],
                marker="o",
                facecolors="none",
                edgecolors=f"C{i}",
                zorder=3,
            )
    if log:
        ax.set_yscale("log")
    ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
    ax.set(xlabel="layer (module name)", ylabel=ylabel, title=title)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    return fig


def barrier_vs_llfc(
    points: Sequence[Mapping], layers: Sequence[str] = ("deepest", "logits")
) -> Figure:
    """The paper's central picture over every pair: test-loss barrier (x) against LLFC (y).

    `points`: one dict per pair with "kind" (legend group), "barrier" and one LLFC dissimilarity
    per entry of `layers` (e.g. at the deepest hidden layer and at the logits). Log axes; a
    barrier of 0 is drawn at the left edge (symlog).
    """
    use_style()
    fig, axes = plt.subplots(1, len(layers), figsize=(4.6 * len(layers), 3.8), squeeze=False)
    kinds = list(dict.fromkeys(p["kind"] for p in points))
    for ax, layer in zip(axes[0], layers, strict=True):
        for i, kind in enumerate(kinds):
            pts = [p for p in points if p["kind"] == kind]
            ax.scatter(
                [p["barrier"] for p in pts],
                [max(p[layer], 1e-17) for p in pts],
                color=f"C{i % 10}",
                marker="os^vDP*X"[i % 8],
                label=kind,
                alpha=0.8,
            )
        ax.set_xscale("symlog", linthresh=1e-2)
        ax.set_yscale("log")
        ax.set(
            xlabel="test-loss barrier",
            ylabel=r"LLFC $E_x[1-\cos_{0.5}]$",
            title=f"LLFC at the {layer} layer" if layer != "logits" else "LLFC at the logits",
        )
    axes[0][-1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- chapter 6 (beyond)


def _grouped_x(n_layers: int, i: int, n_series: int) -> list[float]:
    """The x positions of series `i` of `n_series` in a grouped bar chart, one group per layer."""
    width = 0.8 / n_series
    return [k + (i - (n_series - 1) / 2) * width for k in range(n_layers)]


def angle_bars(results: Mapping[str, Mapping], title: str = "") -> Figure:
    """Mean principal angle per layer, one bar per pair, and the random-subspace reference (black ticks).

    `results` maps a pair label to `layer_principal_angles` output (the same layers for all).
    """
    use_style()
    labels = list(results)
    layers = results[labels[0]]["layers"]
    fig, ax = plt.subplots(figsize=(max(6, 0.7 * len(layers) + 2), 3.6))
    width = 0.8 / len(labels)
    for i, label in enumerate(labels):
        xs = _grouped_x(len(layers), i, len(labels))
        ax.bar(xs, [results[label]["mean"][l] for l in layers], width, color=f"C{i}", label=label)
    ref = results[labels[0]]["random"]
    ax.scatter(
        range(len(layers)),
        [ref[l] for l in layers],
        marker="_",
        s=900,
        color="k",
        zorder=3,
        label="random subspaces",
    )
    ax.set_ylim(0, 112)  # room for the legend above the 90-degree mark
    ax.set_yticks([0, 15, 30, 45, 60, 75, 90])
    ax.set_xticks(range(len(layers)), layers, rotation=45, ha="right")
    ax.set(xlabel="layer (module name)", ylabel="mean principal angle (degrees)", title=title)
    ax.legend(fontsize=7, ncol=len(labels) + 1, loc="upper center", markerscale=0.4)
    fig.tight_layout()
    return fig


def stitching_lines(
    results: Mapping[str, Mapping], own_acc: Mapping[str, float], title: str = ""
) -> Figure:
    """Stitched test accuracy per layer, one line per series, each receiver's own accuracy dashed.

    `results` maps a series label to `stitching` output; `own_acc` maps the same labels to the
    receiver's own accuracy (a dashed line in the series' colour). Chance (10 %) is dotted.
    """
    use_style()
    labels = list(results)
    layers = results[labels[0]]["layers"]
    fig, ax = plt.subplots(figsize=(max(6, 0.6 * len(layers) + 2), 3.6))
    xs = range(len(layers))
    for i, label in enumerate(labels):
        accs = [100 * results[label]["acc"][l] for l in layers]
        ax.plot(xs, accs, marker="o", color=f"C{i}", label=label)
        ax.axhline(100 * own_acc[label], color=f"C{i}", ls="--", lw=0.8)
    ax.axhline(10, color="0.5", ls=":", lw=0.8, label="chance")
    ax.set_ylim(0, 100)
    ax.set_xticks(list(xs), layers, rotation=45, ha="right")
    ax.set(xlabel="stitched layer (module name)", ylabel="test accuracy (%)", title=title)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def bn_reset_curves(
    plain: Mapping[str, Mapping[str, Sequence[float]]],
    reset: Mapping[str, Mapping[str, Sequence[float]]],
    title: str = "",
) -> Figure:
    """Test error along the path per pair: interpolated BN statistics (solid) and recomputed (dashed)."""
    use_style()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for i, label in enumerate(plain):
        for curves, style, note in ((plain, "-", "interpolated stats"), (reset, "--", "BN reset")):
            c = curves[label]
            ax.plot(
                c["alpha"],
                [100 * e for e in c["test_err"]],
                style,
                marker=".",
                color=f"C{i}",
                label=f"{label}, {note}",
            )
    ax.set(
        xlabel=r"$\alpha$  (0 = model B, 1 = model A)",
        ylabel="test error (%)",
        title=title,
    )
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def recipe_bars(rows: Mapping[str, Mapping[str, float]], title: str = "") -> Figure:
    """Per training recipe: the test-loss barrier (left) and the largest LLFC / baseline ratio (right)."""
    use_style()
    labels = list(rows)
    fig, (ax_b, ax_r) = plt.subplots(1, 2, figsize=(9, 3.4))
    xs = range(len(labels))
    colors = [f"C{i}" for i in xs]
    ax_b.bar(xs, [rows[l]["barrier_loss"] for l in labels], color=colors)
    ax_r.bar(xs, [rows[l]["llfc_ratio"] for l in labels], color=colors)
    ax_b.set(xlabel="recipe", ylabel="test-loss barrier", title="LMC: the barrier")
    ax_r.set(
        xlabel="recipe",
        ylabel=r"max LLFC / baseline at $\alpha$ = 0.5",
        title="LLFC: the worst hidden layer",
    )
    for ax in (ax_b, ax_r):
        ax.set_xticks(list(xs), labels, rotation=20, ha="right")
    if title:
        fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- chapter 7 (cross-task)


def series_vs_x(
    xs: Sequence[float],
    series: Mapping[str, Sequence[float | Sequence[float]]],
    xlabel: str,
    ylabel: str,
    log: bool = True,
    hline: float | None = None,
    title: str = "",
) -> Figure:
    """One line per series against xs (a value may be a list over seeds: mean, error bar = std).

    `hline` draws a dashed horizontal reference (e.g. a tolerance).
    """
    use_style()
    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    for i, (name, values) in enumerate(series.items()):
        stats = [_mean_std(v) for v in values]
        ax.errorbar(
            xs,
            [m for m, _ in stats],
            [s for _, s in stats],
            marker="os^vD"[i % 5],
            capsize=3,
            color=f"C{i}",
            label=name,
        )
    if hline is not None:
        ax.axhline(hline, color="0.4", ls="--", lw=1)
    if log:
        ax.set_yscale("log")
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.set_xticks(list(xs))
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ---------------------------------------------------------------- chapter 3 (width)


def against_width(
    panels: Mapping[str, Mapping[str, Mapping[float, float | Sequence[float]]]],
    xlabel: str = "width",
    log_y: Sequence[bool] = (),
    lines: Mapping[str, float] | None = None,
) -> Figure:
    """One panel per quantity (`panels[ylabel][series][width]`): mean over seeds, error bar = std.

    Log-scaled width axis; `log_y` says which panels get a log y axis (linear below 0.01);
    `lines` maps a panel's ylabel to a horizontal reference (e.g. the LLFC test's threshold).
    Points whose mean is not finite (a ratio 0 / 0) are left out.
    """
    use_style()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(4.4 * n, 3.5), squeeze=False)
    for j, (ax, (ylabel, series)) in enumerate(zip(axes[0], panels.items(), strict=True)):
        for i, (label, by_width) in enumerate(series.items()):
            stats = {w: _mean_std(by_width[w]) for w in sorted(by_width)}
            stats = {w: ms for w, ms in stats.items() if np.isfinite(ms[0])}  # e.g. 0 / 0
            widths, stats = list(stats), list(stats.values())
            if not widths:
                continue
            ax.errorbar(
                widths,
                [m for m, _ in stats],
                [s for _, s in stats],
                marker="os^vDP"[i % 6],
                capsize=3,
                color=f"C{i % 10}",
                label=label,
            )
        if lines and ylabel in lines:
            ax.axhline(lines[ylabel], color="k", ls=":", lw=1)
        if ax.containers:  # at least one series with a point
            ax.set_xscale("log", base=2)
        if j < len(log_y) and log_y[j]:
            ax.set_yscale("symlog", linthresh=1e-2)  # a barrier of 0 stays on the axis
        ax.set(xlabel=xlabel, ylabel=ylabel)
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    return fig


def spectra(curves: Mapping[str, Mapping[str, Sequence[float]]], title: str = "") -> Figure:
    """Singular values over the largest, against their index over the dimension: W left, H right.

    `curves[label]` = {"w": singular values of the weight, "h": of the features}, largest first.
    """
    use_style()
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4))
    for i, (label, c) in enumerate(curves.items()):
        for ax, key in zip(axes, ("w", "h"), strict=True):
            s = np.asarray(c[key], dtype=float)
            ax.plot(
                (np.arange(len(s)) + 1) / len(s),
                np.maximum(s / s[0], 1e-6),
                color=f"C{i % 10}",
                label=label,
            )
    for ax, what in zip(axes, ("weights W", "features H"), strict=True):
        ax.set_yscale("log")
        ax.set(xlabel="index / dimension", ylabel="singular value / largest", title=what)
    axes[1].legend(fontsize=8)
    if title:
        fig.suptitle(title, y=1.02)
    fig.tight_layout()
    return fig
