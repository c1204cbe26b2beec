"""The book's figure style, one helper per kind of figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
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
