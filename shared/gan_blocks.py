"""Building blocks of the AdatGAN generator and discriminator (spec ``adatgan.md`` §3-§6).

Tokens are ``(B, N, C)`` laid out row-major on an ``h x w`` grid (``N = h * w``); feature maps are
``(B, C, H, W)``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from shared.attention import AdditiveAttention


def tokens_to_map(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``(B, h*w, C)`` tokens -> ``(B, C, h, w)`` map."""
    h, w = size
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], h, w)


def map_to_tokens(x: torch.Tensor) -> torch.Tensor:
    """``(B, C, h, w)`` map -> ``(B, h*w, C)`` tokens."""
    return x.flatten(2).transpose(1, 2)


def _grid(n: int, size: tuple[int, int] | None) -> tuple[int, int]:
    if size is not None:
        return size
    side = math.isqrt(n)
    if side * side != n:
        raise ValueError(f"{n} tokens are not a square grid; pass size=(h, w)")
    return side, side


class SelfModulatedLayerNorm(nn.Module):
    """LayerNorm whose scale and shift are functions of a condition vector (SLN).

    ``SLN(x, c) = (1 + gamma(c)) * LN(x) + beta(c)`` where ``LN`` has no affine parameters
    (eps 1e-6) and ``gamma, beta = Linear(ReLU(Linear(c)))`` share the hidden layer of width
    ``hidden_dim`` (default ``dim``): self-modulation, spec adatgan §3.1 / thesis eq. 3.26.
    ``hidden_dim=0`` makes gamma, beta plain linear maps of ``c`` (ViTGAN, spec taming_and_vitgan
    B.4.3). Gamma is parameterised around 1 as in ViTGAN: the same function class as LadaGAN's
    ``gamma * LN(x) + beta`` (a bias shift of 1), but the block starts near plain LN, and zero
    weights give exactly LN. ``c`` is z, a mapped latent or a class embedding.

    ``x``: ``(B, ..., dim)``; ``cond``: ``(B, cond_dim)``; returns the shape of ``x``.
    """

    def __init__(self, dim: int, cond_dim: int, hidden_dim: int | None = None, eps: float = 1e-6):
        super().__init__()
        hidden_dim = dim if hidden_dim is None else hidden_dim
        self.norm = nn.LayerNorm(dim, eps=eps, elementwise_affine=False)
        self.hidden = (
            nn.Sequential(nn.Linear(cond_dim, hidden_dim), nn.ReLU())
            if hidden_dim
            else nn.Identity()
        )
        self.to_gamma_beta = nn.Linear(hidden_dim or cond_dim, 2 * dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.to_gamma_beta(self.hidden(cond)).chunk(2, dim=-1)
        shape = (x.shape[0],) + (1,) * (x.dim() - 2) + (x.shape[-1],)
        return (1 + gamma.view(shape)) * self.norm(x) + beta.view(shape)


class PixelShuffleUpsample(nn.Module):
    """Pixel shuffle then local embedding expansion (LEE, spec adatgan §4, §5.2).

    ``(B, h*w, dim)`` tokens -> map -> ``PixelShuffle(factor)`` -> ``(factor*h, factor*w)`` map
    with ``dim / factor**2`` channels -> ``Conv kernel_size x kernel_size`` ('same', with bias)
    to ``out_dim`` channels -> ``(B, factor**2 * h*w, out_dim)`` tokens. ``out_dim`` defaults to
    ``dim // factor**2`` (the conv then only adds locality); a larger ``out_dim`` expands the
    embedding locally. ``factor=1`` is just the conv. The generator's RGB head is
    ``PixelShuffleUpsample(d, 3, factor=patch)`` followed by ``tokens_to_map``.
    """

    def __init__(self, dim: int, out_dim: int | None = None, factor: int = 2, kernel_size: int = 3):
        super().__init__()
        if dim % (factor * factor):
            raise ValueError(f"dim {dim} is not divisible by factor**2 = {factor * factor}")
        self.factor = factor
        shuffled = dim // (factor * factor)
        self.conv = nn.Conv2d(shuffled, out_dim or shuffled, kernel_size, padding=kernel_size // 2)

    def forward(self, x: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """``x``: ``(B, N, dim)`` on the grid ``size`` (default square); returns tokens."""
        x = F.pixel_shuffle(tokens_to_map(x, _grid(x.shape[1], size)), self.factor)
        return map_to_tokens(self.conv(x))


def space_to_depth(x: torch.Tensor, block: int) -> torch.Tensor:
    """``(B, C, H, W)`` -> ``(B, C*block**2, H/block, W/block)``; the inverse of
    ``F.pixel_shuffle(., block)`` (channel ``c*block**2 + i*block + j`` holds pixel ``(i, j)`` of
    each block: PyTorch's ``pixel_unshuffle`` order, not TensorFlow's channels-last one)."""
    return F.pixel_unshuffle(x, block)


class SpaceToDepth(nn.Module):
    """Module form of :func:`space_to_depth` (the discriminator's "D-STD", spec adatgan §6)."""

    def __init__(self, block: int = 2):
        super().__init__()
        self.block = block

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return space_to_depth(x, self.block)

    def extra_repr(self) -> str:
        return f"block={self.block}"


class FastGANDownBlock(nn.Module):
    """FastGAN residual down block (spec adatgan §6.2): ``(B, cin, H, W) -> (B, cout, H/f, W/f)``.

    ``out = (main(x) + direct(x)) / 2`` with
    main = Conv3x3 s2 -> BN -> LReLU(0.2) -> Conv3x3 -> BN -> LReLU(0.2) and
    direct = AvgPool2 -> Conv1x1 -> BN -> LReLU(0.2). No spectral norm. ``batch_norm=False``
    gives the BN-free Conv-D of the thesis ablations (the convs then get biases). ``factor``
    f > 2 makes the strided conv f x f with stride f and the pool f x f (the thesis's FFHQ D:
    one block "of kernel size 8").
    """

    def __init__(self, cin: int, cout: int, batch_norm: bool = True, factor: int = 2):
        super().__init__()

        def norm_act() -> list[nn.Module]:
            bn = [nn.BatchNorm2d(cout)] if batch_norm else []
            return [*bn, nn.LeakyReLU(0.2)]

        bias = not batch_norm
        self.main = nn.Sequential(
            nn.Conv2d(
                cin, cout, max(3, factor), stride=factor, padding=int(factor == 2), bias=bias
            ),
            *norm_act(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=bias),
            *norm_act(),
        )
        self.direct = nn.Sequential(
            nn.AvgPool2d(factor), nn.Conv2d(cin, cout, 1, bias=bias), *norm_act()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.direct(x)) / 2


def _mlp(dim: int, hidden: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))


class ModulatedAdatBlock(nn.Module):
    """Generator block (thesis eqs 4.3-4.4): ``h = x + Adat(SLN(x, c)); out = MLP(SLN(h, c))``,
    no residual around the MLP. ``x (B, N, dim)``, ``cond (B, cond_dim)``."""

    def __init__(self, dim: int, cond_dim: int, heads: int = 4, mlp_dim: int = 512):
        super().__init__()
        self.norm1 = SelfModulatedLayerNorm(dim, cond_dim)
        self.attn = AdditiveAttention(dim, heads)
        self.norm2 = SelfModulatedLayerNorm(dim, cond_dim)
        self.mlp = _mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> (tokens (B, N, dim), alpha (B, heads, N))."""
        y, alpha = self.attn(self.norm1(x, cond), return_maps=True)
        return self.mlp(self.norm2(x + y, cond)), alpha


class AdatBlock(nn.Module):
    """Discriminator block: pre-LN transformer with Adat attention and both residuals."""

    def __init__(self, dim: int, heads: int = 4, mlp_dim: int = 512):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = AdditiveAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = _mlp(dim, mlp_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class ConditionalBatchNorm2d(nn.Module):
    """BatchNorm whose scale and shift are looked up per class (SAGAN/BigGAN's conditional BN):
    ``x (B, C, H, W)``, ``labels (B,)`` long -> ``(1 + gamma[y]) * BN(x) + beta[y]``; without
    classes (``num_classes=0``) it is a plain affine BatchNorm."""

    def __init__(self, channels: int, num_classes: int = 0):
        super().__init__()
        self.norm = nn.BatchNorm2d(channels, affine=not num_classes)
        self.embed = nn.Embedding(num_classes, 2 * channels) if num_classes else None
        if self.embed is not None:
            nn.init.zeros_(self.embed.weight)

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.norm(x)
        if self.embed is None:
            return x
        gamma, beta = self.embed(labels)[:, :, None, None].chunk(2, dim=1)
        return (1 + gamma) * x + beta


class Projection(nn.Module):
    """The class term of a projection discriminator (Miyato & Koyama 2018):
    ``features (B, dim)``, ``labels (B,)`` -> ``(B, 1)`` = ``<embed(y), features>``; added to the
    unconditional logit ``psi(features)``."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.embed = nn.Embedding(num_classes, dim)
        nn.init.normal_(self.embed.weight, std=dim**-0.5)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return (self.embed(labels) * features).sum(1, keepdim=True)


class _Scale(nn.Module):
    def __init__(self, scale: float):
        super().__init__()
        self.register_buffer("scale", torch.tensor(float(scale)))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.scale


def spectral_norm(module: nn.Module, improved: bool = False) -> nn.Module:
    """Spectral normalisation of ``module.weight`` (one power iteration per training forward):
    ``W / sigma(W)``; ``improved`` is ViTGAN's ISN, ``sigma(W_init) * W / sigma(W)``, which keeps
    each layer's initial scale. Adds no trainable parameters."""
    from torch.nn.utils import parametrize
    from torch.nn.utils.parametrizations import spectral_norm as _sn

    sigma = torch.linalg.matrix_norm(module.weight.detach().flatten(1), 2) if improved else None
    module = _sn(module)
    if improved:
        parametrize.register_parametrization(module, "weight", _Scale(sigma))
    return module
