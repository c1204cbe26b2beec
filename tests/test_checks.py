"""The exercises' checks: each fails on the unanswered prompt, passes on the answer, rejects a wrong one."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.linalg
import torch
from torch import nn

from llfc_utils import beyond, config, train
from llfc_utils.tools import checks


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))


def _identity_sides() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    wa, wb, ha, hb = (
        torch.randn(*s, dtype=torch.float64, generator=g) for s in [(5, 7)] * 2 + [(7, 11)] * 2
    )
    return wa @ ha + wb @ hb - wa @ hb - wb @ ha, (wa - wb) @ (ha - hb)


def _flip_angles(model: nn.Module, top_k: int) -> tuple[float, float]:
    """Mean principal angles (degrees) of the first layer's weight vs its row-reversed copy, by SVD."""
    w = model[0].weight.detach().double().numpy()
    k = min(top_k, *w.shape)
    u, _, vh = np.linalg.svd(w, full_matrices=False)
    u2, _, vh2 = np.linalg.svd(w[::-1], full_matrices=False)
    left = np.rad2deg(scipy.linalg.subspace_angles(u[:, :k], u2[:, :k])).mean()
    right = np.rad2deg(scipy.linalg.subspace_angles(vh[:k].T, vh2[:k].T)).mean()
    return float(left), float(right)


def _cases() -> dict[str, tuple]:
    """number -> (the other arguments, the unanswered answer(s), a right one, a wrong one)."""
    curve = {
        "alpha": [0, 0.25, 0.5, 0.75, 1],
        "test_loss": [1, 2.5, 3, 2.2, 2],
        "test_err": [0.12, 0.3, 0.5, 0.3, 0.1],
    }
    record = {
        "alphas": [0, 0.5, 1],
        "layers": ["l1", "l2", "l3"],
        "cos_dist_per_sample": {"l1": [0, 0.1, 0], "l2": [0, 0.2, 0], "l3": [0, 0.3, 0]},
        "baseline_cos_dist_per_sample": {"l1": 0.1, "l2": 1.0, "l3": 1.0},
    }  # ratios at alpha 0.5: 1.0, 0.2, 0.3
    lhs, rhs = _identity_sides()
    model = _mlp()
    left, right = _flip_angles(model, top_k=3)
    return {
        "00.1": (({"test_acc": [0.5, 0.8765]},), (None,), (0.8765,), (0.5,)),
        "00.2": ((model,), (None,), (8 * 6 + 6 + 6 * 4 + 4 + 4 * 2 + 2,), (8 * 6 + 6 * 4 + 4 * 2,)),
        "01.1": ((curve,), (None,), (1.5,), (2.0,)),
        "01.2": ((curve,), (None,), (0.12,), (0.1,)),
        "02.1": (
            ({"independent": 1.0, 0: 0.9, 1: 0.6, 2: 0.3, 5: 0.1}, [0, 1, 2, 5]),
            (None,),
            (2,),
            (5,),
        ),
        "02.2": ((record,), (None,), ("l1",), ("l3",)),
        "03.1": ((), (None,), (2e-6,), (1.5,)),
        "03.2": (
            ({("mlp", "wm"): {"loss": 0.3}, ("mlp", "am"): {"loss": 0.1}}, "mlp"),
            (None,),
            ("am",),
            ("wm",),
        ),
        "04.1": ((), (None, None), (0.0, 1.2), (0.0, 0.0)),
        "04.2": (({"relu1": 0.1, "relu2": 0.4, "relu3": 0.2},), (None,), ("relu2",), ("relu1",)),
        "05.1": ((lhs, rhs), (None,), ((lhs - rhs).abs().max().item(),), (1.0,)),
        "05.2": (
            ({"fc1": [0.5, 0.7], "fc2": [0.9, 1.1], "fc3": [0.2, 0.2]},),
            (None,),
            ("fc2",),
            ("fc3",),
        ),
        "06.1": ((model, 3), (None, None), (left, right), (right, left)),
        "07.2": (({"fc1": 0.3, "fc2": 0.05, "fc3": 0.2},), (None,), ("fc2",), ("fc1",)),
    }


CASES = _cases()


def _call(number: str, answer: tuple, rest: tuple) -> bool:
    """checks.exercise with the answer(s) first, then the chapter's objects."""
    return checks.exercise(number, *answer, *rest)


@pytest.mark.parametrize("number", sorted(CASES))
def test_check_rejects_the_prompt_accepts_the_answer_rejects_a_wrong_one(
    number: str, capsys
) -> None:
    rest, unanswered, right, wrong = CASES[number]
    assert _call(number, right, rest) is True
    assert capsys.readouterr().out == f"Exercise {number}: right.\n"
    assert _call(number, unanswered, rest) is False
    assert capsys.readouterr().out.startswith(f"Exercise {number}: wrong. ")
    assert _call(number, wrong, rest) is False
    out = capsys.readouterr().out
    assert out.startswith(f"Exercise {number}: wrong. ") and len(out) > 40, "a hint follows"
    hint = out.removeprefix(f"Exercise {number}: wrong. ")
    assert all(str(v) not in hint for v in right), f"the hint gives the answer away: {hint}"


def test_check_06_2_stitches_the_pair_on_the_test_set(fashion_mnist, capsys) -> None:
    cfg = config.get("smoke", "mlp")
    a, b = train.build_model(cfg, 1), train.build_model(cfg, 2)
    x, y = train.dataset(cfg, "test", "cpu")
    answer = beyond.stitch(a, b, beyond.weight_layers(a)[1], x, y)[1]
    assert checks.exercise("06.2", answer, (a, b), cfg)
    assert not checks.exercise("06.2", None, (a, b), cfg)
    assert not checks.exercise("06.2", answer + 0.05, (a, b), cfg)
    out = capsys.readouterr().out
    assert out.count("right.") == 1 and out.count("wrong.") == 2 and str(answer) not in out


def test_check_07_1_is_the_pretrained_networks_accuracy(fashion_mnist, capsys) -> None:
    cfg = config.get("smoke", "mlp")
    pre = train.build_model(cfg, 1)
    x, y = train.dataset(cfg, "test", "cpu")
    answer = train.evaluate(pre, x, y)[1]
    assert checks.exercise("07.1", answer, pre, cfg)
    assert not checks.exercise("07.1", None, pre, cfg)
    assert not checks.exercise("07.1", answer + 0.05, pre, cfg)
    out = capsys.readouterr().out
    assert out.count("right.") == 1 and out.count("wrong.") == 2 and str(answer) not in out


def test_every_check_is_tested() -> None:
    assert set(checks.CHECKS) == set(CASES) | {"06.2", "07.1"}


def test_wrong_hints_are_specific() -> None:
    rest, *_ = CASES["00.2"]
    assert "bias" in checks.verdict("00.2", 8 * 6 + 6 * 4 + 4 * 2, *rest)
    assert "divide" in checks.verdict("02.2", "l3", *CASES["02.2"][0])
    assert "swapped" in checks.verdict("06.1", *CASES["06.1"][3], *CASES["06.1"][0])
    assert "smallest" in checks.verdict("04.2", "relu1", *CASES["04.2"][0])


def test_02_1_accepts_none_when_no_k_qualifies() -> None:
    assert checks.verdict("02.1", None, {"independent": 1.0, 0: 0.9, 1: 0.8}, [0, 1]) is None


def test_unknown_exercise_is_an_error() -> None:
    with pytest.raises(ValueError, match="no check for exercise '09.9'; known: 00.1"):
        checks.exercise("09.9", 1)
