"""The chapter's MLP GANs (spec ``gan_chapter_and_cifar_thesis.md`` §3.1-§3.2): the 2-D toy GAN
(``toy2d``: G 11,234 / D 10,753 parameters) and the conditional GAN on 28x28 digits
(``cgan-mnist``: G 1,484,976 / D 1,476,769), both as one generator and one discriminator class.

Conditioning concatenates a learned 16-d label embedding to the input of G and of D, or, with
``projection=True``, D uses a projection term on its last hidden features instead."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from gan_direct.network import GANGenerator, GANNetwork
from shared.gan_blocks import Projection


@dataclass
class MLPGeneratorSpec:
    shape: list[int] = field(default_factory=lambda: [2])  # one sample: [2] points, [C, H, W]
    z_dim: int = 16
    hidden: list[int] = field(default_factory=lambda: [32, 64, 128])
    batch_norm: bool = False  # BatchNorm1d after each hidden Linear
    leaky: float = 0.0  # LeakyReLU slope (0 = ReLU)
    tanh: bool = False  # tanh output (images in [-1, 1]); none for points
    num_classes: int = 0
    embed_dim: int = 16  # label embedding concatenated to z
    init_std: float = 0.0  # > 0: Linear weights N(0, init_std), biases 0 (the CGAN's 0.02)


@dataclass
class MLPDiscriminatorSpec:
    shape: list[int] = field(default_factory=lambda: [2])
    hidden: list[int] = field(default_factory=lambda: [128, 64, 32])
    leaky: float = 0.0
    dropout: float = 0.0  # after each hidden layer
    num_classes: int = 0
    embed_dim: int = 16
    projection: bool = False  # class term <embed(y), h> instead of concatenating embed(y)
    init_std: float = 0.0


def _activation(leaky: float) -> nn.Module:
    return nn.LeakyReLU(leaky) if leaky else nn.ReLU()


def _init(module: nn.Module, std: float) -> None:
    if std > 0:
        for m in module.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=std)
                nn.init.zeros_(m.bias)


class MLPGenerator(GANGenerator):
    """``forward(z (B, z_dim), labels (B,) | None) -> (B, *shape)``."""

    model_type = "mlp-generator"
    spec_class = MLPGeneratorSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.z_dim, self.num_classes = spec.z_dim, spec.num_classes
        self.embed = nn.Embedding(spec.num_classes, spec.embed_dim) if spec.num_classes else None
        width = spec.z_dim + (spec.embed_dim if spec.num_classes else 0)
        layers: list[nn.Module] = []
        for h in spec.hidden:
            layers.append(nn.Linear(width, h))
            layers += [nn.BatchNorm1d(h)] if spec.batch_norm else []
            layers.append(_activation(spec.leaky))
            width = h
        layers.append(nn.Linear(width, math.prod(spec.shape)))
        layers += [nn.Tanh()] if spec.tanh else []
        self.net = nn.Sequential(*layers)
        _init(self.net, spec.init_std)

    @property
    def points(self) -> bool:
        """Whether samples are points (vectors) rather than images."""
        return len(self.spec.shape) == 1

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            z = torch.cat([z, self.embed(labels)], 1)
        return self.net(z).view(len(z), *self.spec.shape)


class MLPDiscriminator(GANNetwork):
    """``forward(x (B, *shape), labels (B,) | None) -> logits (B, 1)`` (no sigmoid: the losses
    work on logits, the chapter's Observación 1)."""

    model_type = "mlp-discriminator"
    spec_class = MLPDiscriminatorSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.num_classes = spec.num_classes
        concat = spec.num_classes and not spec.projection
        self.embed = nn.Embedding(spec.num_classes, spec.embed_dim) if concat else None
        width = math.prod(spec.shape) + (spec.embed_dim if concat else 0)
        layers: list[nn.Module] = []
        for h in spec.hidden:
            layers += [nn.Linear(width, h), _activation(spec.leaky)]
            layers += [nn.Dropout(spec.dropout)] if spec.dropout else []
            width = h
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, 1)
        self.project = (
            Projection(spec.num_classes, width) if spec.num_classes and spec.projection else None
        )
        _init(self, spec.init_std)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = x.flatten(1)
        if self.embed is not None:
            x = torch.cat([x, self.embed(labels)], 1)
        h = self.features(x)
        out = self.head(h)
        return out + self.project(h, labels) if self.project is not None else out
