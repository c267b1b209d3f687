"""A ViTGAN-style generator (spec ``adatgan.md`` §13.8, ``taming_and_vitgan.md`` B.4.3-B.4.5):
the thesis's comparison point for the AdatGAN generator's cost.

w = mapping MLP(z); tokens start as a Fourier embedding of the ``tokens x tokens`` grid
coordinates; each block is ``h = h + MSA(SLN(h, w)); h = h + MLP(SLN(h, w))`` with dot-product
attention and a SiLU MLP; a final SLN gives one embedding per token, from which an implicit
neural representation paints the token's ``P x P`` pixel patch: Fourier features of the pixel
coordinates inside the patch go through 1x1 layers modulated (and demodulated) by the token
embedding, then a modulated ToRGB. No tanh: images are unbounded, as our AdatGAN generator's.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from shared.attention import build_attention
from shared.gan_blocks import SelfModulatedLayerNorm
from shared.pretrained import Pretrained


@dataclass
class ViTGANSpec:
    """Constructor arguments of :class:`ViTGANGenerator`; defaults are ViTGAN's official sizes
    (384-wide, 4 blocks, 6 heads, MLP 1536, 8-layer mapping, an 8x8 token grid)."""

    resolution: int = 64
    channels: int = 3
    z_dim: int = 384
    dim: int = 384
    depth: int = 4
    heads: int = 6
    mlp_dim: int = 1536
    mapping_layers: int = 8
    tokens: int = 8  # the token grid is tokens x tokens; patches are resolution/tokens pixels
    inr_dim: int = 512  # width of the patch INR

    def __post_init__(self):
        if self.resolution % self.tokens:
            raise ValueError(f"resolution {self.resolution} is not a multiple of {self.tokens}")


def fourier_grid(side: int, linear: nn.Linear) -> torch.Tensor:
    """sin(linear(x', y')) on a ``side x side`` grid of coordinates in [-1, 1]:
    ``(side*side, linear.out_features)``, row-major."""
    axis = torch.linspace(-1, 1, side, device=linear.weight.device)
    yy, xx = torch.meshgrid(axis, axis, indexing="ij")
    return torch.sin(linear(torch.stack([xx, yy], -1).view(-1, 2)))


class ModulatedLinear(nn.Module):
    """A 1x1 layer whose input channels are scaled per sample by ``affine(style)`` (StyleGAN2
    modulation) and, with ``demodulate``, whose outputs are renormalised to unit expected
    scale. ``x (B, N, P, cin)``, ``style (B, N, style_dim)`` -> ``(B, N, P, cout)``."""

    def __init__(self, cin: int, cout: int, style_dim: int, demodulate: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / math.sqrt(cin))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.affine = nn.Linear(style_dim, cin)
        nn.init.ones_(self.affine.bias)
        self.demodulate = demodulate

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        s = self.affine(style)  # (B, N, cin)
        y = (x * s.unsqueeze(2)) @ self.weight.t()
        if self.demodulate:  # 1 / ||W diag(s)|| per output channel
            y = y * torch.rsqrt((s * s) @ (self.weight * self.weight).t() + 1e-8).unsqueeze(2)
        return y + self.bias


class ViTGANBlock(nn.Module):
    """``h + MSA(SLN(h, w))`` then ``+ MLP(SLN(., w))``; ``x (B, N, dim)``, ``w (B, dim)``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1 = SelfModulatedLayerNorm(dim, dim, hidden_dim=0, eps=1e-3)
        self.attn = build_attention("dot", dim, heads)
        self.norm2 = SelfModulatedLayerNorm(dim, dim, hidden_dim=0, eps=1e-3)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.SiLU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x, w))
        return x + self.mlp(self.norm2(x, w))


class ViTGANGenerator(Pretrained):
    """``forward(z (B, z_dim)) -> images (B, channels, resolution, resolution)``, unbounded.
    Keyword arguments are the fields of :class:`ViTGANSpec`."""

    model_type = "vitgan-generator"

    def __init__(self, **kwargs):
        super().__init__()
        spec = ViTGANSpec(**kwargs)
        self.spec, self.config = spec, dataclasses.asdict(spec)
        layers = []
        for i in range(spec.mapping_layers):
            layers += [nn.Linear(spec.z_dim if i == 0 else spec.dim, spec.dim), nn.LeakyReLU(0.2)]
        self.mapping = nn.Sequential(*layers)
        self.token_fourier = nn.Linear(2, spec.dim)
        self.blocks = nn.ModuleList(
            ViTGANBlock(spec.dim, spec.heads, spec.mlp_dim) for _ in range(spec.depth)
        )
        self.norm = SelfModulatedLayerNorm(spec.dim, spec.dim, hidden_dim=0, eps=1e-3)
        self.pixel_fourier = nn.Linear(2, spec.dim)
        self.inr = nn.ModuleList(
            [
                ModulatedLinear(spec.dim, spec.inr_dim, spec.dim),
                ModulatedLinear(spec.inr_dim, spec.inr_dim, spec.dim),
            ]
        )
        self.to_rgb = ModulatedLinear(spec.inr_dim, spec.channels, spec.dim, demodulate=False)

    @property
    def patch(self) -> int:
        return self.spec.resolution // self.spec.tokens

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        s, p = self.spec, self.patch
        w = self.mapping(F.normalize(z, dim=1) * math.sqrt(z.shape[1]))  # PixelNorm, then MLP
        h = fourier_grid(s.tokens, self.token_fourier).expand(z.shape[0], -1, -1)
        for block in self.blocks:
            h = block(h, w)
        y = self.norm(h, w)  # (B, N, dim): one style per token
        x = fourier_grid(p, self.pixel_fourier).expand(*y.shape[:2], -1, -1)  # (B, N, P*P, dim)
        for layer in self.inr:
            x = F.leaky_relu(layer(x, y), 0.2)
        x = self.to_rgb(x, y)  # (B, N, P*P, C)
        b, t = z.shape[0], s.tokens
        x = x.view(b, t, t, p, p, s.channels).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, s.channels, s.resolution, s.resolution)
