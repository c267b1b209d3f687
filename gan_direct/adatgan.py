"""AdatGAN (spec ``adatgan.md`` §3-§6): an additive-attention transformer generator with pixel
shuffle + LEE between its three stages, and a FastGAN-stem + Adat-transformer discriminator.

Layer structure follows the LadaGAN code the spec reproduces the thesis's cost figures with:
the generator of ``dims=[1024, 256, 128]`` at 64x64 has about 20.2M parameters and 0.92 GMACs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from gan_direct.network import GANGenerator, GANNetwork
from shared.gan_blocks import (
    AdatBlock,
    FastGANDownBlock,
    ModulatedAdatBlock,
    PixelShuffleUpsample,
    SpaceToDepth,
    map_to_tokens,
    tokens_to_map,
)

Maps = list[torch.Tensor]


@dataclass
class AdatGeneratorConfig:
    """z -> Linear -> 8x8 tokens -> 3 modulated Adat blocks with pixel shuffle + LEE between
    them -> 32x32 tokens -> RGB at pixel level or as ``resolution/32`` sized patches."""

    resolution: int = 32  # 32 (pixels), 64 (2x2 patches) or 128 (4x4 patches)
    z_dim: int = 128
    dims: list[int] = field(default_factory=lambda: [1024, 256, 128])  # at 8x8, 16x16, 32x32
    heads: int = 4
    mlp_dim: int = 512
    num_classes: int = 0  # > 0: SLN conditioned on [z, class embedding]
    channels: int = 3  # image channels


@dataclass
class AdatDiscriminatorConfig:
    """Conv stem (3x3 conv, FastGAN down blocks) -> 16x16 tokens -> Adat block (MLP residual)
    -> [space-to-depth] -> convs -> logit map. ``attention=False, batch_norm=False`` is the
    thesis's Conv-D baseline."""

    resolution: int = 32
    stem: list[int] = field(default_factory=lambda: [128, 256])  # stem input conv, blocks
    down_factor: int = 2  # per FastGAN block; 8 = one block with an 8x8 stride-8 conv (FFHQ)
    heads: int = 4
    mlp_dim: int = 512
    attention: bool = True
    batch_norm: bool = True
    space_to_depth: bool = True  # "D-STD"; off when the transformer dim is 512
    out_dims: list[int] = field(default_factory=lambda: [512, 1024])
    channels: int = 3  # image channels


class AdatGenerator(GANGenerator):
    """``forward(z (B, z_dim), labels=None) -> images (B, channels, resolution, resolution)``.

    Unbounded output (no tanh, as in LadaGAN); train against images in [-1, 1] and clamp when
    saving. ``return_maps=True`` also returns the additive attention maps, one per stage:
    ``(B, heads, 8, 8)``, ``(B, heads, 16, 16)``, ``(B, heads, 32, 32)``.
    Keyword arguments are the fields of :class:`AdatGeneratorConfig`."""

    model_type = "adatgan-generator"
    spec_class = AdatGeneratorConfig
    attention_grids = (8, 16, 32)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        cfg = self.spec
        if len(cfg.dims) != 3:
            raise ValueError(f"dims needs 3 stage widths (8x8, 16x16, 32x32), got {cfg.dims}")
        if cfg.resolution % 32 or cfg.resolution < 32:
            raise ValueError(f"resolution {cfg.resolution} is not a multiple of 32")
        self.z_dim, self.patch = cfg.z_dim, cfg.resolution // 32
        self.num_classes = cfg.num_classes
        cond_dim = cfg.z_dim * (2 if cfg.num_classes else 1)
        self.class_embed = nn.Embedding(cfg.num_classes, cfg.z_dim) if cfg.num_classes else None
        d0, d1, d2 = cfg.dims
        self.to_tokens = nn.Linear(cfg.z_dim, 64 * d0, bias=False)
        self.pos = nn.ParameterList(
            nn.Parameter(torch.randn(g * g, d) * 0.02)
            for g, d in zip(self.attention_grids, cfg.dims, strict=True)
        )
        self.blocks = nn.ModuleList(
            ModulatedAdatBlock(d, cond_dim, cfg.heads, cfg.mlp_dim) for d in cfg.dims
        )
        self.upsample = nn.ModuleList([PixelShuffleUpsample(d0, d1), PixelShuffleUpsample(d1, d2)])
        self.to_rgb = PixelShuffleUpsample(d2, cfg.channels, factor=self.patch)

    def forward(
        self, z: torch.Tensor, labels: torch.Tensor | None = None, return_maps: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, Maps]:
        cond = z if self.class_embed is None else torch.cat([z, self.class_embed(labels)], -1)
        x = self.to_tokens(z).view(z.shape[0], 64, -1)
        maps = []
        stages = zip(self.blocks, self.pos, self.attention_grids, strict=True)
        for i, (block, pos, grid) in enumerate(stages):
            if i:
                x = self.upsample[i - 1](x, (grid // 2, grid // 2))
            x, alpha = block(x + pos, cond)
            maps.append(alpha.unflatten(-1, (grid, grid)))
        images = tokens_to_map(self.to_rgb(x, (32, 32)), (32 * self.patch, 32 * self.patch))
        return (images, maps) if return_maps else images


class AdatDiscriminator(GANNetwork):
    """``forward(images (B, channels, R, R)) -> logits (B, L)``: one logit per cell of a small
    map (25 at the defaults; average them in the loss, PatchGAN-like).

    Stem: Conv3x3 (no bias) + LReLU to ``stem[0]``, then FastGAN down blocks through
    ``stem[1:]`` down to 16x16 = 256 tokens; learned position embedding; an Adat block
    (MLP residual); head: [space-to-depth 2] -> Conv3x3 -> ``out_dims[0]`` -> Conv1x1 ->
    ``out_dims[1]`` -> LReLU -> Conv4x4 valid -> 1.
    Keyword arguments are the fields of :class:`AdatDiscriminatorConfig`."""

    model_type = "adatgan-discriminator"
    spec_class = AdatDiscriminatorConfig

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        cfg = self.spec
        blocks = len(cfg.stem) - 1
        if cfg.resolution != 16 * cfg.down_factor**blocks:
            raise ValueError(
                f"stem {cfg.stem} with down_factor {cfg.down_factor} take "
                f"{cfg.resolution}px to {cfg.resolution / cfg.down_factor**blocks:g}px, not 16px"
            )
        dim = cfg.stem[-1]
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.channels, cfg.stem[0], 3, padding=1, bias=False),
            nn.LeakyReLU(0.2),
            *(
                FastGANDownBlock(cin, cout, cfg.batch_norm, cfg.down_factor)
                for cin, cout in zip(cfg.stem, cfg.stem[1:], strict=False)
            ),
        )
        self.pos = nn.Parameter(torch.randn(256, dim) * 0.02) if cfg.attention else None
        self.block = AdatBlock(dim, cfg.heads, cfg.mlp_dim) if cfg.attention else None
        std = 4 if cfg.space_to_depth else 1
        self.head = nn.Sequential(
            SpaceToDepth(2) if cfg.space_to_depth else nn.Identity(),
            nn.Conv2d(dim * std, cfg.out_dims[0], 3, padding=1),
            nn.Conv2d(cfg.out_dims[0], cfg.out_dims[1], 1, bias=False),
            nn.LeakyReLU(0.2),
            nn.Conv2d(cfg.out_dims[1], 1, 4, bias=False),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self.stem(images)
        if self.block is not None:
            x = tokens_to_map(self.block(map_to_tokens(x) + self.pos), x.shape[-2:])
        return self.head(x).flatten(1)
