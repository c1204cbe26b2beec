"""llfc_utils.beyond against independent oracles: direct formulas, known rotations, hand-run nets."""

from __future__ import annotations

import copy
import math

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from scipy.linalg import subspace_angles  # noqa: E402
from torch import nn  # noqa: E402

from llfc_utils import beyond, config, models, permute, plots, train  # noqa: E402


def _mlp(seed: int, widths=(16, 16, 16), in_features: int = 12) -> nn.Module:
    torch.manual_seed(seed)
    return models.MLP(widths=widths, in_features=in_features).eval()


def _data(n: int = 300, d: int = 12, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def _orthonormal(n: int, seed: int) -> np.ndarray:
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((n, n)))
    return q


# ---------------------------------------------------------------- principal angles


def test_identical_weights_have_zero_angles_on_both_sides() -> None:
    w = np.random.default_rng(0).standard_normal((20, 30))
    for side in beyond.SIDES:
        assert np.allclose(beyond.principal_angles(w, w.copy(), 5, side), 0.0, atol=1e-5)


def test_angles_match_scipy_on_bases_from_an_independent_svd() -> None:
    gen = torch.Generator().manual_seed(1)
    wa = torch.randn(15, 9, generator=gen, dtype=torch.float64)
    wb = wa + 0.5 * torch.randn(15, 9, generator=gen, dtype=torch.float64)
    ua, _, vha = torch.linalg.svd(wa, full_matrices=False)
    ub, _, vhb = torch.linalg.svd(wb, full_matrices=False)
    for side, (ba, bb) in {"left": (ua, ub), "right": (vha.T, vhb.T)}.items():
        want = np.sort(np.rad2deg(subspace_angles(ba[:, :4].numpy(), bb[:, :4].numpy())))[::-1]
        got = beyond.principal_angles(wa, wb, 4, side)
        assert got.shape == (4,) and np.all(np.diff(got) <= 0)  # largest first
        assert np.allclose(got, want, atol=1e-8)
        # the textbook definition: arccos of the singular values of Qa^T Qb
        cos = np.linalg.svd(ba[:, :4].numpy().T @ bb[:, :4].numpy(), compute_uv=False)
        assert np.allclose(
            got, np.sort(np.rad2deg(np.arccos(np.clip(cos, -1, 1))))[::-1], atol=1e-5
        )


@pytest.mark.parametrize("theta", [10.0, 37.0, 90.0])
def test_a_known_rotation_of_one_singular_vector_gives_that_angle(theta: float) -> None:
    """W_B = W_A with its top left singular vector turned by theta towards an unused direction."""
    u, v = _orthonormal(10, 0), _orthonormal(8, 1)
    s = np.array([6.0, 5.0, 4.0, 3.0, 2.0, 1.0])
    wa = u[:, :6] @ np.diag(s) @ v[:, :6].T
    ub = u[:, :6].copy()
    t = math.radians(theta)
    ub[:, 0] = math.cos(t) * u[:, 0] + math.sin(t) * u[:, 8]  # u[:, 8] is outside W_A's range
    wb = ub @ np.diag(s) @ v[:, :6].T
    assert np.allclose(beyond.principal_angles(wa, wb, 3, "left"), [theta, 0, 0], atol=1e-6)
    assert np.allclose(beyond.principal_angles(wa, wb, 3, "right"), 0, atol=1e-6)  # V unchanged


def test_principal_angles_reject_bad_arguments() -> None:
    w = np.ones((4, 6))
    with pytest.raises(ValueError, match="k must lie in"):
        beyond.principal_angles(w, w, 5)
    with pytest.raises(ValueError, match="same shape"):
        beyond.principal_angles(w, np.ones((6, 4)), 2)
    with pytest.raises(ValueError, match="side"):
        beyond.principal_angles(w, w, 2, "up")


def test_random_subspace_angle_against_closed_forms() -> None:
    # random lines in R^2: the angle is uniform on [0, 90] degrees, mean 45
    assert beyond.random_subspace_angle(2, 1, trials=4000) == pytest.approx(45.0, abs=1.5)
    # random lines in R^3: |cos| is uniform on [0, 1] (Archimedes), mean arccos = 1 radian
    assert beyond.random_subspace_angle(3, 1, trials=4000) == pytest.approx(57.2958, abs=1.5)
    assert beyond.random_subspace_angle(5, 5, trials=3) == pytest.approx(0.0, abs=1e-6)
    assert beyond.random_subspace_angle(7, 2, seed=3) == beyond.random_subspace_angle(7, 2, seed=3)


def test_weight_matrix_reads_a_conv_as_out_by_in_k_k() -> None:
    conv = nn.Conv2d(3, 5, 3)
    m = beyond.weight_matrix(conv)
    assert m.shape == (5, 27) and m.dtype == torch.float64
    w = conv.weight.detach()
    assert m[4, 1 * 9 + 2 * 3 + 0].item() == pytest.approx(w[4, 1, 2, 0].item(), rel=1e-7)
    with pytest.raises(TypeError, match="Linear or Conv2d"):
        beyond.weight_matrix(nn.ReLU())


def test_layer_angles_are_the_direct_angles_and_cap_k() -> None:
    a, b = _mlp(0), _mlp(1)
    r = beyond.layer_principal_angles(a, b, k=12)
    assert r["layers"] == ["fc1", "fc2", "fc3", "fc4"]
    assert r["k"] == {"fc1": 12, "fc2": 12, "fc3": 12, "fc4": 10}  # fc4 is (10, 16)
    want = beyond.principal_angles(a.fc2.weight, b.fc2.weight, 12)  # parameters: no .detach()
    assert np.allclose(r["angles"]["fc2"], want)
    assert r["mean"]["fc2"] == pytest.approx(float(want.mean()))
    assert r["random"]["fc4"] == pytest.approx(beyond.random_subspace_angle(10, 10), abs=1e-6)
    same = beyond.layer_principal_angles(a, copy.deepcopy(a), k=3)
    assert all(v < 1e-4 for v in same["mean"].values())


def test_permuting_units_moves_left_subspaces_and_alignment_brings_them_back() -> None:
    a = _mlp(0, widths=(32, 32, 32))
    spec = permute.spec_for(a)
    gen = torch.Generator().manual_seed(5)
    perm = {p: torch.randperm(32, generator=gen) for p in spec.perm_to_axes}
    b = permute.permuted(a, spec, perm)  # the same function, hidden units reordered
    moved = beyond.layer_principal_angles(a, b, k=3)
    assert min(moved["mean"][l] for l in ("fc1", "fc2", "fc3")) > 10.0
    assert moved["mean"]["fc4"] < 1e-4  # the class space is not permuted
    back = beyond.layer_principal_angles(a, permute.align(a, b, "wm"), k=3)
    assert max(back["mean"].values()) < 1e-4


# ---------------------------------------------------------------- model stitching


def test_stitching_a_net_with_itself_reproduces_its_loss_and_accuracy() -> None:
    a = _mlp(0)
    x, y = _data()
    loss, acc = train.evaluate(a, x, y)
    for layer in beyond.weight_layers(a):
        assert beyond.stitch(a, a, layer, x, y, batch_size=64) == (pytest.approx(loss), acc)
        assert beyond.stitch(a, copy.deepcopy(a), layer, x, y)[1] == acc


def test_stitching_at_a_shared_first_layer_reproduces_the_receiver() -> None:
    a, b = _mlp(0), _mlp(1)
    b.fc1.load_state_dict(a.fc1.state_dict())  # identical first layers, different rest
    x, y = _data()
    loss, acc = train.evaluate(a, x, y)
    assert beyond.stitch(a, b, "fc1", x, y) == (pytest.approx(loss), acc)
    assert beyond.stitch(a, b, "fc2", x, y)[0] != pytest.approx(loss)  # later layers differ


def test_stitching_at_a_middle_layer_equals_a_hand_run_forward() -> None:
    a, b = _mlp(0), _mlp(1)
    x, y = _data()
    with torch.no_grad():
        h = b.fc2(torch.relu(b.fc1(x)))  # the donor's fc2 output
        out = a.fc4(torch.relu(a.fc3(torch.relu(h))))  # the receiver's layers after fc2
    loss, acc = beyond.stitch(a, b, "fc2", x, y, batch_size=50)
    assert loss == pytest.approx(F.cross_entropy(out, y).item(), rel=1e-5)
    assert acc == int((out.argmax(1) == y).sum()) / len(y)


def test_stitching_a_batchnorm_cnn_in_eval_mode() -> None:
    torch.manual_seed(0)
    a = models.build("vgg11", width=0.0625, classifier=(8,), dropout=0.0, in_channels=1).eval()
    b = copy.deepcopy(a)
    b.norm1.running_mean += 0.3  # a different net from the first BN on
    x = torch.randn(40, 1, 32, 32)
    y = torch.randint(0, 10, (40,))
    loss_a, acc_a = train.evaluate(a, x, y)
    assert beyond.stitch(a, b, "conv1", x, y, batch_size=16) == (pytest.approx(loss_a), acc_a)
    assert beyond.stitch(a, a, "conv5", x, y) == (pytest.approx(loss_a), acc_a)
    assert not a.training and not b.training


def test_stitching_runs_every_layer_and_checks_its_arguments() -> None:
    a, b = _mlp(0), _mlp(1)
    x, y = _data(100)
    r = beyond.stitching(a, b, x, y)
    assert r["layers"] == ["fc1", "fc2", "fc3", "fc4"]
    for l in r["layers"]:
        assert (r["loss"][l], r["acc"][l]) == beyond.stitch(a, b, l, x, y)
    assert r["acc"]["fc4"] == train.evaluate(b, x, y)[1]  # stitched logits: the donor's answer
    with pytest.raises(ValueError, match="unknown layer"):
        beyond.stitch(a, b, "fc9", x, y)
    with pytest.raises(ValueError, match="as many labels"):
        beyond.stitch(a, b, "fc1", x, y[:5])
    with pytest.raises(ValueError, match="differ in architecture"):
        beyond.stitching(a, _mlp(1, widths=(16, 8, 16)), x, y)


# ---------------------------------------------------------------- the learning-rate study


def test_lr_variants_scale_the_learning_rate_and_add_adam() -> None:
    cfg = config.get("smoke", "mlp")
    v = beyond.lr_variants(cfg, [1.0, 0.25], adam_lr=1e-3)
    assert list(v) == [f"SGD lr {cfg.lr:g}", f"SGD lr {cfg.lr * 0.25:g}", "Adam lr 0.001"]
    assert [c.lr for c in v.values()] == [cfg.lr, cfg.lr * 0.25, 1e-3]
    assert [c.optimizer for c in v.values()] == ["sgd", "sgd", "adam"]
    assert all(c.replace(lr=cfg.lr, optimizer="sgd") == cfg for c in v.values())
    assert list(beyond.lr_variants(cfg, [0.5])) == [f"SGD lr {cfg.lr * 0.5:g}"]
    with pytest.raises(ValueError, match="> 0"):
        beyond.lr_variants(cfg, [0.0])
    with pytest.raises(ValueError, match="at least one"):
        beyond.lr_variants(cfg, [])


def test_llfc_ratio_is_the_worst_hidden_layer() -> None:
    r = {
        "layers": ["fc1", "relu1", "fc2", "fc3"],
        "alphas": [0.25, 0.5],
        "cos_dist_per_sample": {
            "fc1": [0.0, 1e-14],
            "relu1": [9.0, 0.02],
            "fc2": [9.0, 0.03],
            "fc3": [9.0, 5.0],
        },
        "baseline_cos_dist_per_sample": {"fc1": 1e-20, "relu1": 0.1, "fc2": 0.5, "fc3": 1e-3},
    }
    assert beyond.llfc_ratio(r) == pytest.approx(0.2)  # relu1; fc1 and fc3 left out
    assert beyond.llfc_ratio(r, alpha=0.25) == pytest.approx(90.0)
    with pytest.raises(ValueError, match="three layers"):
        beyond.llfc_ratio({**r, "layers": ["fc1", "fc3"]})


def test_rank_correlation_against_scipy_and_by_hand() -> None:
    from scipy.stats import spearmanr

    xs, ys = [0.098, 0.002, 0.0, 0.036], [0.099, 0.032, 0.017, 0.066]
    assert beyond.rank_correlation(xs, ys) == pytest.approx(1.0)
    assert beyond.rank_correlation(xs, ys[::-1]) == pytest.approx(spearmanr(xs, ys[::-1])[0])
    # ties: ranks (1.5, 1.5, 3) against (1, 2, 3): Pearson of the ranks is sqrt(3) / 2
    assert beyond.rank_correlation([0, 0, 1], [1, 2, 3]) == pytest.approx(math.sqrt(3) / 2)
    assert math.isnan(beyond.rank_correlation([0.0, 0.0, 0.0], [1, 2, 3]))
    with pytest.raises(ValueError, match="same length"):
        beyond.rank_correlation([1.0], [1.0])


def test_pair_summary_against_a_hand_made_interpolation() -> None:
    a, b = _mlp(0), _mlp(1)
    x, y = _data()
    alphas = [0.0, 0.25, 0.5, 0.75, 1.0]
    s = beyond.pair_summary(a, b, x, y, alphas)
    sa, sb = a.state_dict(), b.state_dict()
    losses, errs = [], []
    for t in alphas:
        net = _mlp(2)
        net.load_state_dict({k: t * sa[k] + (1 - t) * sb[k] for k in sa})
        with torch.no_grad():
            out = net(x)
        losses.append(F.cross_entropy(out, y).item())
        errs.append(1 - (out.argmax(1) == y).float().mean().item())
    line = lambda v, t: t * v[-1] + (1 - t) * v[0]  # noqa: E731
    assert s["barrier_loss"] == pytest.approx(
        max(v - line(losses, t) for v, t in zip(losses, alphas, strict=True)), abs=1e-5
    )
    assert s["barrier_err"] == pytest.approx(
        max(v - line(errs, t) for v, t in zip(errs, alphas, strict=True)), abs=1e-6
    )
    assert s["acc_a"] == train.evaluate(a, x, y)[1] and s["acc_b"] == train.evaluate(b, x, y)[1]
    assert math.isfinite(s["llfc_ratio"]) and s["llfc_ratio"] > 0
    with pytest.raises(ValueError, match="0, 0.5 and 1"):
        beyond.pair_summary(a, b, x, y, [0.0, 1.0])


# ---------------------------------------------------------------- figures


def _labelled(ax) -> bool:
    return bool(ax.get_xlabel()) and bool(ax.get_ylabel())


def test_figures_draw_every_series_with_labelled_axes() -> None:
    a, b = _mlp(0), _mlp(1)
    x, y = _data(60)
    angles = {
        "p": beyond.layer_principal_angles(a, b, 3),
        "q": beyond.layer_principal_angles(a, a, 3),
    }
    fig = plots.angle_bars(angles, title="t")
    (ax,) = fig.axes
    assert _labelled(ax) and len(ax.patches) == 2 * 4
    st = {"A -> B": beyond.stitching(b, a, x, y)}
    (ax,) = plots.stitching_lines(st, {"A -> B": 0.5}).axes
    assert _labelled(ax) and len(ax.get_lines()) == 3  # the series, its receiver, chance
    curve = {"alpha": [0.0, 1.0], "test_err": [0.1, 0.2]}
    (ax,) = plots.bn_reset_curves({"p": curve}, {"p": curve}).axes
    assert _labelled(ax) and len(ax.get_lines()) == 2
    rows = {
        "SGD": {"barrier_loss": 0.1, "llfc_ratio": 0.05},
        "ADAM": {"barrier_loss": 0.0, "llfc_ratio": 0.01},
    }
    fig = plots.recipe_bars(rows)
    assert len(fig.axes) == 2 and all(_labelled(ax) and len(ax.patches) == 2 for ax in fig.axes)


# ---------------------------------------------------------------- spectra and widths (chapter 3)


def test_effective_rank_of_flat_and_one_hot_spectra() -> None:
    assert beyond.effective_rank([2.0, 2.0, 2.0, 2.0]) == pytest.approx(4.0)
    assert beyond.effective_rank([5.0, 0.0, 0.0]) == pytest.approx(1.0)
    assert beyond.effective_rank([]) == 0.0
    p = np.array([3.0, 1.0]) / 4
    assert beyond.effective_rank([3.0, 1.0]) == pytest.approx(math.exp(-(p * np.log(p)).sum()))


def test_layer_spectra_match_a_full_svd_of_w_and_of_the_stacked_inputs() -> None:
    net = _mlp(0)
    x, _ = _data(90)
    s = beyond.layer_spectra(net, x, batch_size=25)  # batches that do not divide 90
    assert s["layers"] == ["fc1", "fc2", "fc3", "fc4"]
    h = torch.relu(net.fc1(x)).detach().double().numpy()  # fc2 input
    np.testing.assert_allclose(s["h"]["fc2"], np.linalg.svd(h, compute_uv=False), atol=1e-8)
    w = net.fc3.weight.detach().double().numpy()
    np.testing.assert_allclose(s["w"]["fc3"], np.linalg.svd(w, compute_uv=False), atol=1e-10)
    assert (
        s["h_rank"]["fc2"] == pytest.approx(beyond.effective_rank(s["h"]["fc2"]) / 16)
        and 0 < s["w_rank"]["fc3"] <= 1
    )


def test_layer_spectra_read_a_conv_input_with_every_pixel_a_sample() -> None:
    torch.manual_seed(0)
    net = models.build("vgg11", width=0.0625, classifier=(8,), dropout=0.0, image_size=32).eval()
    x = torch.randn(6, 1, 32, 32)
    s = beyond.layer_spectra(net, x, layers=["conv2"])
    with torch.no_grad():
        h = net.relu1(net.norm1(net.conv1(x)))
        h = net.pool1(h)
    rows = h.double().permute(0, 2, 3, 1).reshape(-1, h.shape[1]).numpy()
    np.testing.assert_allclose(s["h"]["conv2"], np.linalg.svd(rows, compute_uv=False), atol=1e-8)


def test_at_width_keeps_the_recipe_and_its_own_width_keeps_the_config() -> None:
    for profile in config.PROFILES:
        for role in ("mlp", "cnn"):
            cfg = config.PROFILES[profile][role]
            own = cfg.model_kwargs.get("widths", (512,))[0] if cfg.model == "mlp" else None
            if own is not None:
                assert config.at_width(cfg, own) == cfg
            for w in config.WIDTHS[profile][role]:
                wide = config.at_width(cfg, w)
                assert wide.replace(model_kwargs=cfg.model_kwargs) == cfg
                train.build_model(config.tiny(wide), 0)  # a valid net
    cnn = config.PROFILES["cpu"]["cnn"]
    assert config.at_width(cnn, 0.125) == cnn
    assert config.at_width(cnn, 0.5).model_kwargs["classifier"] == (256,)
    assert config.at_width(config.PROFILES["cpu"]["mlp"], 32).model_kwargs["widths"] == (32,) * 3


def test_width_figures_draw_every_series() -> None:
    fig = plots.against_width(
        {"barrier": {"wm": {32: [0.5, 0.6], 64: [0.2]}}, "x": {"am": {32: [0.4], 64: [0.1]}}},
        lines={"barrier": 0.1},
        log_y=(True,),
    )
    assert len(fig.axes) == 2 and _labelled(fig.axes[0])
    assert [len(ax.containers) for ax in fig.axes] == [1, 1]  # one error-bar series each
    fig = plots.spectra(
        {"narrow": {"w": [3.0, 1.0], "h": [2.0, 1.0, 0.5]}, "wide": {"w": [1.0], "h": [1.0]}}
    )
    assert len(fig.axes) == 2 and all(len(ax.get_lines()) == 2 for ax in fig.axes)
