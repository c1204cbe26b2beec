"""llfc_utils.crosstask: tasks, cached fine-tuning, weighted sums of models and their features, layer-wise paths."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from llfc_utils import cache, config, crosstask, interpolate, metrics, train

CPU = torch.device("cpu")
TINY = config.get("smoke", "mlp").replace(train_subset=512, test_subset=256, epochs=3)


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 3))


def _same(a: nn.Module, b: nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


X = torch.randn(40, 6, generator=torch.Generator().manual_seed(0))


# ---------------------------------------------------------------- weighted sums


def test_combine_with_two_weights_is_the_lerp() -> None:
    a, b = _mlp(0), _mlp(1)
    mixed, lerped = crosstask.combine([a, b], [0.3, 0.7]), interpolate.lerp(a, b, 0.3)
    for k, v in lerped.state_dict().items():
        torch.testing.assert_close(mixed.state_dict()[k], v)


def test_task_arithmetic_is_pretrained_plus_the_task_vectors() -> None:
    pre, a, b = _mlp(0), _mlp(1), _mlp(2)
    lam = 0.8
    got = crosstask.combine([pre, a, b], crosstask.arithmetic_weights(2, lam)).state_dict()
    sp, sa, sb = pre.state_dict(), a.state_dict(), b.state_dict()
    for k in sp:
        torch.testing.assert_close(got[k], sp[k] + lam * ((sa[k] - sp[k]) + (sb[k] - sp[k])))
    assert sum(crosstask.arithmetic_weights(3, 0.4)) == pytest.approx(1.0)


def test_a_zero_task_vector_gives_the_pretrained_model() -> None:
    pre = _mlp(0)
    same = crosstask.combine([pre, pre, pre], crosstask.arithmetic_weights(2, 1.0))
    for k, v in pre.state_dict().items():
        torch.testing.assert_close(same.state_dict()[k], v, rtol=0, atol=1e-6)
    fl = crosstask.feature_linearity([pre, pre, pre], crosstask.arithmetic_weights(2, 1.0), X)
    assert max(fl["cos_dist_per_sample"].values()) < 1e-12


def test_feature_averaging_is_exact_for_a_layer_linear_in_its_weights() -> None:
    """f(x) = W x + b is linear in (W, b): any weighted sum of models gives the same sum of features."""
    models = [nn.Linear(6, 4) for _ in range(3)]
    for weights in ([0.5, 0.5, 0.0], [-1.0, 1.0, 1.0], [2.0, -0.5, 0.3]):
        fl = crosstask.feature_linearity(models, weights, X, layers=[""])
        assert fl["cos_dist_per_sample"][""] < 1e-12 and fl["cos_dist"][""] < 1e-12
        assert fl["scale_c"][""] == pytest.approx(1.0, abs=1e-6)  # float32 features
    deep = [_mlp(s) for s in range(3)]
    fl = crosstask.feature_linearity(deep, [-1.0, 1.0, 1.0], X)
    assert fl["cos_dist_per_sample"]["0"] < 1e-12  # the first layer: exact
    assert fl["cos_dist_per_sample"]["4"] > 1e-6  # the logits: not linear in the weights


def test_feature_linearity_of_two_models_is_llfc() -> None:
    a, b = _mlp(0), _mlp(1)
    fl = crosstask.feature_linearity([a, b], [0.3, 0.7], X, batch_size=16)
    ref = metrics.llfc(a, b, X, [0.3], batch_size=16)
    for l in ref["layers"]:
        assert fl["cos_dist_per_sample"][l] == pytest.approx(ref["cos_dist_per_sample"][l][0])
        assert fl["cos_dist"][l] == pytest.approx(ref["cos_dist"][l][0])
        assert fl["scale_c"][l] == pytest.approx(ref["scale_c"][l][0])


def test_combine_rejects_bad_input() -> None:
    a = _mlp(0)
    with pytest.raises(ValueError, match="one weight per model"):
        crosstask.combine([a, a], [1.0])
    with pytest.raises(ValueError, match="finite"):
        crosstask.combine([a], [float("nan")])
    with pytest.raises(ValueError, match="architecture"):
        crosstask.combine([a, nn.Sequential(nn.Linear(6, 3))], [0.5, 0.5])
    with pytest.raises(ValueError, match="at least one task"):
        crosstask.arithmetic_weights(0, 1.0)


# ---------------------------------------------------------------- layer-wise interpolation


def test_layer_lerp_changes_one_layer_only() -> None:
    a, b = _mlp(0), _mlp(1)
    assert _same(crosstask.layer_lerp(a, b, "2", 1.0), a)
    m = crosstask.layer_lerp(a, b, "2", 0.25)
    sm, sa, sb = m.state_dict(), a.state_dict(), b.state_dict()
    for k in sa:
        want = 0.25 * sa[k] + 0.75 * sb[k] if k.startswith("2.") else sa[k]
        torch.testing.assert_close(sm[k], want)
    with pytest.raises(ValueError, match="unknown layer 'fc9'"):
        crosstask.layer_lerp(a, b, "fc9", 0.5)


def test_layerwise_path_of_a_model_with_itself_is_flat() -> None:
    a = _mlp(0)
    y = torch.randint(0, 3, (len(X),), generator=torch.Generator().manual_seed(1))
    r = crosstask.layerwise_barriers(a, a, {"test": (X, y)}, [0.0, 0.5, 1.0])
    assert r["layers"] == ["0", "2", "4"]
    assert all(abs(v) < 1e-6 for v in r["barrier"].values())
    assert all(abs(v) < 1e-6 for v in r["mid_rise"].values())


def test_layerwise_barrier_matches_the_curve() -> None:
    a, b = _mlp(0), _mlp(1)
    y = torch.randint(0, 3, (len(X),), generator=torch.Generator().manual_seed(1))
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    r = crosstask.layerwise_barriers(a, b, {"test": (X, y)}, alphas, layers=["2"])
    losses = [train.evaluate(crosstask.layer_lerp(a, b, "2", t), X, y)[0] for t in alphas]
    chord = [t * losses[-1] + (1 - t) * losses[0] for t in alphas]
    assert r["barrier"]["2"] == pytest.approx(
        max(v - c for v, c in zip(losses, chord, strict=True))
    )
    assert r["mid_rise"]["2"] == pytest.approx(losses[2] - losses[-1])
    with pytest.raises(ValueError, match="alpha = 0.5"):
        crosstask.layerwise_barriers(a, b, {"test": (X, y)}, [0.0, 1.0])


# ---------------------------------------------------------------- tasks and the config


def test_classes_are_checked_and_keyed_only_when_set() -> None:
    assert "classes" not in TINY.identity()  # old checkpoint keys unchanged
    task = TINY.replace(classes=[3, 1])
    assert task.classes == (3, 1) and task.identity()["classes"] == [3, 1]
    for bad in ([], [1, 1], [10], [-1], ["a"]):
        with pytest.raises(ValueError, match="classes must be None or distinct labels"):
            TINY.replace(classes=bad)
    spec = train._spec(TINY, 0, [[0, 3]], CPU)
    assert cache.key_of(train._spec(task, 0, [[0, 3]], CPU)) != cache.key_of(spec)


@pytest.mark.usefixtures("fashion_mnist")
def test_a_task_keeps_only_its_labels() -> None:
    x, y = train.dataset(TINY, "test", CPU)
    xt, yt = train.dataset(TINY.replace(classes=(0, 5)), "test", CPU)
    keep = (y == 0) | (y == 5)
    assert torch.equal(xt, x[keep]) and torch.equal(yt, y[keep]) and 0 < len(yt) < len(y)


def test_pretraining_runs() -> None:
    assert crosstask.pretraining(TINY, 4, 0) is None
    assert crosstask.pretraining(TINY, 4, 3) == (TINY, [(4, 3)])
    base, segs = crosstask.pretraining(TINY, 4, 1)
    assert base.epochs == 1 and segs == [(4, 1)] and base.replace(epochs=3) == TINY
    with pytest.raises(ValueError, match=r"pretraining epochs must be an int in \[0, 3\]"):
        crosstask.pretraining(TINY, 4, 5)


# ---------------------------------------------------------------- fine-tuning through the cache


@pytest.mark.usefixtures("fashion_mnist")
def test_a_finetuned_run_is_the_manual_loop_from_the_pretrained_weights(count_epochs) -> None:
    task = crosstask.finetune_config(TINY, (0, 1, 2), epochs=2, lr=0.01)
    pre = crosstask.train_pretrained(TINY, 4, 3, CPU)
    manual = train.build_model(TINY, 4)
    manual.load_state_dict(pre.state_dict())
    opt = train.make_optimizer(task, manual)  # a fresh optimiser
    x, y = train.dataset(task, "train", CPU)
    for epoch in range(2):
        train.train_epoch(manual, opt, task, x, y, epoch, 7)
    epochs = count_epochs()
    tuned = crosstask.train_finetuned(task, TINY, 4, 3, data_seed=7, device=CPU)
    assert _same(tuned, manual.eval()) and epochs == [0, 1]  # the pretrained model was cached
    again = crosstask.train_finetuned(task, TINY, 4, 3, data_seed=7, device=CPU)
    assert _same(again, tuned) and epochs == [0, 1]  # loaded, not trained again


@pytest.mark.usefixtures("fashion_mnist")
def test_finetuned_runs_are_keyed_by_their_start(count_epochs) -> None:
    task = crosstask.finetune_config(TINY, (0, 1), epochs=1, lr=0.01)
    specs = {
        k: train.trajectory_specs(task, 4, [(7, 1)], CPU, crosstask.pretraining(TINY, 4, k))
        for k in (0, 1, 3)
    }
    assert len(specs[0]) == 1 and len(specs[1]) == 2 and len(specs[3]) == 2
    assert specs[3][0] == train._spec(TINY, 4, [[4, 3]], CPU)  # the pretrained run's own key
    assert len({cache.key_of(s[-1]) for s in specs.values()}) == 3
    # no pretraining: the same run as training the task from scratch from that initialisation
    epochs = count_epochs()
    scratch, _ = train.train_run(task, 4, [(7, 1)], CPU)
    assert _same(crosstask.train_finetuned(task, TINY, 4, 0, 7, CPU), scratch) and epochs == [0]


def test_a_start_of_another_model_is_refused() -> None:
    other = TINY.replace(model_kwargs={"widths": (8,)})
    with pytest.raises(ValueError, match="same model and data"):
        train.trajectory_specs(TINY, 0, [(0, 3)], CPU, start=(other, [(0, 1)]))
    with pytest.raises(ValueError, match="cover 5 epochs, but it trains 3"):
        train.trajectory_specs(TINY, 0, [(0, 3)], CPU, start=(TINY, [(0, 5)]))


# ---------------------------------------------------------------- the planner sees fine-tuning


@pytest.mark.usefixtures("fashion_mnist")
def test_the_plan_of_a_finetuning_chapter_is_exactly_what_training_caches(
    tmp_path, _isolated_cache, monkeypatch
) -> None:
    """Oracle: plan a chapter that pretrains and fine-tunes, train it, compare keys and epochs."""
    from llfc_utils.tools import plan

    small = TINY.replace(train_subset=256, test_subset=128)
    monkeypatch.setitem(config.PROFILES["smoke"], "mlp", small)
    cell = (
        "from llfc_utils import config, crosstask\n"
        "cfg = config.get(profile, 'mlp')\n"
        "task = crosstask.finetune_config(cfg, (0, 1), 1, 0.01)\n"
        "pre = crosstask.train_pretrained(cfg, seed, cfg.epochs)\n"
        "for k in (0, 1, cfg.epochs):\n"
        "    crosstask.train_finetuned(task, cfg, seed, k, 9)\n"
    )
    nb = {"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    for source, tags in [('profile = "smoke"\nseed = 3\n', ["parameters"]), (cell, [])]:
        nb["cells"].append(
            {"cell_type": "code", "source": source, "metadata": {"tags": tags}, "outputs": []}
        )
    (tmp_path / "09_ft.ipynb").write_text(__import__("json").dumps(nb))
    (p,) = plan.make(["09_ft"], "smoke", {"09_ft": {}}, CPU, folder=tmp_path)
    assert [r.run.pair for r in p.runs] == [
        "from scratch",
        "from scratch",
        "fine-tuned",
        "fine-tuned",
    ]
    assert p.epochs == 3 + 1 + (1 + 1) + 1  # pretraining, scratch, 1-epoch start + tune, tune

    task = crosstask.finetune_config(small, (0, 1), 1, 0.01)
    crosstask.train_pretrained(small, 3, small.epochs, CPU)
    for k in (0, 1, small.epochs):
        crosstask.train_finetuned(task, small, 3, k, 9, CPU)
    planned = {
        cache.key_of(spec)
        for r in p.runs
        for spec in train.trajectory_specs(
            r.run.cfg, r.run.init_seed, list(r.run.segments), CPU, r.run.start
        )
    }
    assert {f.stem for f in _isolated_cache.glob("*.json")} == planned
    (again,) = plan.make(["09_ft"], "smoke", {"09_ft": {}}, CPU, folder=tmp_path)
    assert again.epochs == 0
