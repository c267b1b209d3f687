"""ViTGAN (spec ``taming_and_vitgan.md`` part B; ``adatgan.md`` §13.8 compares its generator's
cost with AdatGAN's): a generator and a ViT discriminator.

Generator:

w = mapping MLP(z); tokens start as a Fourier embedding of the ``tokens x tokens`` grid
coordinates; each block is ``h = h + MSA(SLN(h, w)); h = h + MLP(SLN(h, w))`` with dot-product
attention and a SiLU MLP; a final SLN gives one embedding per token, from which an implicit
neural representation paints the token's ``P x P`` pixel patch: Fourier features of the pixel
coordinates inside the patch go through 1x1 layers modulated (and demodulated) by the token
embedding, then a modulated ToRGB. No tanh: images are unbounded, as our AdatGAN generator's.

Discriminator (B.3, B.8): overlapping patches (a conv of kernel ``P + 2o``, stride ``P``, so the
token grid is unchanged), a class token and learned positions, pre-norm blocks of L2 attention
with tied W_q = W_k and a GELU MLP, every Linear under improved spectral normalisation (ISN:
``sigma(W_init) W / sigma(W)``), and a linear head on the class token.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan_direct.network import GANGenerator, GANNetwork
from shared.attention import L2Attention, build_attention
from shared.gan_blocks import Projection, SelfModulatedLayerNorm, spectral_norm


class _TokenGrid:
    """For specs with ``resolution`` and ``tokens``: the image must split into a ``tokens x
    tokens`` grid of whole patches."""

    resolution: int
    tokens: int

    def __post_init__(self):
        if self.resolution % self.tokens:
            raise ValueError(f"resolution {self.resolution} is not a multiple of {self.tokens}")


@dataclass
class ViTGANSpec(_TokenGrid):
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


class ViTGANGenerator(GANGenerator):
    """``forward(z (B, z_dim)) -> images (B, channels, resolution, resolution)``, unbounded.
    Keyword arguments are the fields of :class:`ViTGANSpec`."""

    model_type = "vitgan-generator"
    spec_class = ViTGANSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.z_dim, self.num_classes = spec.z_dim, 0
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


@dataclass
class ViTDiscriminatorSpec(_TokenGrid):
    resolution: int = 32
    channels: int = 3
    dim: int = 384
    depth: int = 4
    heads: int = 6
    mlp_dim: int = 1536
    tokens: int = 8  # token grid side; patches are resolution/tokens pixels
    overlap: int = -1  # pixels added on each side of a patch (-1: half a patch)
    isn: bool = True  # improved spectral normalisation on every Linear
    num_classes: int = 0  # > 0: projection term on the class token


class ViTDiscriminatorBlock(nn.Module):
    """``x + L2Attn(LN(x))`` then ``+ MLP(LN(.))``; ``x (B, N, dim)``."""

    def __init__(self, dim: int, heads: int, mlp_dim: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = L2Attention(dim, heads)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp_dim), nn.GELU(), nn.Linear(mlp_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ViTDiscriminator(GANNetwork):
    """``forward(images (B, channels, R, R), labels=None) -> logits (B, 1)``.
    Keyword arguments are the fields of :class:`ViTDiscriminatorSpec`."""

    model_type = "vitgan-discriminator"
    spec_class = ViTDiscriminatorSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.num_classes = spec.num_classes
        p = spec.resolution // spec.tokens
        o = p // 2 if spec.overlap < 0 else spec.overlap
        self.patchify = nn.Conv2d(spec.channels, spec.dim, p + 2 * o, stride=p, padding=o)
        self.cls = nn.Parameter(torch.zeros(1, 1, spec.dim))
        self.pos = nn.Parameter(torch.randn(1, spec.tokens**2 + 1, spec.dim) * 0.02)
        self.blocks = nn.Sequential(
            *(ViTDiscriminatorBlock(spec.dim, spec.heads, spec.mlp_dim) for _ in range(spec.depth))
        )
        self.norm = nn.LayerNorm(spec.dim)
        self.head = nn.Linear(spec.dim, 1)
        self.project = Projection(spec.num_classes, spec.dim) if spec.num_classes else None
        if spec.isn:
            for block in self.blocks:
                for m in list(block.modules()):
                    if isinstance(m, nn.Linear):
                        spectral_norm(m, improved=True)

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.patchify(images).flatten(2).transpose(1, 2)  # (B, N, dim)
        x = torch.cat([self.cls.expand(len(x), -1, -1), x], 1) + self.pos
        h = self.norm(self.blocks(x))[:, 0]
        out = self.head(h)
        return out if self.project is None else out + self.project(h, labels)
