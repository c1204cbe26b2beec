"""The networks: MLP, VGG (BN / LN / none) and ResNet-20 (BN / LN), CIFAR-style for 32x32 inputs.

Layer names are stable and readable, because later code (features, permutations) addresses
layers by them. MLP and VGG are flat `nn.Sequential`s:

    MLP:  flatten, fc1, relu1, fc2, relu2, ..., fc{L}
    VGG:  conv1, norm1, relu1, [pool1], conv2, ..., avgpool, flatten, fc1, relu_fc1, [drop1], ..., fc{L}

ResNet-20: conv1, norm1, relu1, stage{1,2,3}.block{0,1,2}.{conv1,norm1,relu1,conv2,norm2,
shortcut,relu2}, avgpool, flatten, fc. Every ReLU is an `nn.ReLU` module, so hooks see it.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

NAMES = ("mlp", "vgg11", "vgg16", "resnet20")
NORMS = ("bn", "ln", "none")

VGG_CFGS = {
    "vgg11": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "vgg16": [
        64,
        64,
        "M",
        128,
        128,
        "M",
        256,
        256,
        256,
        "M",
        512,
        512,
        512,
        "M",
        512,
        512,
        512,
        "M",
    ],
}


class ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels at each pixel, with a per-channel scale and shift.

    This is Git Re-Basin's normalisation for CIFAR nets (flax `LayerNorm` over the last axis,
    NHWC): it commutes with channel permutations and needs no running statistics.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x.to(torch.promote_types(x.dtype, torch.float32))  # float32 statistics under bf16
        mean = h.mean(dim=1, keepdim=True)
        var = h.var(dim=1, keepdim=True, unbiased=False)
        h = (h - mean) * torch.rsqrt(var + self.eps)
        return (h * self.weight[:, None, None] + self.bias[:, None, None]).to(x.dtype)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels)
    if kind == "ln":
        return ChannelLayerNorm(channels)
    if kind == "none":
        return nn.Identity()
    raise ValueError(f"unknown norm {kind!r}; valid: {', '.join(NORMS)}")


def _scaled(c: int, width: float) -> int:
    return max(1, int(round(c * width)))


class MLP(nn.Sequential):
    """Fully connected ReLU net: flatten, then widths[i] hidden units per layer."""

    def __init__(
        self,
        widths: tuple[int, ...] = (512, 512, 512),
        in_features: int = 784,
        num_classes: int = 10,
    ) -> None:
        layers: OrderedDict[str, nn.Module] = OrderedDict(flatten=nn.Flatten())
        dims = [in_features, *widths]
        for i in range(len(widths)):
            layers[f"fc{i + 1}"] = nn.Linear(dims[i], dims[i + 1])
            layers[f"relu{i + 1}"] = nn.ReLU()
        layers[f"fc{len(widths) + 1}"] = nn.Linear(dims[-1], num_classes)
        super().__init__(layers)
        self.in_features = in_features


class VGG(nn.Sequential):
    """CIFAR-style VGG: 3x3 convs, max pools, global average pool, an MLP classifier.

    `classifier` lists the hidden widths of the classifier (the authors use (4096, 4096) with
    dropout 0.5); `width` scales every conv's channels. `init="authors"` initialises as the
    authors' `src/model/cifar_vgg.py` does: every conv has a (zero) bias, also beside a norm, and
    the linear layers draw their weights from N(0, 0.01) with zero biases; the default "torch"
    keeps PyTorch's linear initialisation and no conv bias before a norm. Convs are Kaiming-normal
    (fan out) in both.
    """

    def __init__(
        self,
        depth: str = "vgg16",
        width: float = 1.0,
        norm: str = "bn",
        in_channels: int = 3,
        num_classes: int = 10,
        classifier: tuple[int, ...] = (4096, 4096),
        dropout: float = 0.5,
        init: str = "torch",
    ) -> None:
        if depth not in VGG_CFGS:
            raise ValueError(f"unknown VGG depth {depth!r}; valid: {', '.join(VGG_CFGS)}")
        if init not in ("torch", "authors"):
            raise ValueError(f"unknown VGG init {init!r}; valid: torch, authors")
        layers: OrderedDict[str, nn.Module] = OrderedDict()
        c_in, i, p = in_channels, 0, 0
        for v in VGG_CFGS[depth]:
            if v == "M":
                p += 1
                layers[f"pool{p}"] = nn.MaxPool2d(2)
                continue
            i += 1
            c_out = _scaled(v, width)
            bias = norm == "none" or init == "authors"
            layers[f"conv{i}"] = nn.Conv2d(c_in, c_out, 3, padding=1, bias=bias)
            if norm != "none":
                layers[f"norm{i}"] = _norm(norm, c_out)
            layers[f"relu{i}"] = nn.ReLU()
            c_in = c_out
        layers["avgpool"] = nn.AdaptiveAvgPool2d(1)
        layers["flatten"] = nn.Flatten()
        dims = [c_in, *classifier]
        for j in range(len(classifier)):
            layers[f"fc{j + 1}"] = nn.Linear(dims[j], dims[j + 1])
            layers[f"relu_fc{j + 1}"] = nn.ReLU()
            if dropout > 0:
                layers[f"drop{j + 1}"] = nn.Dropout(dropout)
        layers[f"fc{len(classifier) + 1}"] = nn.Linear(dims[-1], num_classes)
        super().__init__(layers)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear) and init == "authors":
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)


class PadShortcut(nn.Module):
    """He et al.'s option-A shortcut: subsample by 2 and zero-pad the new channels."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.c_in, self.c_out = c_in, c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        extra = self.c_out - self.c_in
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, extra // 2, extra - extra // 2))


class BasicBlock(nn.Module):
    """conv-norm-relu-conv-norm, plus the shortcut, then relu."""

    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.norm1 = _norm(norm, c_out)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.norm2 = _norm(norm, c_out)
        if stride == 1 and c_in == c_out:
            self.shortcut: nn.Module = nn.Identity()
        elif shortcut == "conv":
            self.shortcut = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                    norm=_norm(norm, c_out),
                )
            )
        elif shortcut == "pad":
            self.shortcut = PadShortcut(c_in, c_out)
        else:
            raise ValueError(f"unknown shortcut {shortcut!r}; valid: conv, pad")
        self.relu2 = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu1(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return self.relu2(out + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (He et al. 2016): 3 stages of 3 basic blocks, 16/32/64 channels x width."""

    def __init__(
        self,
        width: float = 1.0,
        norm: str = "bn",
        in_channels: int = 3,
        num_classes: int = 10,
        shortcut: str = "conv",
    ) -> None:
        super().__init__()
        if norm not in ("bn", "ln"):
            raise ValueError(f"ResNet-20 supports norm 'bn' or 'ln', got {norm!r}")
        c = [_scaled(16, width), _scaled(32, width), _scaled(64, width)]
        self.conv1 = nn.Conv2d(in_channels, c[0], 3, padding=1, bias=False)
        self.norm1 = _norm(norm, c[0])
        self.relu1 = nn.ReLU()
        c_in = c[0]
        for s, c_out in enumerate(c):
            blocks = OrderedDict()
            for b in range(3):
                stride = 2 if (s > 0 and b == 0) else 1
                blocks[f"block{b}"] = BasicBlock(c_in, c_out, stride, norm, shortcut)
                c_in = c_out
            setattr(self, f"stage{s + 1}", nn.Sequential(blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(c_in, num_classes)
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        x = self.stage3(self.stage2(self.stage1(x)))
        return self.fc(self.flatten(self.avgpool(x)))


def build(name: str, in_channels: int = 1, image_size: int = 28, **options: Any) -> nn.Module:
    """Build model `name` ("mlp", "vgg11", "vgg16", "resnet20") for inputs (in_channels, image_size^2).

    `options` go to the model's constructor (e.g. `widths` for the MLP, `width` and `norm` for the
    CNNs). An unknown name or option raises ValueError listing the valid ones.
    """
    if name not in NAMES:
        raise ValueError(f"unknown model {name!r}; valid: {', '.join(NAMES)}")
    if name == "mlp":
        cls, fixed = MLP, {"in_features": in_channels * image_size * image_size}
    elif name.startswith("vgg"):
        cls, fixed = VGG, {"depth": name, "in_channels": in_channels}
    else:
        cls, fixed = ResNet20, {"in_channels": in_channels}
    import inspect

    allowed = set(inspect.signature(cls.__init__).parameters) - {"self", *fixed}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(
            f"unknown option(s) {sorted(unknown)} for model {name!r}; valid: {sorted(allowed)}"
        )
    for key in ("widths", "classifier"):
        if key in options:
            options[key] = tuple(options[key])
    return cls(**fixed, **options)
