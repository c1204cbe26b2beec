"""permute: permuted nets are the same function; matching recovers hidden permutations; brute force."""

from __future__ import annotations

import copy
import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment
from torch import nn

from llfc_utils import features, models, permute

CONFIGS = [
    ("mlp", {"widths": (16, 12, 8)}, (1, 28, 28)),
    ("vgg11", {"width": 0.0625, "norm": "bn", "classifier": (8, 8)}, (3, 32, 32)),
    ("vgg11", {"width": 0.0625, "norm": "ln", "classifier": (8,)}, (3, 32, 32)),
    ("vgg11", {"width": 0.0625, "norm": "none", "classifier": (8,)}, (3, 32, 32)),
    # the authors' VGG: conv biases beside BN
    ("vgg11", {"width": 0.0625, "norm": "bn", "classifier": (8,), "init": "authors"}, (3, 32, 32)),
    ("resnet20", {"width": 0.5, "norm": "bn"}, (3, 32, 32)),
    ("resnet20", {"width": 0.5, "norm": "ln"}, (3, 32, 32)),
]


def _net(name: str, kw: dict, shape: tuple, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    net = models.build(name, in_channels=shape[0], image_size=shape[1], **kw)
    # non-trivial biases and BN statistics, so that permuting them matters
    for m in net.modules():
        if isinstance(m, nn.Conv2d) and m.bias is not None:
            with torch.no_grad():
                m.bias.uniform_(-0.1, 0.1)  # zero at initialisation
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 0)  # shifts activations up: no dead units
            m.running_var.uniform_(0.5, 2)
    return net.eval()


def _random_perm(spec: permute.PermSpec, state: dict, seed: int) -> permute.Perm:
    gen = torch.Generator().manual_seed(seed)
    return {
        p: torch.randperm(len(i), generator=gen) for p, i in permute.identity(spec, state).items()
    }


@pytest.mark.parametrize("name,kw,shape", CONFIGS)
def test_permuted_net_is_the_same_function(name: str, kw: dict, shape: tuple) -> None:
    net = _net(name, kw, shape).double()
    spec = permute.spec_for(net)
    permute.check_spec(spec, net.state_dict())
    perm = _random_perm(spec, net.state_dict(), 1)
    other = permute.permuted(net, spec, perm)
    x = torch.randn(6, *shape, dtype=torch.float64)
    assert torch.allclose(net(x), other(x), atol=1e-10)
    # and it really moved something: some weights differ
    assert any(
        not torch.equal(a, b)
        for a, b in zip(net.state_dict().values(), other.state_dict().values(), strict=True)
    )


@pytest.mark.parametrize("name,kw,shape", CONFIGS)
def test_weight_matching_recovers_a_hidden_permutation(name: str, kw: dict, shape: tuple) -> None:
    net = _net(name, kw, shape)
    spec = permute.spec_for(net)
    shuffled = permute.permuted(net, spec, _random_perm(spec, net.state_dict(), 2))
    back = permute.align(net, shuffled, "wm")
    for k, v in net.state_dict().items():
        assert torch.equal(v, back.state_dict()[k]), k


@pytest.mark.parametrize("name,kw,shape", [CONFIGS[0], CONFIGS[1], CONFIGS[4]])
def test_activation_matching_recovers_a_hidden_permutation(
    name: str, kw: dict, shape: tuple
) -> None:
    net = _net(name, kw, shape)
    spec = permute.spec_for(net)
    hidden = _random_perm(spec, net.state_dict(), 3)
    shuffled = permute.permuted(net, spec, hidden)
    x = torch.randn(64, *shape)
    found = permute.activation_matching(spec, net, shuffled, x)
    sites = [s for ss in spec.acts.values() for s in ss]
    with features.capture(net, sites) as acts:
        net(x)
    for p, ss in spec.acts.items():
        # units that never fire are indistinguishable by their activations: only live ones count
        live = sum(permute._samples(acts[s]).abs().amax(0) for s in ss) > 0
        assert live.float().mean() > 0.2, p
        recovered = hidden[p][found[p]]  # the composition is the identity where matched
        assert torch.equal(recovered[live], torch.arange(len(live))[live]), p


def _objective(spec: permute.PermSpec, a: dict, b: dict, perm: permute.Perm) -> float:
    pb = permute.apply(spec, perm, b)
    return sum(
        float((a[k].double() * pb[k].double()).sum())
        for k in spec.axes
        if k in a and a[k].is_floating_point()
    )


def test_weight_matching_equals_brute_force_on_a_tiny_layer() -> None:
    torch.manual_seed(0)
    a, b = models.MLP(widths=(5,), in_features=7), models.MLP(widths=(5,), in_features=7)
    spec = permute.spec_for(a)
    sa, sb = a.state_dict(), b.state_dict()
    perm = permute.weight_matching(spec, sa, sb)
    best = max(
        _objective(spec, sa, sb, {"P_fc1": torch.tensor(p)})
        for p in itertools.permutations(range(5))
    )
    assert _objective(spec, sa, sb, perm) == pytest.approx(best, rel=1e-12)


def test_weight_matching_two_layers_is_no_worse_than_identity_and_near_brute_force() -> None:
    torch.manual_seed(1)
    a, b = models.MLP(widths=(4, 4), in_features=6), models.MLP(widths=(4, 4), in_features=6)
    spec = permute.spec_for(a)
    sa, sb = a.state_dict(), b.state_dict()
    perm = permute.weight_matching(spec, sa, sb)
    ident = permute.identity(spec, sa)
    found = _objective(spec, sa, sb, perm)
    best = max(
        _objective(spec, sa, sb, {"P_fc1": torch.tensor(p), "P_fc2": torch.tensor(q)})
        for p in itertools.permutations(range(4))
        for q in itertools.permutations(range(4))
    )
    assert found >= _objective(spec, sa, sb, ident) - 1e-12
    assert found <= best + 1e-9
    # coordinate descent ends in a fixed point: no single permutation can improve alone
    for p in ("P_fc1", "P_fc2"):
        for cand in itertools.permutations(range(4)):
            trial = {**perm, p: torch.tensor(cand)}
            assert _objective(spec, sa, sb, trial) <= found + 1e-9


def test_clear_errors() -> None:
    a = models.build("mlp")
    with pytest.raises(ValueError, match="unknown method"):
        permute.align(a, copy.deepcopy(a), "xx")
    with pytest.raises(ValueError, match="needs data"):
        permute.align(a, copy.deepcopy(a), "am")
    pad = models.build("resnet20", in_channels=3, image_size=32, shortcut="pad")
    with pytest.raises(ValueError, match="shortcut='conv'"):
        permute.spec_for(pad)
    with pytest.raises(ValueError, match="fc2.weight"):
        permute.align(a, models.build("mlp", widths=(512, 256, 512)), "wm")


def _plain_weight_matching(spec: permute.PermSpec, sa: dict, sb: dict, seed: int = 0) -> dict:
    """The straightforward weight matching: float64, every similarity rebuilt, nothing skipped."""
    stats = ("running_mean", "running_var")
    a = {k: v.double() for k, v in sa.items() if v.is_floating_point() and not k.endswith(stats)}
    b = {k: v.double() for k, v in sb.items() if k in a}
    perm = permute.identity(spec, sa)
    names = sorted(spec.perm_to_axes)
    for sweep in range(100):
        improved = False
        for i in np.random.default_rng([seed, sweep]).permutation(len(names)):
            p = names[i]
            n = len(perm[p])
            sim = torch.zeros(n, n, dtype=torch.float64)
            for k, axis in spec.perm_to_axes[p]:
                if k not in a:
                    continue
                wb = b[k]
                for ax, q in enumerate(spec.axes[k]):
                    if q is not None and ax != axis:
                        wb = wb.index_select(ax, perm[q])
                sim += a[k].movedim(axis, 0).reshape(n, -1) @ wb.movedim(axis, 0).reshape(n, -1).T
            rows, cols = linear_sum_assignment(sim.numpy(), maximize=True)
            new = torch.from_numpy(cols)
            if sim[torch.arange(n), new].sum() > sim[torch.arange(n), perm[p]].sum() * (1 + 1e-12):
                perm[p], improved = new, True
        if not improved:
            return perm
    return perm


@pytest.mark.parametrize("name,kw,shape", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_fast_weight_matching_equals_the_plain_one(
    name: str, kw: dict, shape: tuple, seed: int
) -> None:
    # two independent nets: many sweeps, partial moves (the incremental updates), skips
    a, b = _net(name, kw, shape, seed=10 + seed), _net(name, kw, shape, seed=20 + seed)
    spec = permute.spec_for(a)
    sa, sb = a.state_dict(), b.state_dict()
    stats: dict = {}
    fast = permute.weight_matching(spec, sa, sb, seed=seed, stats=stats)
    plain = _plain_weight_matching(spec, sa, sb, seed=seed)
    assert _objective(spec, sa, sb, fast) == pytest.approx(
        _objective(spec, sa, sb, plain), rel=1e-6
    )
    assert all(torch.equal(fast[p], plain[p]) for p in plain)
    assert stats["sweeps"] >= 2 and stats["solved"] + stats["skipped"] == stats["sweeps"] * len(
        plain
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_sparse_assignment_finds_the_dense_optimum(seed: int, monkeypatch) -> None:
    # the wide layers' assignment: the best permutation among each row's candidates (64 of 300)
    monkeypatch.setattr(permute, "SPARSE_LAP_CANDIDATES", 64)
    gen = np.random.default_rng(seed)
    n = 300
    sim = gen.standard_normal((n, 40)) @ gen.standard_normal((40, n)) + 0.5 * np.eye(n)[::-1]
    current = gen.permutation(n)
    dense = permute._assignment(sim)
    sparse = permute._sparse_assignment(sim, current)
    assert np.array_equal(np.sort(sparse), np.arange(n))
    assert sim[np.arange(n), sparse].sum() == pytest.approx(
        sim[np.arange(n), dense].sum(), rel=1e-12
    )


def test_sparse_assignment_keeps_the_current_permutation_feasible(monkeypatch) -> None:
    monkeypatch.setattr(permute, "SPARSE_LAP_CANDIDATES", 1)  # one candidate: the current one
    gen = np.random.default_rng(0)
    sim, current = gen.standard_normal((50, 50)), gen.permutation(50)
    assert np.array_equal(permute._sparse_assignment(sim, current), current)
