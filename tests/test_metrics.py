"""interpolate, features and metrics against independent oracles (direct formulas, float64)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from llfc_utils import features, interpolate, metrics, models


def _pair(name: str = "mlp", **kw) -> tuple[nn.Module, nn.Module]:
    """Two differently initialised nets; an MLP with `in_features` is built directly."""
    make = (lambda: models.MLP(**kw)) if "in_features" in kw else (lambda: models.build(name, **kw))
    torch.manual_seed(0)
    a = make().eval()
    torch.manual_seed(1)
    b = make().eval()
    return a, b


def _batches(x: torch.Tensor, gen: torch.Generator) -> list[torch.Tensor]:
    """x split at random cut points into batches of random sizes."""
    cuts = sorted(torch.randperm(len(x) - 1, generator=gen)[:5].add(1).tolist())
    return list(torch.tensor_split(x, cuts))


# ---------------------------------------------------------------- streaming vs direct


def test_cosine_stream_equals_direct_formula() -> None:
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(97, 13, generator=gen, dtype=torch.float64)
    b = 0.7 * a + 0.3 * torch.randn(97, 13, generator=gen, dtype=torch.float64)
    acc = metrics.Cosine()
    cuts = sorted(torch.randperm(96, generator=gen)[:6].add(1).tolist())
    for pa, pb in zip(torch.tensor_split(a, cuts), torch.tensor_split(b, cuts), strict=True):
        acc.update(pa, pb)
    ab, aa, bb = ((a * b).sum().item(), (a * a).sum().item(), (b * b).sum().item())
    assert acc.block == pytest.approx(1 - abs(ab) / math.sqrt(aa * bb), abs=1e-10)
    assert acc.block == pytest.approx(metrics.cosine_dissimilarity(a, b), abs=1e-10)
    per = 1 - ((a * b).sum(1).abs() / (a.norm(dim=1) * b.norm(dim=1)))
    assert acc.per_sample == pytest.approx(per.mean().item(), abs=1e-10)
    assert acc.scale == pytest.approx(ab / bb, rel=1e-10)
    assert acc.rel_sq_dist == pytest.approx(
        ((a - b) ** 2).sum().item() / math.sqrt(aa * bb), rel=1e-10
    )


def test_cosine_row_blocks_and_distance_flag_change_nothing_else(monkeypatch) -> None:
    """Tiny row blocks give the same sums; distance=False only drops rel_sq_dist."""
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randn(23, 40, generator=gen), torch.randn(23, 40, generator=gen)
    whole, plain = metrics.Cosine(), metrics.Cosine(distance=False)
    whole.update(a, b)
    monkeypatch.setattr(metrics, "ROW_BLOCK", 7)  # blocks of one row
    blocked = metrics.Cosine()
    blocked.update(a, b)
    plain.update(a, b)
    for key in ("block", "per_sample", "per_sample_std", "scale", "rel_sq_dist"):
        assert getattr(blocked, key) == pytest.approx(getattr(whole, key), rel=1e-12)
        if key != "rel_sq_dist":
            assert getattr(plain, key) == pytest.approx(getattr(whole, key), rel=1e-12)
    assert math.isnan(plain.rel_sq_dist) and whole.rel_sq_dist > 0


def test_cosine_scale_recovers_a_known_factor() -> None:
    b = torch.rand(10, 5, dtype=torch.float64)
    acc = metrics.Cosine()
    acc.update(2.5 * b, b)
    assert acc.scale == pytest.approx(2.5, rel=1e-12)
    assert acc.block == pytest.approx(0.0, abs=1e-12)


def test_llfc_stream_equals_direct_on_all_data() -> None:
    a, b = _pair("mlp", widths=(16, 8), in_features=12)
    x = torch.randn(53, 12, generator=torch.Generator().manual_seed(3))
    alphas = [0.0, 0.3, 1.0]
    res = metrics.llfc(a, b, x, alphas, batch_size=7, progress=False)
    assert res["layers"] == ["fc1", "relu1", "fc2", "relu2", "fc3"]
    ad, bd = copy.deepcopy(a).double(), copy.deepcopy(b).double()
    for alpha_i, alpha in enumerate(alphas):
        md = interpolate.lerp(ad, bd, alpha)
        # direct formula on all data at once, in float64 (llfc ran the nets in float32)
        f = {}
        for key, net in (("a", ad), ("b", bd), ("m", md)):
            with features.capture(net, res["layers"]) as store:
                net(x.double())
            f[key] = dict(store)
        for l in res["layers"]:
            f_int = alpha * f["a"][l] + (1 - alpha) * f["b"][l]
            direct = metrics.cosine_dissimilarity(f_int, f["m"][l])
            assert res["cos_dist"][l][alpha_i] == pytest.approx(direct, abs=1e-6)
            c = float((f_int * f["m"][l]).sum() / (f["m"][l] ** 2).sum())
            assert res["scale_c"][l][alpha_i] == pytest.approx(c, rel=1e-5)
    # at the endpoints the interpolated net is A or B exactly
    for l in res["layers"]:
        assert res["cos_dist"][l][0] == pytest.approx(0.0, abs=1e-12)
        assert res["cos_dist"][l][2] == pytest.approx(0.0, abs=1e-12)
    # the baseline compares A and B, two different random nets: clearly non-zero
    assert res["baseline_cos_dist"]["fc2"] > 1e-3


def test_first_layer_is_exactly_linear_in_the_weights() -> None:
    a, b = _pair("mlp", widths=(16, 8), in_features=12)
    x = torch.randn(40, 12, dtype=torch.float64)
    res = metrics.llfc(a.double(), b.double(), x, [0.5, 1.0], progress=False)
    assert res["cos_dist"]["fc1"][0] < 1e-12
    assert res["scale_c"]["fc1"][0] == pytest.approx(1.0, abs=1e-10)


def test_weak_additivity_zero_where_signs_agree_and_positive_otherwise() -> None:
    lin = nn.Sequential(nn.Linear(6, 20), nn.ReLU(), nn.Linear(20, 3))
    twin = nn.Sequential(nn.Linear(6, 20), nn.ReLU(), nn.Linear(20, 3))
    x = torch.randn(30, 6)
    with torch.no_grad():  # twin = 2 * lin in the first layer: same signs, different values
        twin[0].weight.copy_(2 * lin[0].weight)
        twin[0].bias.copy_(2 * lin[0].bias)
        twin[2].load_state_dict(lin[2].state_dict())
    same = metrics.weak_additivity(lin, twin, x, alphas=[0.3, 0.5], progress=False)
    assert same["layers"] == ["1"]
    assert same["sign_disagreement"]["1"] == 0.0
    assert same["cos_dist"]["1"] == [0.0, 0.0]
    assert same["rel_sq_dist"]["1"] == [0.0, 0.0]
    with torch.no_grad():  # flip the signs of the second net's pre-activations
        twin[0].weight.neg_()
        twin[0].bias.neg_()
    flipped = metrics.weak_additivity(lin, twin, x, alphas=[0.5], progress=False)
    assert flipped["sign_disagreement"]["1"] > 0.9
    assert flipped["rel_sq_dist"]["1"][0] > 0.1


def test_weak_additivity_against_direct_formula() -> None:
    a, b = _pair("mlp", widths=(16, 8), in_features=12)
    x = torch.randn(45, 12)
    res = metrics.weak_additivity(a, b, x, alphas=[0.25, 0.5], batch_size=8, progress=False)
    with (
        features.capture(a, ["relu2"], inputs=True) as fa,
        features.capture(b, ["relu2"], inputs=True) as fb,
    ):
        a(x), b(x)
        ha, hb = fa["relu2"].double(), fb["relu2"].double()
    for i, alpha in enumerate([0.25, 0.5]):
        mixed = torch.relu(alpha * ha + (1 - alpha) * hb)
        sep = alpha * torch.relu(ha) + (1 - alpha) * torch.relu(hb)
        assert res["cos_dist"]["relu2"][i] == pytest.approx(
            metrics.cosine_dissimilarity(mixed, sep), abs=1e-10
        )
    assert res["sign_disagreement"]["relu2"] == pytest.approx(
        ((ha > 0) != (hb > 0)).double().mean().item()
    )


# ---------------------------------------------------------------- interpolate


@pytest.mark.parametrize(
    "name,kw",
    [
        ("mlp", {}),
        ("vgg11", {"width": 0.125, "classifier": (8,), "in_channels": 3, "image_size": 32}),
    ],
)
def test_lerp_endpoints_are_exact(name: str, kw: dict) -> None:
    a, b = _pair(name, **kw)
    for alpha, ref in ((1.0, a), (0.0, b)):
        m = interpolate.lerp(a, b, alpha)
        for (k, v), r in zip(m.state_dict().items(), ref.state_dict().values(), strict=True):
            assert torch.equal(v, r), k
    mid = interpolate.lerp(a, b, 0.25)
    k = "fc1.weight"
    assert torch.allclose(mid.state_dict()[k], 0.25 * a.state_dict()[k] + 0.75 * b.state_dict()[k])


def test_lerp_rejects_bad_alpha_and_mismatched_models() -> None:
    a, b = _pair("mlp")
    with pytest.raises(ValueError, match="outside"):
        interpolate.lerp(a, b, 1.5)
    interpolate.lerp(a, b, 1.5, extrapolate=True)
    c = models.build("mlp", widths=(512, 256, 512))
    with pytest.raises(ValueError, match=r"fc2.weight.*\(512, 512\).*\(256, 512\)"):
        interpolate.lerp(a, c, 0.5)
    with pytest.raises(ValueError, match="at least 2 distinct"):
        interpolate.check_alphas([0.5])
    with pytest.raises(ValueError, match="at least 2 distinct"):
        interpolate.check_alphas([0.5, 0.5])
    with pytest.raises(ValueError, match="at least 1 distinct"):
        metrics.llfc(a, b, torch.randn(4, 1, 28, 28), [])
    with pytest.raises(ValueError, match="outside"):
        metrics.llfc(a, b, torch.randn(4, 1, 28, 28), [-0.1])


def test_barrier_of_linear_curve_is_zero_and_of_a_bump_is_its_height() -> None:
    alphas = [i / 10 for i in range(11)]
    lin = {"alpha": alphas, "test_loss": [2.0 - a for a in alphas]}
    assert interpolate.barrier(lin) == pytest.approx(0.0, abs=1e-12)
    bump = {"alpha": alphas, "test_loss": [1.0 + 4 * a * (1 - a) for a in alphas]}
    assert interpolate.barrier(bump) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="alpha = 0 and alpha = 1"):
        interpolate.barrier({"alpha": [0.2, 0.5], "test_loss": [1, 2]})


def test_lmc_curve_endpoints_match_evaluate() -> None:
    from llfc_utils.train import evaluate

    a, b = _pair("mlp", widths=(16,), in_features=12)
    x, y = torch.randn(64, 12), torch.randint(0, 10, (64,))
    curve = interpolate.lmc_curve(a, b, {"test": (x, y)}, [0.0, 0.5, 1.0], progress=False)
    assert curve["test_loss"][0] == pytest.approx(evaluate(b, x, y)[0])
    assert curve["test_loss"][2] == pytest.approx(evaluate(a, x, y)[0])
    assert curve["test_err"][1] == pytest.approx(1 - curve["test_acc"][1])


def test_reset_bn_matches_batch_statistics() -> None:
    torch.manual_seed(0)
    net = models.build("vgg11", in_channels=3, image_size=32, width=0.125, classifier=(8,))
    x = torch.randn(64, 3, 32, 32)
    interpolate.reset_bn(net, x, batch_size=64)
    h = net.conv1(x)
    assert torch.allclose(net.norm1.running_mean, h.mean((0, 2, 3)), atol=1e-5)
    assert torch.allclose(net.norm1.running_var, h.var((0, 2, 3)), atol=1e-4)
    assert not net.training


# ---------------------------------------------------------------- features


@pytest.mark.parametrize(
    "name,kw,expect",
    [
        ("mlp", {}, ["fc1", "relu1", "fc2", "relu2", "fc3", "relu3", "fc4"]),
        ("vgg11", {"width": 0.125, "classifier": (8,), "in_channels": 3, "image_size": 32}, None),
        ("resnet20", {"width": 0.5, "in_channels": 3, "image_size": 32}, None),
    ],
)
def test_hooked_features_equal_a_manual_forward(name: str, kw: dict, expect) -> None:
    torch.manual_seed(0)
    net = models.build(name, **kw).eval()
    names = features.layers(net)
    if expect:
        assert names == expect
    x = torch.randn(5, *((1, 28, 28) if name == "mlp" else (3, 32, 32)))
    got = next(features.iter_features([net], x, names, batch_size=5))[0]
    # manual forward, independent of the hooks
    if name == "resnet20":
        h = net.relu1(net.norm1(net.conv1(x)))
        manual = {"conv1": net.conv1(x), "relu1": h}
        for s in (1, 2, 3):
            for bi in range(3):
                blk = getattr(net, f"stage{s}")[bi]
                inner = blk.relu1(blk.norm1(blk.conv1(h)))
                h = blk(h)
                manual[f"stage{s}.block{bi}.relu1"] = inner
                manual[f"stage{s}.block{bi}.relu2"] = h
        manual["fc"] = net(x)
    else:
        manual, h = {}, x
        for n, m in net.named_children():
            h = m(h)
            manual[n] = h
    assert set(got) == set(names)
    for n in names:
        assert torch.allclose(got[n], manual[n].reshape(5, -1), atol=1e-6), n
    # the hooks are gone afterwards
    assert all(not m._forward_hooks for m in net.modules())


def test_capture_rejects_unknown_layers() -> None:
    net = models.build("mlp")
    with pytest.raises(ValueError, match="unknown layer"):
        with features.capture(net, ["fc9"]):
            pass


# ---------------------------------------------------------------- commutativity


def test_commutativity_equals_explicit_im2col_formula() -> None:
    torch.manual_seed(0)
    a = nn.Sequential(
        nn.Conv2d(2, 3, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(3 * 5 * 5, 4)
    )
    b = copy.deepcopy(a)
    for p in b.parameters():
        p.data.add_(0.3 * torch.randn_like(p))
    x = torch.randn(11, 2, 5, 5)
    res = metrics.commutativity(a, b, x, batch_size=4, progress=False)
    assert res["layers"] == ["0", "3"]
    # conv layer "0": W as (C_out, C_in k k), H as unfolded patches, all data at once
    wa, wb = (m[0].weight.detach().double().reshape(3, -1) for m in (a, b))
    h = torch.nn.functional.unfold(
        x.double(), 3, padding=1
    )  # (N, C_in k k, L), same input for both
    ha = hb = h.permute(1, 0, 2).reshape(h.shape[1], -1)
    com = (wa @ ha + wb @ hb - wa @ hb - wb @ ha).norm() / ((wa @ ha).norm() + (wb @ hb).norm())
    assert res["com"]["0"] == pytest.approx(float(com), abs=1e-12)  # identical inputs: exactly 0
    assert res["com"]["0"] == 0.0 and res["dist_h"]["0"] == 0.0
    # linear layer "3": its inputs differ between the nets
    with torch.no_grad():
        ha = a[2](a[1](a[0](x))).double().T
        hb = b[2](b[1](b[0](x))).double().T
    wa, wb = a[3].weight.detach().double(), b[3].weight.detach().double()
    com = (wa @ ha + wb @ hb - wa @ hb - wb @ ha).norm() / ((wa @ ha).norm() + (wb @ hb).norm())
    assert res["com"]["3"] == pytest.approx(float(com), rel=1e-6)
    assert res["dist_w"]["3"] == pytest.approx(
        float((wa - wb).norm() / (wa.norm() + wb.norm())), rel=1e-12
    )
    assert res["dist_h"]["3"] == pytest.approx(
        float((ha - hb).norm() / (ha.norm() + hb.norm())), rel=1e-6
    )


def test_theorem1_one_step_identity_holds_exactly() -> None:
    """W_a H_a = a W_A H_A + (1-a) W_B H_B - a (1-a) (W_A - W_B)(H_A - H_B) for linear H_a, W_a."""
    gen = torch.Generator().manual_seed(0)
    for alpha in (0.0, 0.3, 0.5, 0.9, 1.0):
        wa, wb = (torch.randn(5, 7, generator=gen, dtype=torch.float64) for _ in range(2))
        ha, hb = (torch.randn(7, 11, generator=gen, dtype=torch.float64) for _ in range(2))
        w_mid, h_mid = alpha * wa + (1 - alpha) * wb, alpha * ha + (1 - alpha) * hb
        rhs = alpha * wa @ ha + (1 - alpha) * wb @ hb - alpha * (1 - alpha) * (wa - wb) @ (ha - hb)
        assert torch.allclose(w_mid @ h_mid, rhs, atol=1e-10, rtol=0)


def test_theorem1_on_nets_matches_direct_formula_and_identity() -> None:
    """metrics.theorem1 against the formula on all data; defect == predicted on the data layer."""
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 5), nn.ReLU(), nn.Linear(5, 3))
    a = a.double()
    b = copy.deepcopy(a)
    for p in b.parameters():
        p.data.add_(0.5 * torch.randn_like(p))
    x = torch.randn(37, 6, dtype=torch.float64)
    alpha = 0.3
    res = metrics.theorem1(a, b, x, alpha=alpha, batch_size=10, progress=False)
    assert res["layers"] == ["0", "2", "4"]
    # layer "0": its input is the data, the same for all three nets, so defect == predicted
    assert res["input_gap"]["0"] < 1e-12 and res["carried"]["0"] < 1e-12 * res["scale"]["0"]
    assert res["defect"]["0"] == pytest.approx(res["predicted"]["0"], rel=1e-10)
    assert res["defect"]["0"] > 0  # the weights differ, so there is a defect to predict
    # layer "2": direct formula with the explicit interpolated net, all data at once
    mid = interpolate.lerp(a, b, alpha)
    with torch.no_grad():
        ha, hb, ht = (m[1](m[0](x)).T for m in (a, b, mid))
    wa, wb, wt = (m[2].weight.detach() for m in (a, b, mid))
    mixed = alpha * wa @ ha + (1 - alpha) * wb @ hb
    h_lin = alpha * ha + (1 - alpha) * hb
    assert res["defect"]["2"] == pytest.approx(float((wt @ ht - mixed).norm()), rel=1e-10)
    assert res["predicted"]["2"] == pytest.approx(
        alpha * (1 - alpha) * float(((wa - wb) @ (ha - hb)).norm()), rel=1e-10
    )
    assert res["carried"]["2"] == pytest.approx(float((wt @ (ht - h_lin)).norm()), rel=1e-10)
    assert res["input_gap"]["2"] > 0  # the ReLU made the input of layer 2 non-linear
    # the identity: defect vector = carried vector - predicted vector, so the triangle inequality
    for l in res["layers"]:
        assert res["defect"][l] <= res["carried"][l] + res["predicted"][l] + 1e-9
        assert res["defect"][l] >= abs(res["carried"][l] - res["predicted"][l]) - 1e-9


def test_logit_mix_error_never_exceeds_the_sum_of_the_errors() -> None:
    gen = torch.Generator().manual_seed(0)
    alphas = [0.0, 0.2, 0.5, 0.8, 1.0]
    for _ in range(20):
        w = torch.randn(2, 6, 4, generator=gen)
        a, b = nn.Linear(4, 6, bias=False), nn.Linear(4, 6, bias=False)
        a.weight.data, b.weight.data = w[0], w[1]
        x = torch.randn(50, 4, generator=gen)
        y = torch.randint(0, 6, (50,), generator=gen)
        err = interpolate.logit_mix_error(a, b, x, y, alphas, batch_size=7)
        err_a = float((a(x).argmax(1) != y).float().mean())
        err_b = float((b(x).argmax(1) != y).float().mean())
        assert err[0] == pytest.approx(err_b) and err[-1] == pytest.approx(err_a)
        assert max(err) <= err_a + err_b + 1e-12
    curve = {"alpha": alphas, "test_err": [0.1, 0.3, 0.5, 0.2, 0.12]}
    lem = interpolate.lemma1(curve, [0.1, 0.11, 0.13, 0.12, 0.12])
    assert lem == {"max_err_interp": 0.5, "max_err_logit_interp": 0.13, "bound": 0.24}
    with pytest.raises(ValueError, match="one logit-mix error per alpha"):
        interpolate.lemma1(curve, [0.1])


def test_llfc_with_bn_reset_measures_the_reset_interpolated_net() -> None:
    torch.manual_seed(0)
    a, b = (
        models.build("vgg11", width=0.0625, classifier=(8,), dropout=0.0, image_size=32).eval()
        for _ in range(2)
    )
    x, x_reset = torch.randn(20, 1, 32, 32), torch.randn(40, 1, 32, 32)
    res = metrics.llfc(a, b, x, [0.5], layers=["relu3"], batch_size=7, bn_reset=x_reset)
    net = interpolate.reset_bn(interpolate.lerp(a, b, 0.5), x_reset)
    with torch.no_grad():
        f = {}
        for name, m in (("a", a), ("b", b), ("mid", net)):
            with features.capture(m, ["relu3"]) as st:
                m(x)
            f[name] = st["relu3"].flatten(1).double()
    mix = 0.5 * f["a"] + 0.5 * f["b"]
    cos = (mix * f["mid"]).sum(1).abs() / (mix.norm(dim=1) * f["mid"].norm(dim=1))
    assert res["cos_dist_per_sample"]["relu3"][0] == pytest.approx(
        (1 - cos).mean().item(), abs=1e-9
    )
    plain = metrics.llfc(a, b, x, [0.5], layers=["relu3"])
    assert plain["cos_dist_per_sample"]["relu3"][0] != pytest.approx(
        res["cos_dist_per_sample"]["relu3"][0], abs=1e-9
    )
