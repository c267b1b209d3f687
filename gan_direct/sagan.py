"""SAGAN (spec ``gan_chapter_and_cifar_thesis.md`` §3.4): the DCGAN layout with spectral norm in
G and D, self-attention blocks on chosen feature-map sizes, conditional BatchNorm in G and a
projection discriminator for class-conditional training. Trained with the hinge loss and TTUR
(D 4e-4, G 1e-4, Adam betas (0, 0.9)).

Self-attention (one head, pixels as tokens): ``q, k, v = W x`` by 1x1 convs to ``C/8``
channels, ``a = softmax_j(<q_i, k_j>)`` (no 1/sqrt(d) scaling; spectral norm bounds the
magnitudes), ``o = W_O sum_j a_ij v_j`` back to C, output ``x + gamma * o`` with gamma a
learnable scalar initialised to 0: the network starts purely convolutional."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from gan_direct.dcgan import _levels
from gan_direct.network import GANGenerator, GANNetwork
from shared.gan_blocks import ConditionalBatchNorm2d, Projection, spectral_norm


@dataclass
class SAGANGeneratorSpec:
    resolution: int = 64
    channels: int = 3
    z_dim: int = 128
    base: int = 64
    attention: list[int] = field(default_factory=lambda: [32])  # feature-map sizes
    num_classes: int = 0


@dataclass
class SAGANDiscriminatorSpec:
    resolution: int = 64
    channels: int = 3
    base: int = 64
    attention: list[int] = field(default_factory=lambda: [32])
    num_classes: int = 0


class SelfAttention2d(nn.Module):
    """``(B, C, H, W) -> (B, C, H, W)``; ``return_map=True`` also gives ``(B, HW, HW)``."""

    def __init__(self, dim: int, reduction: int = 8):
        super().__init__()
        inner = max(dim // reduction, 1)
        self.q, self.k, self.v = (spectral_norm(nn.Conv2d(dim, inner, 1)) for _ in range(3))
        self.out = spectral_norm(nn.Conv2d(inner, dim, 1))
        self.gamma = nn.Parameter(torch.zeros(()))

    def forward(self, x: torch.Tensor, return_map: bool = False):
        b, _, h, w = x.shape
        q, k, v = (f(x).flatten(2) for f in (self.q, self.k, self.v))  # (B, c, N)
        attn = torch.softmax(q.transpose(1, 2) @ k, dim=-1)  # (B, N queries, N keys)
        o = self.out((v @ attn.transpose(1, 2)).view(b, -1, h, w))
        y = x + self.gamma * o
        return (y, attn) if return_map else y


class SAGANGenerator(GANGenerator):
    """``forward(z (B, z_dim), labels=None) -> (B, channels, R, R)`` in [-1, 1]."""

    model_type = "sagan-generator"
    spec_class = SAGANGeneratorSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.z_dim, self.num_classes = spec.z_dim, spec.num_classes
        n = _levels(spec.resolution)
        widths = [spec.base * 2**i for i in reversed(range(n))]
        self.convs = nn.ModuleList([spectral_norm(nn.ConvTranspose2d(spec.z_dim, widths[0], 4))])
        self.convs.extend(
            spectral_norm(nn.ConvTranspose2d(a, b, 4, 2, 1))
            for a, b in zip(widths, widths[1:], strict=False)
        )
        self.norms = nn.ModuleList(ConditionalBatchNorm2d(w, spec.num_classes) for w in widths)
        sizes = [4 * 2**i for i in range(n)]
        self.attn = nn.ModuleDict(
            {
                str(s): SelfAttention2d(w)
                for s, w in zip(sizes, widths, strict=True)
                if s in spec.attention
            }
        )
        self.to_rgb = nn.ConvTranspose2d(widths[-1], spec.channels, 4, 2, 1)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = z[:, :, None, None]
        for conv, norm in zip(self.convs, self.norms, strict=True):
            x = torch.relu(norm(conv(x), labels))
            if str(x.shape[-1]) in self.attn:
                x = self.attn[str(x.shape[-1])](x)
        return torch.tanh(self.to_rgb(x))


class SAGANDiscriminator(GANNetwork):
    """``forward(images (B, channels, R, R), labels=None) -> logits (B, 1)``."""

    model_type = "sagan-discriminator"
    spec_class = SAGANDiscriminatorSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.num_classes = spec.num_classes
        n = _levels(spec.resolution)
        widths = [spec.base * 2**i for i in range(n)]
        self.convs = nn.ModuleList(
            spectral_norm(nn.Conv2d(a, b, 4, 2, 1))
            for a, b in zip([spec.channels, *widths], widths, strict=False)
        )
        sizes = [spec.resolution // 2 ** (i + 1) for i in range(n)]
        self.attn = nn.ModuleDict(
            {
                str(s): SelfAttention2d(w)
                for s, w in zip(sizes, widths, strict=True)
                if s in spec.attention
            }
        )
        self.head = spectral_norm(nn.Conv2d(widths[-1], 1, 4))
        self.project = Projection(spec.num_classes, widths[-1]) if spec.num_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = images
        for conv in self.convs:
            x = nn.functional.leaky_relu(conv(x), 0.1)
            if str(x.shape[-1]) in self.attn:
                x = self.attn[str(x.shape[-1])](x)
        out = self.head(x).flatten(1)
        return out if self.project is None else out + self.project(x.sum((2, 3)), labels)
