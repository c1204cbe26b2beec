"""llfc_utils.train: training lowers the loss, determinism, spawning, schedules, divergence."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from llfc_utils import cache, config, data, train

pytestmark = pytest.mark.usefixtures("fashion_mnist")

CPU = torch.device("cpu")
SMOKE = config.get("smoke", "mlp")
TINY = SMOKE.replace(train_subset=512, test_subset=256, epochs=3)
CURVES = ("train_loss", "train_acc", "test_loss", "test_acc", "lr")  # not "seconds"


def _state(model):
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _same(a, b):
    sa, sb = _state(a), _state(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _manual(cfg, init_seed, data_seeds):
    """Train with the public building blocks only (no cache): epoch e uses data_seeds[e]."""
    model = train.build_model(cfg, init_seed)
    opt = train.make_optimizer(cfg, model)
    x, y = train.dataset(cfg, "train", CPU)
    for epoch, s in enumerate(data_seeds):
        train.train_epoch(model, opt, cfg, x, y, epoch, s)
    return model.eval()


# ---------------------------------------------------------------- training and evaluation


def test_one_epoch_lowers_the_loss():
    cfg = TINY.replace(epochs=1, batch_size=32)
    x, y = train.dataset(cfg, "train", CPU)
    before_loss, before_acc = train.evaluate(train.build_model(cfg, 0), x, y)
    model, history = train.train_model(cfg, 0, CPU)
    after_loss, after_acc = train.evaluate(model, x, y)
    assert before_loss == pytest.approx(math.log(10), abs=0.1)  # an untrained net guesses
    assert after_loss < before_loss - 0.3
    assert after_acc > before_acc + 0.15
    assert len(history["train_loss"]) == 1 and math.isfinite(history["train_loss"][0])
    assert not model.training  # returned in eval mode


def test_dataset_sizes_follow_the_config():
    x, y = train.dataset(TINY, "train", CPU)
    xt, yt = train.dataset(TINY, "test", CPU)
    assert x.shape == (512, 1, 28, 28) and y.shape == (512,)
    assert xt.shape == (256, 1, 28, 28) and yt.shape == (256,)
    assert data.input_shape(TINY.dataset) == (1, 28)
    assert data.input_shape(TINY.dataset, pad32=True) == (1, 32)
    assert data.input_shape("cifar10") == (3, 32)
    xp, _ = train.dataset(TINY.replace(pad32=True), "test", CPU)
    assert xp.shape == (256, 1, 32, 32)


def test_evaluate_matches_a_direct_computation():
    torch.manual_seed(0)
    model = train.build_model(TINY, 0)
    x, y = train.dataset(TINY, "test", CPU)
    model.train()
    loss, acc = train.evaluate(model, x, y, batch_size=37)  # 256 = 6 * 37 + 34: a ragged end
    assert model.training  # mode restored
    with torch.no_grad():
        out = model.eval()(x)
    assert loss == pytest.approx(torch.nn.functional.cross_entropy(out, y).item(), rel=1e-5)
    assert acc == pytest.approx((out.argmax(1) == y).float().mean().item(), abs=1e-9)


@pytest.mark.parametrize("bs", [0, -1])
def test_evaluate_rejects_bad_batch_size(bs):
    model = train.build_model(TINY, 0)
    x, y = torch.zeros(4, 1, 28, 28), torch.zeros(4, dtype=torch.int64)
    with pytest.raises(ValueError, match="batch_size"):
        train.evaluate(model, x, y, batch_size=bs)


def test_train_model_equals_a_manual_loop():
    """train_model (via cache pack/unpack) gives bit for bit what the plain loop gives."""
    model, history = train.train_model(TINY, 0, CPU)
    assert _same(model, _manual(TINY, 0, [0, 0, 0]))
    assert history["lr"] == [train.lr_at(TINY, e) for e in range(3)]
    assert len(history["seconds"]) == 3


def test_same_seed_is_bit_identical(tmp_path, monkeypatch):
    a, ha = train.train_model(TINY, 0, CPU)
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "other_cache"))
    b, hb = train.train_model(TINY, 0, CPU)
    assert any((tmp_path / "other_cache").glob("*.safetensors"))  # really trained again
    assert _same(a, b)
    assert all(ha[k] == hb[k] for k in CURVES)


def test_different_seeds_differ():
    a, ha = train.train_model(TINY, 0, CPU)
    b, hb = train.train_model(TINY, 1, CPU)
    assert not torch.equal(a.fc1.weight, b.fc1.weight)
    assert ha["train_loss"] != hb["train_loss"]


# ---------------------------------------------------------------- spawning


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_spawned_pair(optimizer, tmp_path, monkeypatch):
    cfg = TINY.replace(optimizer=optimizer, lr=0.05 if optimizer == "sgd" else 1e-3)
    k = 2
    a, b, ha, hb = train.train_spawned_pair(cfg, k, seed=0, child_seeds=(1, 2), device=CPU)
    for key in CURVES:
        assert len(ha[key]) == len(hb[key]) == 3
        assert ha[key][:k] == hb[key][:k], key
    assert ha["train_loss"][k] != hb["train_loss"][k]
    assert not _same(a, b)

    # the shared prefix is the first k epochs of the seed-0 run
    _, h0 = train.train_model(cfg, 0, CPU)
    assert ha["train_loss"][:k] == h0["train_loss"][:k]
    assert h0["train_loss"][k] != ha["train_loss"][k]

    # child 1 = the trajectory [(0, k), (1, E - k)], trained afresh in an empty cache
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "fresh"))
    c1, hc1 = train.train_run(cfg, 0, [(0, k), (1, 3 - k)], CPU)
    assert _same(a, c1)
    assert hc1["train_loss"] == ha["train_loss"]
    # ... and = the plain loop with data seeds 0, 0, 1 and one optimiser throughout
    assert _same(a, _manual(cfg, 0, [0, 0, 1]))
    assert _same(b, _manual(cfg, 0, [0, 0, 2]))


def test_spawn_epoch_zero_shares_the_initialisation(monkeypatch):
    cfg = TINY.replace(epochs=1)
    inits = []
    real = train.build_model

    def spy(cfg_, seed):
        model = real(cfg_, seed)
        inits.append(_state(model))
        return model

    monkeypatch.setattr(train, "build_model", spy)
    a, b, _, _ = train.train_spawned_pair(cfg, 0, seed=0, device=CPU)
    spawned, inits[:] = list(inits), []
    c, d, _, _ = train.train_independent_pair(cfg, seeds=(1, 2), device=CPU)
    independent = list(inits)

    def distinct(states):
        out = []
        for s in states:
            if not any(all(torch.equal(s[n], t[n]) for n in s) for t in out):
                out.append(s)
        return out

    assert len(spawned) >= 2 and len(distinct(spawned)) == 1  # one initialisation for both
    assert len(distinct(independent)) == 2
    assert not _same(a, b)  # different data orders
    assert not torch.equal(spawned[0]["fc1.weight"], independent[0]["fc1.weight"])
    assert not _same(a, c) and not _same(b, d)


def test_spawn_at_the_last_epoch_gives_the_parent_twice():
    a, b, ha, hb = train.train_spawned_pair(TINY.replace(epochs=2), 2, seed=0, device=CPU)
    p, hp = train.train_model(TINY.replace(epochs=2), 0, CPU)
    assert _same(a, b) and _same(a, p)
    assert ha["train_loss"] == hp["train_loss"]


@pytest.mark.parametrize("k", [-1, 4])
def test_spawn_epoch_out_of_range(k):
    with pytest.raises(ValueError, match="spawn_epoch"):
        train.train_spawned_pair(TINY, k, device=CPU)


def test_equal_child_seeds_raise():
    with pytest.raises(ValueError, match="different seeds"):
        train.train_spawned_pair(TINY, 1, child_seeds=(3, 3), device=CPU)
    with pytest.raises(ValueError, match="different seeds"):
        train.train_independent_pair(TINY, seeds=(3, 3), device=CPU)


@pytest.mark.parametrize("segments", [[(0, 2)], [(0, 2), (1, 2)], []])
def test_segments_must_cover_the_epochs(segments):
    with pytest.raises(ValueError, match="3"):
        train.train_run(TINY, 0, segments, CPU)


# ---------------------------------------------------------------- schedules


def test_lr_schedules():
    const = TINY.replace(schedule="constant", lr=0.3, epochs=5)
    assert [train.lr_at(const, e) for e in range(5)] == [0.3] * 5

    step = TINY.replace(schedule="step", lr=0.1, epochs=6, milestones=(2, 4))
    expect = [0.1, 0.1, 0.01, 0.01, 0.001, 0.001]
    assert [train.lr_at(step, e) for e in range(6)] == pytest.approx(expect, rel=1e-12)

    cos = TINY.replace(schedule="cosine", lr=0.2, epochs=4)
    got = [train.lr_at(cos, e) for e in range(4)]
    expect = [0.2, 0.1 * (1 + math.sqrt(0.5)), 0.1, 0.1 * (1 - math.sqrt(0.5))]
    assert got == pytest.approx(expect, rel=1e-12)
    assert all(x > y for x, y in itertools.pairwise(got))


def test_warmup_then_cosine():
    """Git Re-Basin's warmup_cosine_decay_schedule, per epoch: linear up, then cosine over the rest."""
    cfg = TINY.replace(schedule="cosine", lr=0.4, epochs=6, warmup_epochs=2)
    got = [train.lr_at(cfg, e) for e in range(6)]
    expect = [0.2, 0.4, 0.4, 0.2 * (1 + math.sqrt(0.5)), 0.2, 0.2 * (1 - math.sqrt(0.5))]
    assert got == pytest.approx(expect, rel=1e-12)
    step = TINY.replace(schedule="step", lr=0.1, epochs=4, milestones=(3,), warmup_epochs=1)
    assert [train.lr_at(step, e) for e in range(4)] == pytest.approx([0.1, 0.1, 0.1, 0.01])
    for bad in (-1, 6, 1.5):
        with pytest.raises(ValueError, match="warmup_epochs must lie in"):
            cfg.replace(warmup_epochs=bad)


def test_train_epoch_uses_the_scheduled_lr():
    cfg = TINY.replace(schedule="step", lr=0.1, epochs=3, milestones=(1,))
    model = train.build_model(cfg, 0)
    opt = train.make_optimizer(cfg, model)
    x, y = train.dataset(cfg, "train", CPU)
    for epoch, lr in enumerate([0.1, 0.01]):
        train.train_epoch(model, opt, cfg, x[:64], y[:64], epoch, 0)
        assert opt.param_groups[0]["lr"] == pytest.approx(lr)


# ---------------------------------------------------------------- divergence


def test_divergence_raises_and_leaves_no_checkpoint():
    cfg = TINY.replace(lr=1e4, epochs=2)
    with pytest.raises(train.TrainingDiverged, match=r"epoch 1\b") as e:
        train.train_model(cfg, 0, CPU)
    assert "nan" in str(e.value).lower() or "inf" in str(e.value).lower()
    spec = train._spec(cfg, 0, [[0, 2]], CPU)
    for p in cache.paths(spec):
        assert not p.exists()
    assert cache.load(spec) is None
    # the same spec at a sane lr trains, so the spec above is the one train_model uses
    ok = cfg.replace(lr=0.05)
    train.train_model(ok, 0, CPU)
    assert all(p.exists() for p in cache.paths(train._spec(ok, 0, [[0, 2]], CPU)))


def test_divergence_in_the_last_step_of_an_epoch_is_training_diverged():
    # One batch per epoch; a huge weight decay makes the single step overflow the weights
    # while the loss computed before it is an ordinary 2.3.
    cfg = TINY.replace(train_subset=128, batch_size=128, epochs=1, lr=1e3, weight_decay=1e38)
    with pytest.raises(train.TrainingDiverged):
        train.train_model(cfg, 0, CPU)


# ---------------------------------------------------------------- precision on the CPU


def test_cpu_bf16_runs_are_bit_identical_and_keyed_apart(tmp_path, monkeypatch):
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: True)  # autocast runs on any CPU
    cfg = TINY.replace(epochs=2)
    assert train.precision(cfg, CPU) == "bf16"
    assert train.precision(cfg.replace(amp="fp32"), CPU) == "fp32"
    a, _ = train.train_model(cfg, 0, CPU)
    monkeypatch.setenv("LLFC_CACHE", str(tmp_path / "other_cache"))
    b, _ = train.train_model(cfg, 0, CPU)
    assert any((tmp_path / "other_cache").glob("*.safetensors"))  # really trained again
    assert _same(a, b)
    assert all(p.dtype == torch.float32 for p in a.parameters())  # float32 master weights
    c, _ = train.train_model(cfg.replace(amp="fp32"), 0, CPU)
    assert not _same(a, c)  # bf16 really changed the arithmetic
    # a bf16 CPU run has its own key; a float32 CPU run keeps the key it had before CPU bf16
    bf16 = train.trajectory_specs(cfg, 0, [(0, 2)], CPU)[0]
    fp32 = train.trajectory_specs(cfg.replace(amp="fp32"), 0, [(0, 2)], CPU)[0]
    fields = {k: v for k, v in cfg.to_dict().items() if k not in config.LATER_FIELDS}
    assert fp32 == {"config": fields, "init_seed": 0, "segments": [[0, 2]], "device_type": "cpu"}
    assert bf16 == {**fp32, "precision": "bf16"}
    assert cache.key_of(bf16) != cache.key_of(fp32)
    monkeypatch.setattr(train, "cpu_has_bf16", lambda: False)  # a CPU without bf16: float32
    assert train.precision(cfg, CPU) == "fp32"
    assert train.trajectory_specs(cfg, 0, [(0, 2)], CPU)[0] == fp32


def test_training_seconds_are_logged_per_epoch_when_asked(tmp_path, monkeypatch):
    log = tmp_path / "train_seconds"
    monkeypatch.setenv("LLFC_TRAIN_LOG", str(log))
    train.train_model(TINY, 0, CPU)
    seconds = [float(s) for s in log.read_text().split()]
    assert len(seconds) == TINY.epochs and all(s > 0 for s in seconds)
    train.train_model(TINY, 0, CPU)  # from the cache: nothing trained, nothing logged
    assert len(log.read_text().split()) == TINY.epochs
