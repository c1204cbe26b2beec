"""Which layers count, and their outputs batch by batch through forward hooks.

The layers are those of the paper's code, named by the model's own module names:
MLP and VGG: every Linear/Conv output and every ReLU output; ResNet-20: the stem conv and ReLU,
inside each block the first ReLU and the block output (its final ReLU), and the final Linear.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import torch
from torch import nn

from llfc_utils.config import check_batch_size
from llfc_utils.models import ResNet20


def layers(model: nn.Module, kinds: tuple[type[nn.Module], ...] | None = None) -> list[str]:
    """The names of the layers whose outputs the book measures, in forward order.

    `kinds` restricts to module types (e.g. `(nn.ReLU,)` for weak additivity).
    """
    if isinstance(model, ResNet20):
        names = ["conv1", "relu1"]
        for s in (1, 2, 3):
            for b in range(3):
                names += [f"stage{s}.block{b}.relu1", f"stage{s}.block{b}.relu2"]
        names.append("fc")
    else:
        names = [n for n, m in model.named_modules() if isinstance(m, (*WEIGHT_KINDS, nn.ReLU))]
    if kinds is not None:
        mods = dict(model.named_modules())
        names = [n for n in names if isinstance(mods[n], kinds)]
    return names


WEIGHT_KINDS = (nn.Linear, nn.Conv2d)  # the layers with a weight matrix (the authors' layers)


def weight_layers(model: nn.Module) -> list[str]:
    """The names of the Linear and Conv2d layers of `model`, in forward order."""
    return [n for n, m in model.named_modules() if isinstance(m, WEIGHT_KINDS)]


def relu_layers(model: nn.Module) -> list[str]:
    """The ReLU layers of `model` (where weak additivity is measured)."""
    return [n for n, m in model.named_modules() if isinstance(m, nn.ReLU)]


@contextmanager
def capture(
    model: nn.Module, names: Sequence[str], inputs: bool = False
) -> Iterator[dict[str, torch.Tensor]]:
    """Within the block, each forward of `model` stores layer outputs (or inputs) in the yielded dict.

    The hooks are removed on exit, also on error. Unknown names raise ValueError.
    """
    mods = dict(model.named_modules())
    unknown = [n for n in names if n not in mods]
    if unknown:
        raise ValueError(f"unknown layer(s) {unknown}; valid: {layers(model)}")
    store: dict[str, torch.Tensor] = {}
    handles = []
    for n in names:

        def hook(_m, inp, out, n=n):
            store[n] = (inp[0] if inputs else out).detach()

        handles.append(mods[n].register_forward_hook(hook))
    try:
        yield store
    finally:
        for h in handles:
            h.remove()


@torch.no_grad()
def iter_features(
    models: Sequence[nn.Module],
    x: torch.Tensor,
    names: Sequence[str],
    batch_size: int = 500,
    inputs: bool = False,
    flatten: bool = True,
) -> Iterator[list[dict[str, torch.Tensor]]]:
    """Yield, batch by batch, one {layer: (B, D) features} dict per model, in lockstep.

    All models see the same batch in eval mode; features are flattened per sample unless
    `flatten=False`. With `inputs=True` the layers' inputs are captured instead (e.g. ReLU
    pre-activations).
    """
    check_batch_size(batch_size)
    for i in range(0, len(x), batch_size):
        yield of_batch(models, x[i : i + batch_size], names, inputs, flatten)


@torch.no_grad()
def of_batch(
    models: Sequence[nn.Module],
    xb: torch.Tensor,
    names: Sequence[str],
    inputs: bool = False,
    flatten: bool = True,
) -> list[dict[str, torch.Tensor]]:
    """One {layer: features} dict per model for the batch `xb` (eval mode)."""
    out = []
    for m in models:
        m.eval()
        with capture(m, names, inputs) as store:
            m(xb)
        out.append({n: store[n].reshape(len(xb), -1) if flatten else store[n] for n in names})
    return out
