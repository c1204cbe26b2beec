"""The exercises' checks: `checks.exercise("02.1", k_half, ...)` says right, or wrong with a hint.

A chapter's check cell (tagged `check`, hidden in the book, shown in its lab) is one call:

    from llfc_utils.tools import checks

    assert checks.exercise("02.1", k_half, barriers[roles[0]], spawn_epochs[roles[0]])

`exercise` prints "Exercise 02.1: right." or "Exercise 02.1: wrong. <hint>" and returns whether
the answer is right; it never prints the expected value. The cell asserts the returned bool, so a
wrong answer stops the book's build (papermill and the notebook tests) and stops a lab's
"Run all" at that exercise, right under the hint. The computation of the expected answer lives
here, not in the notebook, so a lab's check cell gives nothing away. Each check's docstring says
what it is passed; when a chapter renames a variable, only its call changes.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from llfc_utils import beyond, interpolate, train

Hint = str | None  # None: right; otherwise what to look at again, without the answer


def _value(v: Any) -> float:
    """A number, or the mean of a sequence of numbers (a per-seed list)."""
    if isinstance(v, Sequence) and not isinstance(v, str):
        return sum(float(x) for x in v) / len(v)
    return float(v)


def _number(answer: Any, name: str) -> Hint:
    """A hint if `answer` is not a finite real number."""
    if answer is None:
        return f"`{name}` is still None: set it in the cell above."
    if isinstance(answer, torch.Tensor) and answer.numel() == 1:
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, numbers.Real):
        return f"`{name}` should be a number, got a {type(answer).__name__} (use `.item()` on a tensor)."
    if not math.isfinite(answer):
        return f"`{name}` is {answer}: it should be a finite number."
    return None


def _close(a: float, b: float, tol: float) -> bool:
    return abs(float(a) - float(b)) <= tol


def _largest(answer: Any, values: Mapping[str, Any], name: str, what: str) -> Hint:
    """Right if `answer` is a key of `values` with the largest value."""
    if answer is None:
        return f"`{name}` is still None: set it in the cell above."
    if answer not in values:
        return f"`{name}` should be one of the layer names ({', '.join(map(str, values))})."
    scores = {k: _value(v) for k, v in values.items()}
    if scores[answer] >= max(scores.values()):
        return None
    if scores[answer] <= min(scores.values()):
        return f"that layer has the smallest {what}; the question asks for the largest."
    return f"another layer has a larger {what}; compare all of them."


def ex00_1(my_acc: Any, history: Mapping[str, Sequence[float]]) -> Hint:
    """`my_acc`: the student's test accuracy; `history`: the training history (its "test_acc")."""
    if hint := _number(my_acc, "my_acc"):
        return hint
    my_acc = float(my_acc)
    if my_acc > 1:
        return "an accuracy here is a fraction between 0 and 1, not a percentage."
    if _close(my_acc, history["test_acc"][-1], 1e-6):
        return None
    return "evaluate the trained `model` on the *test* split: `train.dataset(cfg, 'test', device)`."


def ex00_2(n_params: Any, model: nn.Module) -> Hint:
    """`n_params`: the student's count; `model`: the trained network."""
    if hint := _number(n_params, "n_params"):
        return hint
    n_params = float(n_params)
    params = [p for p in model.parameters() if p.requires_grad]
    if n_params == sum(p.numel() for p in params):
        return None
    if n_params == sum(p.numel() for p in params if p.ndim > 1):
        return "that counts the weights only: each layer has a bias too."
    if n_params == len(params):
        return "that is the number of parameter tensors; count their entries (`.numel()`)."
    return "each Linear layer with n inputs and m outputs has n * m weights and m biases."


def ex01_1(my_barrier: Any, curve: Mapping[str, Sequence[float]]) -> Hint:
    """`my_barrier`: the student's barrier; `curve`: the independent pair's curve ("alpha", "test_loss")."""
    if hint := _number(my_barrier, "my_barrier"):
        return hint
    my_barrier = float(my_barrier)
    if _close(my_barrier, interpolate.barrier(curve, "test_loss"), 1e-9):
        return None
    if my_barrier < 0:
        return "the barrier is a maximum over a grid that contains the endpoints: it is never negative."
    swapped = {**curve, "alpha": [1 - a for a in curve["alpha"]]}
    if _close(my_barrier, interpolate.barrier(swapped, "test_loss"), 1e-9):
        return "the straight line weights loss(1) by alpha and loss(0) by 1 - alpha; yours is reversed."
    return "take the largest gap between the test loss and the straight line joining its two ends."


def ex01_2(err_b: Any, curve: Mapping[str, Sequence[float]]) -> Hint:
    """`err_b`: the student's test error of model B; `curve`: the independent pair's curve ("test_err")."""
    if hint := _number(err_b, "err_b"):
        return hint
    err_b = float(err_b)
    errors = list(curve["test_err"])
    if _close(err_b, errors[0], 1e-6):
        return None
    if _close(1 - err_b, errors[0], 1e-6):
        return "that is the accuracy; store the error, 1 - accuracy."
    if _close(err_b, errors[-1], 1e-6):
        return "that is model A's error; evaluate `indep_b`."
    return "evaluate `indep_b` on the test set and store 1 - its accuracy."


def ex02_1(k_half: Any, row: Mapping[Any, Any], spawn_epochs: Sequence[int]) -> Hint:
    """`k_half`: the student's k or None; `row`: spawn epoch (and "independent") -> test-loss barrier
    (a number or a per-seed list); `spawn_epochs`: the grid of k."""
    half = 0.5 * _value(row["independent"])
    below = [k for k in spawn_epochs if _value(row[k]) < half]
    if k_half is None:
        return None if not below else "some k in the grid has a barrier below half; look again."
    if k_half not in spawn_epochs:
        return f"`k_half` should be one of the grid's spawn epochs {list(spawn_epochs)}, or None."
    if k_half not in below:
        return "the barrier at that k is not below half the independent pair's."
    if k_half != min(below):
        return "a smaller k in the grid also has a barrier below half; the question asks for the smallest."
    return None


def ex02_2(worst_layer: Any, record: Mapping[str, Any], alpha: float = 0.5) -> Hint:
    """`worst_layer`: the student's layer; `record`: the spawned pair's LLFC record ("alphas",
    "layers", "cos_dist_per_sample" per layer over alphas, "baseline_cos_dist_per_sample")."""
    mid = list(record["alphas"]).index(alpha)
    ratios = {  # layers whose baseline is 0 (dead in both nets) have no ratio
        layer: _value(record["cos_dist_per_sample"][layer][mid])
        / _value(record["baseline_cos_dist_per_sample"][layer])
        for layer in record["layers"]
        if _value(record["baseline_cos_dist_per_sample"][layer]) > 0
    }
    hint = _largest(worst_layer, ratios, "worst_layer", "ratio")
    if hint and worst_layer in ratios:
        raw = {layer: _value(record["cos_dist_per_sample"][layer][mid]) for layer in ratios}
        if raw[worst_layer] == max(raw.values()):
            return (
                "that layer has the largest LLFC dissimilarity; divide each by its baseline first."
            )
    return hint


def ex03_1(max_change: Any) -> Hint:
    """`max_change`: the student's largest absolute logit difference between B and its permuted copy."""
    if hint := _number(max_change, "max_change"):
        return hint
    max_change = float(max_change)
    if max_change < 0:
        return "take the absolute value of the difference before the maximum."
    if max_change < 1e-3:
        return None
    return (
        "that is far too large for the same function: compare B with its AM-permuted copy "
        "(not with A), on the same images."
    )


def ex03_2(better: Any, barriers: Mapping[Any, Mapping[str, Any]], role: str) -> Hint:
    """`better`: "wm" or "am"; `barriers`: (role, method) -> {"loss": barrier or per-seed list};
    `role`: the model the question is about."""
    if better not in ("wm", "am"):
        return f'`better` should be the string "wm" or "am", got {better!r}.'
    other = "am" if better == "wm" else "wm"
    if _value(barriers[role, better]["loss"]) <= _value(barriers[role, other]["loss"]):
        return None
    return "compare the two methods' test-loss barriers for this model: the smaller one wins."


def ex04_1(gap_same: Any, gap_opposite: Any) -> Hint:
    """`gap_same`, `gap_opposite`: the student's largest additivity gaps for equal and opposite signs."""
    if hint := _number(gap_same, "gap_same") or _number(gap_opposite, "gap_opposite"):
        return hint
    gap_same = float(gap_same)
    gap_opposite = float(gap_opposite)
    if gap_same < 0 or gap_opposite < 0:
        return "take the absolute value of the difference before the maximum."
    if gap_same >= 1e-6:
        return "with equal signs, h_b = h_a.sign() * torch.rand(1000), ReLU is exactly additive; check `gap_same`."
    if gap_opposite <= 0.5:
        return "with h_b = -h_a, relu of the mix is relu(0); check `gap_opposite` and its formula."
    return None


def ex04_2(most_disagreeing: Any, sign_disagreement: Mapping[str, Any]) -> Hint:
    """`most_disagreeing`: the student's layer; `sign_disagreement`: ReLU layer -> fraction
    (a number or a per-seed list) for the independent pair."""
    return _largest(most_disagreeing, sign_disagreement, "most_disagreeing", "sign disagreement")


def ex05_1(max_diff: Any, lhs: torch.Tensor, rhs: torch.Tensor) -> Hint:
    """`max_diff`: the student's max |lhs - rhs|; `lhs`, `rhs`: the two sides of the identity."""
    if hint := _number(max_diff, "max_diff"):
        return hint
    max_diff = float(max_diff)
    if not (isinstance(lhs, torch.Tensor) and isinstance(rhs, torch.Tensor)):
        return "`lhs` and `rhs` should be torch tensors."
    if lhs.dtype != torch.float64 or rhs.dtype != torch.float64:
        return "make the matrices float64 (`dtype=torch.float64`)."
    if lhs.shape != (5, 11) or rhs.shape != (5, 11):
        return "W is (5, 7) and H is (7, 11): both sides should be (5, 11)."
    if lhs.abs().max() <= 1e-3:
        return "`lhs` is (almost) zero: use random matrices (`torch.randn`)."
    if not _close(max_diff, (lhs - rhs).abs().max().item(), 1e-12):
        return "`max_diff` should be the largest absolute entry of lhs - rhs."
    if max_diff >= 1e-10:
        return "expand the product (W_A - W_B)(H_A - H_B) and compare the signs of each term."
    return None


def ex05_2(widest_gap_layer: Any, input_gap: Mapping[str, Any]) -> Hint:
    """`widest_gap_layer`: the student's layer; `input_gap`: layer -> input gap (a number or a
    per-seed list) of the unaligned pair."""
    return _largest(widest_gap_layer, input_gap, "widest_gap_layer", "input gap")


def ex06_1(flip_left: Any, flip_right: Any, model: nn.Module, top_k: int) -> Hint:
    """`flip_left`, `flip_right`: the student's mean angles; `model`: the net whose first weight
    layer is flipped (model A of the unaligned pair); `top_k`: the chapter's subspace size."""
    if hint := _number(flip_left, "flip_left") or _number(flip_right, "flip_right"):
        return hint
    flip_left = float(flip_left)
    flip_right = float(flip_right)
    module = dict(model.named_modules())[beyond.weight_layers(model)[0]]
    w = beyond.weight_matrix(module)
    k = min(top_k, *w.shape)
    left, right = (float(beyond.principal_angles(w, w.flip(0), k, s).mean()) for s in beyond.SIDES)
    if _close(flip_left, left, 1e-6) and _close(flip_right, right, 1e-4):
        return None
    if _close(flip_left, right, 1e-4) and _close(flip_right, left, 1e-6):
        return "left and right are swapped."
    return (
        "use the first weight layer of model A, its matrix with the rows reversed, "
        "k = min(top_k, *w.shape), and the mean of beyond.principal_angles for each side."
    )


def ex06_2(reverse_acc: Any, pair: tuple[nn.Module, nn.Module], cfg: Any) -> Hint:
    """`reverse_acc`: the student's accuracy; `pair`: (A, B), the spawned pair; `cfg`: its config
    (for the test set)."""
    if hint := _number(reverse_acc, "reverse_acc"):
        return hint
    reverse_acc = float(reverse_acc)
    if reverse_acc > 1:
        return "an accuracy here is a fraction between 0 and 1, not a percentage."
    a, b = pair
    x, y = train.dataset(cfg, "test", next(a.parameters()).device)
    if _close(reverse_acc, beyond.stitch(a, b, beyond.weight_layers(a)[1], x, y)[1], 1e-6):
        return None
    if _close(reverse_acc, beyond.stitch(b, a, beyond.weight_layers(b)[1], x, y)[1], 1e-6):
        return "that is the other direction: the receiver is A and the donor is B."
    return "stitch B's features into A at A's second weight layer, on the test set."


def ex07_1(acc_lambda0: Any, pretrained: nn.Module, cfg: Any) -> Hint:
    """`acc_lambda0`: the student's accuracy; `pretrained`: the first seed's pretrained network;
    `cfg`: its config (for the test set)."""
    if hint := _number(acc_lambda0, "acc_lambda0"):
        return hint
    acc_lambda0 = float(acc_lambda0)
    if acc_lambda0 > 1:
        return "an accuracy here is a fraction between 0 and 1, not a percentage."
    x, y = train.dataset(cfg, "test", next(pretrained.parameters()).device)
    if _close(acc_lambda0, train.evaluate(pretrained, x, y)[1], 1e-6):
        return None
    return (
        "combine the pretrained network and the two fine-tuned ones with "
        "crosstask.arithmetic_weights(2, 0.0), and evaluate it on the test set of all classes."
    )


def ex07_2(easiest_layer: Any, mid_rise: Mapping[str, Any]) -> Hint:
    """`easiest_layer`: the student's layer; `mid_rise`: layer -> midpoint loss rise (the
    independent pair's layer-wise paths)."""
    if easiest_layer is None:
        return "`easiest_layer` is still None: set it in the cell above."
    if easiest_layer not in mid_rise:
        return (
            f"`easiest_layer` should be one of the layer names ({', '.join(map(str, mid_rise))})."
        )
    rises = {k: _value(v) for k, v in mid_rise.items()}
    if rises[easiest_layer] <= min(rises.values()):
        return None
    if rises[easiest_layer] >= max(rises.values()):
        return "that layer has the largest rise; the question asks for the smallest."
    return "another layer has a smaller midpoint rise; compare all of them."


CHECKS: dict[str, Callable[..., Hint]] = {
    "00.1": ex00_1,
    "00.2": ex00_2,
    "01.1": ex01_1,
    "01.2": ex01_2,
    "02.1": ex02_1,
    "02.2": ex02_2,
    "03.1": ex03_1,
    "03.2": ex03_2,
    "04.1": ex04_1,
    "04.2": ex04_2,
    "05.1": ex05_1,
    "05.2": ex05_2,
    "06.1": ex06_1,
    "06.2": ex06_2,
    "07.1": ex07_1,
    "07.2": ex07_2,
}


def verdict(number: str, *args: Any) -> Hint:
    """None if the answer to exercise `number` is right, else a hint (nothing is printed)."""
    if number not in CHECKS:
        raise ValueError(f"no check for exercise {number!r}; known: {', '.join(CHECKS)}")
    return CHECKS[number](*args)


def exercise(number: str, *args: Any) -> bool:
    """Print whether the answer to exercise `number` ("02.1") is right, with a hint if not; return it."""
    hint = verdict(number, *args)
    print(f"Exercise {number}: right." if hint is None else f"Exercise {number}: wrong. {hint}")
    return hint is None
