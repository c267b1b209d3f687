"""The FID Inception-v3 (TF ``inception-2015-12-05`` weights), built offline.

Numerics follow pytorch-fid (``pytorch_fid.inception.InceptionV3`` with its default
``resize_input=True, normalize_input=True``): the [0, 1] image is resized to 299x299 with
``F.interpolate(mode="bilinear", align_corners=False)`` and mapped to [-1, 1] by ``2x - 1``
before the network; given the same weights the features are bit-identical to pytorch-fid's.
torch-fidelity (and torchmetrics' FID, which uses it) runs the same network but feeds it
``(u8 - 128) / 128`` after a TF1-style bilinear resize of the uint8 image, so its features
differ slightly.

The network is torchvision's ``Inception3`` with pytorch-fid's block changes: the average pools
inside the Inception blocks ignore the zero padding (as TF does) and the last block (Mixed_7c)
max-pools its pool branch. Its state-dict layout is that of ``pt_inception-2015-12-05-6726825d.pth``
(and of torch-fidelity's ``weights-inception-2015-12-05-6726825d.pth``, the same weights).

The logits are ``features @ fc.weight.T`` without the fc bias over all 1008 classes: the layer
torch-fidelity's Inception Score uses (``logits_unbiased``), as did the original TF IS code.
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.inception import (
    BasicConv2d,
    Inception3,
    InceptionA,
    InceptionAux,
    InceptionB,
    InceptionC,
    InceptionD,
    InceptionE,
)

from shared.checkpoint import load_weights
from shared.weights import WeightsUnavailable, available, resolve

__all__ = [
    "FID_INCEPTION_SIZE",
    "FIDInceptionV3",
    "build_fid_inception",
    "inception_available",
]

FID_INCEPTION_SIZE = 299
NUM_CLASSES = 1008
WEIGHTS_NAME = "inception-fid"
FIDELITY_WEIGHTS_NAME = "inception-fid-fidelity"
FEATURE_LAYERS = (
    *("Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "maxpool1"),
    *("Conv2d_3b_1x1", "Conv2d_4a_3x3", "maxpool2"),
    *("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a"),
    *("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"),
    *("Mixed_7a", "Mixed_7b", "Mixed_7c", "avgpool"),
)


def _avg_pool(x: Tensor) -> Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max_pool(x: Tensor) -> Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


class FIDInceptionA(InceptionA):
    """InceptionA whose pool branch averages over the unpadded window only."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch5x5 = self.branch5x5_2(self.branch5x5_1(x))
        branch3x3dbl = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return [self.branch1x1(x), branch5x5, branch3x3dbl, self.branch_pool(_avg_pool(x))]


class FIDInceptionC(InceptionC):
    """InceptionC whose pool branch averages over the unpadded window only."""

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch7x7 = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        branch7x7dbl = x
        for i in range(1, 6):
            branch7x7dbl = getattr(self, f"branch7x7dbl_{i}")(branch7x7dbl)
        return [self.branch1x1(x), branch7x7, branch7x7dbl, self.branch_pool(_avg_pool(x))]


class FIDInceptionE(InceptionE):
    """InceptionE with a padding-free average pool, or a max pool (``pool="max"``, Mixed_7c)."""

    def __init__(self, in_channels: int, pool: str = "avg") -> None:
        super().__init__(in_channels)
        self.pool = {"avg": _avg_pool, "max": _max_pool}[pool]

    def _forward(self, x: Tensor) -> list[Tensor]:
        branch3x3 = self.branch3x3_1(x)
        branch3x3 = torch.cat([self.branch3x3_2a(branch3x3), self.branch3x3_2b(branch3x3)], 1)
        branch3x3dbl = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        branch3x3dbl = torch.cat(
            [self.branch3x3dbl_3a(branch3x3dbl), self.branch3x3dbl_3b(branch3x3dbl)], 1
        )
        return [self.branch1x1(x), branch3x3, branch3x3dbl, self.branch_pool(self.pool(x))]


class FIDInceptionV3(Inception3):
    """FID Inception-v3: [-1, 1] images (B, 3, H, W) -> pool3 features (B, 2048), logits (B, 1008).

    Both outputs are float32; any input size is resized to 299x299 as pytorch-fid does, and
    autocast is switched off inside so the numerics do not depend on the caller's context.
    """

    def __init__(self) -> None:
        blocks = [BasicConv2d, FIDInceptionA, InceptionB, FIDInceptionC, InceptionD, FIDInceptionE]
        super().__init__(
            num_classes=NUM_CLASSES,
            aux_logits=False,
            init_weights=False,
            inception_blocks=[*blocks, InceptionAux],
        )
        self.Mixed_7c = FIDInceptionE(2048, pool="max")

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        with torch.autocast(images.device.type, enabled=False):
            features = self.pool_features(_fid_preprocess(images))
            return features, features @ self.fc.weight.T

    def pool_features(self, x: Tensor) -> Tensor:
        """Network input (B, 3, 299, 299) in [-1, 1] -> pool3 features (B, 2048)."""
        for name in FEATURE_LAYERS:
            x = getattr(self, name)(x)
        return x.flatten(1)


def build_fid_inception(
    weights: str = "pretrained", path: str | Path | None = None
) -> FIDInceptionV3:
    """Frozen, eval-mode FID Inception-v3 on the CPU.

    ``weights``: "pretrained" loads ``pt_inception-2015-12-05-6726825d.pth`` found by
    ``shared.weights.resolve("inception-fid", path)`` (torch-fidelity's copy of the same weights
    is accepted too when no ``path`` is given) and raises ``WeightsUnavailable`` naming the file
    when neither is on disk. "random" (tests, offline demos) draws He-normal convolutions from a
    fixed seed: activations keep unit scale and every process builds the same network.
    """
    if weights not in ("pretrained", "random"):
        raise ValueError(f"weights must be 'pretrained' or 'random', got {weights!r}")
    state = load_weights(_weights_file(path)) if weights == "pretrained" else None
    model = FIDInceptionV3()
    if state is None:
        _init_random(model)
    else:
        model.load_state_dict(state)
    model.eval()
    model.requires_grad_(False)
    return model


def inception_available() -> bool:
    """Whether ``build_fid_inception("pretrained")`` finds its weights."""
    return available(WEIGHTS_NAME) or available(FIDELITY_WEIGHTS_NAME)


def _init_random(model: nn.Module, seed: int = 0) -> None:
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu", generator=generator)
        elif isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=module.in_features**-0.5, generator=generator)
            nn.init.zeros_(module.bias)


def _weights_file(path: str | Path | None) -> Path:
    try:
        return resolve(WEIGHTS_NAME, path)
    except WeightsUnavailable:
        if path is None and available(FIDELITY_WEIGHTS_NAME):
            return resolve(FIDELITY_WEIGHTS_NAME)
        raise


def _fid_preprocess(images: Tensor) -> Tensor:
    """[-1, 1] (B, 3, H, W) -> the network input: pytorch-fid's resize of the [0, 1] image."""
    if images.ndim != 4 or images.shape[1] != 3:
        raise ValueError(f"FID Inception takes (B, 3, H, W) images, got {tuple(images.shape)}")
    x = (images.float() + 1) / 2
    size = (FID_INCEPTION_SIZE, FID_INCEPTION_SIZE)
    x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    return 2 * x - 1
