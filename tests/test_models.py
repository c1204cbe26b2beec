"""llfc_utils.models: every configuration trains, layer names, ChannelLayerNorm, build()."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from llfc_utils import models


def _forward_backward(model, x, num_classes=10):
    model.train()
    out = model(x)
    assert out.shape == (len(x), num_classes)
    assert torch.isfinite(out).all()
    F.cross_entropy(out, torch.arange(len(x)) % num_classes).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, f"{name} got no gradient"
        assert torch.isfinite(p.grad).all(), f"{name} has a non-finite gradient"
    # the loss reaches the input layer: some gradient there is non-zero
    first = next(p for p in model.parameters())
    assert first.grad.abs().sum() > 0


@pytest.mark.parametrize("options", [{}, {"widths": (16, 16)}])
def test_mlp_forward_backward(options):
    torch.manual_seed(0)
    model = models.build("mlp", **options)
    _forward_backward(model, torch.randn(4, 1, 28, 28))


def test_mlp_widths():
    model = models.build("mlp", in_channels=3, image_size=32, widths=[16, 8])
    assert [m.weight.shape for m in model if isinstance(m, nn.Linear)] == [
        (16, 3 * 32 * 32),
        (8, 16),
        (10, 8),
    ]
    assert sum(p.numel() for p in models.build("mlp").parameters()) == (
        784 * 512 + 512 + 2 * (512 * 512 + 512) + 512 * 10 + 10
    )


@pytest.mark.parametrize("in_channels", [3, 1])
@pytest.mark.parametrize("norm", ["bn", "ln", "none"])
@pytest.mark.parametrize("depth", ["vgg11", "vgg16"])
def test_vgg_forward_backward(depth, norm, in_channels):
    torch.manual_seed(0)
    model = models.build(
        depth, in_channels=in_channels, image_size=32, width=0.125, norm=norm, classifier=(16,)
    )
    _forward_backward(model, torch.randn(4, in_channels, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == {"vgg11": 8, "vgg16": 13}[depth]
    assert convs[0].in_channels == in_channels and convs[0].out_channels == 8  # 64 * 0.125
    assert convs[-1].out_channels == 64  # 512 * 0.125
    norm_type = {"bn": nn.BatchNorm2d, "ln": models.ChannelLayerNorm, "none": None}[norm]
    n_norms = sum(isinstance(m, (nn.BatchNorm2d, models.ChannelLayerNorm)) for m in model.modules())
    assert n_norms == (0 if norm_type is None else len(convs))
    assert all((c.bias is not None) == (norm == "none") for c in convs)


def test_vgg_authors_init_matches_their_cifar_vgg():
    """init="authors": zero conv biases beside BN, linear weights N(0, 0.01), zero linear biases."""
    torch.manual_seed(0)
    ours = models.build("vgg16", norm="bn")
    theirs = models.build("vgg16", norm="bn", init="authors")
    convs = [m for m in theirs.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 13 and all(m.bias is not None and not m.bias.any() for m in convs)
    assert all(m.bias is None for m in ours.modules() if isinstance(m, nn.Conv2d))
    linears = [m for m in theirs.modules() if isinstance(m, nn.Linear)]
    assert [tuple(m.weight.shape) for m in linears] == [(4096, 512), (4096, 4096), (10, 4096)]
    for m in linears[:2]:  # millions of draws: the sample std is 0.01 to well under 1 %
        assert abs(m.weight.std().item() - 0.01) < 1e-4 and abs(m.weight.mean().item()) < 1e-4
        assert not m.bias.any()
    default = [m for m in ours.modules() if isinstance(m, nn.Linear)][0]
    assert default.weight.std().item() > 0.02  # PyTorch's default: U(+-1/sqrt(512)), std 0.026
    with pytest.raises(ValueError, match="unknown VGG init 'xavier'; valid: torch, authors"):
        models.build("vgg16", init="xavier")


@pytest.mark.parametrize("shortcut", ["conv", "pad"])
@pytest.mark.parametrize("norm", ["bn", "ln"])
def test_resnet20_forward_backward(norm, shortcut):
    torch.manual_seed(0)
    model = models.build(
        "resnet20", in_channels=3, image_size=32, width=0.5, norm=norm, shortcut=shortcut
    )
    _forward_backward(model, torch.randn(4, 3, 32, 32))
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 19 + (2 if shortcut == "conv" else 0)
    assert model.fc.in_features == 32  # 64 * 0.5


def test_resnet20_one_channel_input():
    model = models.build("resnet20", in_channels=1, image_size=32, width=0.5)
    _forward_backward(model, torch.randn(2, 1, 32, 32))


def test_resnet20_parameter_count():
    n = sum(p.numel() for p in models.build("resnet20", in_channels=3, image_size=32).parameters())
    assert 0.26e6 < n < 0.28e6
    pad = models.build("resnet20", in_channels=3, image_size=32, shortcut="pad")
    # He et al.'s ResNet-20 (option A shortcuts): the widely quoted 269,722 parameters
    assert sum(p.numel() for p in pad.parameters()) == 269_722


def test_resnet20_rejects_norm_none():
    with pytest.raises(ValueError, match="bn"):
        models.build("resnet20", norm="none")


# ---------------------------------------------------------------- layer names


def test_mlp_layer_names():
    model = models.build("mlp", widths=(16, 16))
    names = [n for n, _ in model.named_children()]
    assert names == ["flatten", "fc1", "relu1", "fc2", "relu2", "fc3"]
    assert isinstance(model.fc1, nn.Linear) and isinstance(model.relu1, nn.ReLU)


def test_vgg_layer_names():
    model = models.build(
        "vgg11", in_channels=3, image_size=32, width=0.125, norm="bn", classifier=(16, 16)
    )
    names = [n for n, _ in model.named_children()]
    assert names[:8] == ["conv1", "norm1", "relu1", "pool1", "conv2", "norm2", "relu2", "pool2"]
    assert names[-10:] == [
        "pool5",
        "avgpool",
        "flatten",
        "fc1",
        "relu_fc1",
        "drop1",
        "fc2",
        "relu_fc2",
        "drop2",
        "fc3",
    ]
    assert isinstance(model.conv1, nn.Conv2d) and isinstance(model.norm1, nn.BatchNorm2d)
    assert isinstance(model.pool1, nn.MaxPool2d)
    assert sum(n.startswith("conv") for n in names) == 8
    assert sum(n.startswith("pool") for n in names) == 5
    plain = models.build("vgg11", width=0.125, norm="none", classifier=(16,), dropout=0.0)
    plain_names = [n for n, _ in plain.named_children()]
    assert plain_names[:4] == ["conv1", "relu1", "pool1", "conv2"]
    assert not any(n.startswith(("norm", "drop")) for n in plain_names)


def test_resnet20_layer_names():
    conv = dict(models.build("resnet20", shortcut="conv").named_modules())
    for name in ("conv1", "norm1", "relu1", "stage1.block0.conv1", "stage3.block2.relu2", "fc"):
        assert name in conv, name
    assert isinstance(conv["stage2.block0.shortcut.conv"], nn.Conv2d)
    assert conv["stage2.block0.shortcut.conv"].stride == (2, 2)
    assert isinstance(conv["stage2.block0.shortcut.norm"], nn.BatchNorm2d)
    assert isinstance(conv["stage1.block0.shortcut"], nn.Identity)
    assert isinstance(conv["stage2.block1.shortcut"], nn.Identity)
    assert sum(isinstance(m, nn.ReLU) for m in conv.values()) == 1 + 9 * 2
    pad = dict(models.build("resnet20", shortcut="pad").named_modules())
    assert isinstance(pad["stage2.block0.shortcut"], models.PadShortcut)
    assert "stage2.block0.shortcut.conv" not in pad


def test_pad_shortcut_matches_definition():
    """Option A: subsample by 2, place the input channels in the middle of zero channels."""
    x = torch.randn(2, 4, 6, 6)
    out = models.PadShortcut(4, 8)(x)
    expect = torch.zeros(2, 8, 3, 3)
    expect[:, 2:6] = x[:, :, 0::2, 0::2]
    assert torch.equal(out, expect)


# ---------------------------------------------------------------- ChannelLayerNorm


def test_channel_layer_norm_matches_layer_norm_over_channels():
    torch.manual_seed(0)
    ln = models.ChannelLayerNorm(6).double()
    with torch.no_grad():
        ln.weight.copy_(torch.randn(6))
        ln.bias.copy_(torch.randn(6))
    x = torch.randn(3, 6, 5, 4, dtype=torch.float64) * 3 + 1
    expect = F.layer_norm(x.permute(0, 2, 3, 1), (6,), ln.weight, ln.bias, eps=1e-5)
    torch.testing.assert_close(ln(x), expect.permute(0, 3, 1, 2), rtol=1e-10, atol=1e-10)


def test_channel_layer_norm_keeps_float32_statistics_under_bf16_autocast():
    """Features with a large common offset: bf16 statistics would lose them entirely."""
    torch.manual_seed(0)
    x = (64 + torch.randn(2, 16, 4, 4)).bfloat16()
    ln = models.ChannelLayerNorm(16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = ln(x)
    assert out.dtype == torch.bfloat16
    ref = F.layer_norm(x.double().permute(0, 2, 3, 1), (16,)).permute(0, 3, 1, 2)
    assert (out.double() - ref).abs().max() < 0.05  # bf16 rounding of the output only


def test_channel_layer_norm_commutes_with_channel_permutation():
    torch.manual_seed(1)
    ln = models.ChannelLayerNorm(5)
    with torch.no_grad():
        ln.weight.copy_(torch.randn(5))
        ln.bias.copy_(torch.randn(5))
    perm = torch.randperm(5)
    ln_p = models.ChannelLayerNorm(5)
    with torch.no_grad():
        ln_p.weight.copy_(ln.weight[perm])
        ln_p.bias.copy_(ln.bias[perm])
    x = torch.randn(2, 5, 3, 3)
    torch.testing.assert_close(ln_p(x[:, perm]), ln(x)[:, perm])


# ---------------------------------------------------------------- build()


def test_build_unknown_name_lists_valid_names():
    with pytest.raises(ValueError, match="resnet50") as e:
        models.build("resnet50")
    for name in models.NAMES:
        assert name in str(e.value)


@pytest.mark.parametrize(
    ("name", "bad", "valid"),
    [("mlp", "widht", "widths"), ("vgg16", "widths", "width"), ("resnet20", "depth", "shortcut")],
)
def test_build_unknown_option_lists_valid_options(name, bad, valid):
    with pytest.raises(ValueError, match=bad) as e:
        models.build(name, **{bad: 1})
    assert valid in str(e.value)


@pytest.mark.parametrize("name", ["vgg11", "resnet20"])
def test_build_unknown_norm(name):
    with pytest.raises(ValueError, match="norm"):
        models.build(name, norm="gn")


def test_build_is_deterministic_under_a_seed():
    torch.manual_seed(3)
    a = models.build("vgg11", width=0.125, classifier=(16,))
    torch.manual_seed(3)
    b = models.build("vgg11", width=0.125, classifier=(16,))
    torch.manual_seed(4)
    c = models.build("vgg11", width=0.125, classifier=(16,))
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["conv1.weight"], sc["conv1.weight"])
