"""The CIFAR-10 thesis's DCGAN at 64x64 (spec ``gan_chapter_and_cifar_thesis.md`` §3.3, §3.7) and
its GAN+Transformer generator (§3.8, repaired as the spec reconstructs it).

- ``DCGANGenerator``: z as a 1x1 map -> ConvT 4x4 (stride 1) to ``base * 2^(n-1)`` channels at
  4x4 -> n-1 ConvT 4x4 stride 2 (+BN+ReLU), halving the channels -> ConvT to RGB + tanh. At 64 px
  with base 64: 3,576,704 parameters (no conv bias).
- ``DCGANDiscriminator``: Conv 4x4 stride 2 + LReLU(0.2) (no BN on the input layer), then
  Conv+BN+LReLU blocks down to 4x4, then Conv 4x4 valid -> one logit: 2,765,568 parameters. The
  thesis's fixes are options: ``dropout`` (0.3) after the 4 hidden blocks and ``spectral_norm``
  on every conv (no extra parameters); label smoothing and D's learning rate live in the loss and
  train configs.
- ``TransGANHybridGenerator``: Linear(z) -> 16 tokens (4x4) of ``8 * base`` -> 6 post-norm
  encoder layers (8 heads, FFN 256, dropout 0.1) + LayerNorm -> map -> the DCGAN upsampling
  stack (with conv biases, as printed): 11,478,851 parameters.

DCGAN init: conv weights N(0, 0.02), BN weights N(1, 0.02), biases 0. Class conditioning
(``num_classes`` > 0): G concatenates a label embedding to z; D adds a projection term on its
4x4 features (summed over positions)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from gan_direct.network import GANGenerator, GANNetwork
from shared.gan_blocks import Projection, spectral_norm


@dataclass
class DCGANGeneratorSpec:
    resolution: int = 64
    channels: int = 3
    z_dim: int = 100
    base: int = 64  # ngf: channels of the last hidden layer
    num_classes: int = 0
    embed_dim: int = 16


@dataclass
class DCGANDiscriminatorSpec:
    resolution: int = 64
    channels: int = 3
    base: int = 64  # ndf
    dropout: float = 0.0
    spectral_norm: bool = False
    num_classes: int = 0


@dataclass
class TransGANHybridSpec:
    resolution: int = 64
    channels: int = 3
    z_dim: int = 100
    base: int = 64  # tokens are 8 * base wide
    heads: int = 8
    ff_dim: int = 256
    layers: int = 6
    num_classes: int = 0
    embed_dim: int = 16


def _levels(resolution: int) -> int:
    """Number of stride-2 layers between 4x4 and ``resolution`` (a power of two >= 8)."""
    n = int(math.log2(resolution)) - 2
    if resolution < 8 or 4 * 2**n != resolution:
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return n


def dcgan_init(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d | nn.ConvTranspose2d | nn.Linear):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def upsampling_stack(widths: list[int], channels: int, bias: bool) -> nn.Sequential:
    """ConvT 4x4 stride 2 (+BN+ReLU) through ``widths``, then ConvT to ``channels`` + tanh:
    ``(B, widths[0], h, h)`` -> ``(B, channels, h * 2^len(widths), ...)``."""
    layers: list[nn.Module] = []
    for cin, cout in zip(widths, widths[1:], strict=False):
        layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=bias), nn.BatchNorm2d(cout)]
        layers.append(nn.ReLU(True))
    layers += [nn.ConvTranspose2d(widths[-1], channels, 4, 2, 1, bias=bias), nn.Tanh()]
    return nn.Sequential(*layers)


class _ConditionalInput(nn.Module):
    """z, or [z, embed(labels)] when the generator is class-conditional."""

    def __init__(self, num_classes: int, embed_dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, embed_dim) if num_classes else None
        self.extra = embed_dim if num_classes else 0

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
        return z if self.embed is None else torch.cat([z, self.embed(labels)], 1)


class DCGANGenerator(GANGenerator):
    """``forward(z (B, z_dim), labels=None) -> (B, channels, resolution, resolution)`` in
    [-1, 1]."""

    model_type = "dcgan-generator"
    spec_class = DCGANGeneratorSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.z_dim, self.num_classes = spec.z_dim, spec.num_classes
        n = _levels(spec.resolution)
        widths = [spec.base * 2**i for i in reversed(range(n))]  # 512, 256, 128, 64 at 64 px
        self.input = _ConditionalInput(spec.num_classes, spec.embed_dim)
        self.stem = nn.Sequential(
            nn.ConvTranspose2d(spec.z_dim + self.input.extra, widths[0], 4, 1, 0, bias=False),
            nn.BatchNorm2d(widths[0]),
            nn.ReLU(True),
        )
        self.up = upsampling_stack(widths, spec.channels, bias=False)
        dcgan_init(self)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return self.up(self.stem(self.input(z, labels)[:, :, None, None]))


class DCGANDiscriminator(GANNetwork):
    """``forward(images (B, channels, R, R), labels=None) -> logits (B, 1)``."""

    model_type = "dcgan-discriminator"
    spec_class = DCGANDiscriminatorSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.num_classes = spec.num_classes
        n = _levels(spec.resolution)
        widths = [spec.base * 2**i for i in range(n)]  # 64, 128, 256, 512 at 64 px

        def conv(cin: int, cout: int, *args) -> nn.Module:
            c = nn.Conv2d(cin, cout, *args, bias=False)
            return spectral_norm(c) if spec.spectral_norm else c

        def drop() -> list[nn.Module]:
            return [nn.Dropout(spec.dropout)] if spec.dropout else []

        layers = [conv(spec.channels, widths[0], 4, 2, 1), nn.LeakyReLU(0.2, True), *drop()]
        for cin, cout in zip(widths, widths[1:], strict=False):
            layers += [conv(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, True)]
            layers += drop()
        self.features = nn.Sequential(*layers)
        self.head = conv(widths[-1], 1, 4, 1, 0)
        self.project = Projection(spec.num_classes, widths[-1]) if spec.num_classes else None
        dcgan_init(self)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(images)
        out = self.head(h).flatten(1)
        return out if self.project is None else out + self.project(h.sum((2, 3)), labels)


class TransGANHybridGenerator(GANGenerator):
    """``forward(z (B, z_dim), labels=None) -> (B, channels, resolution, resolution)`` in
    [-1, 1]: a Transformer encoder over 4x4 latent tokens before the DCGAN upsampling."""

    model_type = "transgan-hybrid-generator"
    spec_class = TransGANHybridSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.z_dim, self.num_classes = spec.z_dim, spec.num_classes
        n = _levels(spec.resolution)
        dim = spec.base * 2 ** (n - 1)
        self.input = _ConditionalInput(spec.num_classes, spec.embed_dim)
        self.fc = nn.Linear(spec.z_dim + self.input.extra, 16 * dim)
        layer = nn.TransformerEncoderLayer(dim, spec.heads, spec.ff_dim, batch_first=True)
        self.transformer = nn.TransformerEncoder(
            layer, spec.layers, norm=nn.LayerNorm(dim), enable_nested_tensor=False
        )
        widths = [spec.base * 2**i for i in reversed(range(n))]
        self.up = upsampling_stack(widths, spec.channels, bias=True)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.fc(self.input(z, labels)).view(len(z), 16, -1)  # (B, 16 tokens, dim)
        x = self.transformer(x).transpose(1, 2).reshape(len(z), -1, 4, 4)
        return self.up(x)
