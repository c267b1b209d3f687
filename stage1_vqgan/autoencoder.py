"""Convolutional encoder and decoder of the VQGAN (the taming-transformers / DDPM layout).

Module names match taming's ``Encoder``/``Decoder`` so their state dicts load unchanged.
Images are (B, C, H, W); the latent grid is (B, z_channels, H/f, W/f) with f = 2**(len(ch_mult)-1).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(num_groups=32, num_channels=channels, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    """GN -> swish -> conv3x3 -> GN -> swish -> dropout -> conv3x3, plus a 1x1 shortcut when the
    channel count changes."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0):
        super().__init__()
        self.norm1 = group_norm(in_channels)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.norm2 = group_norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if in_channels != out_channels:
            self.nin_shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        skip = self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x
        return skip + h


class AttnBlock(nn.Module):
    """Single-head spatial self-attention over all H*W positions, with a residual."""

    def __init__(self, channels: int):
        super().__init__()
        self.norm = group_norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).reshape(b, 1, c, h * w).transpose(-1, -2) for m in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v).transpose(-1, -2).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Asymmetric zero pad (right, bottom) then a stride-2 3x3 conv: H -> H/2."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class Upsample(nn.Module):
    """Nearest x2 then a 3x3 conv: H -> 2H."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Level(nn.Module):
    """One resolution level: ResnetBlocks, each followed by attention when ``attn``."""

    def __init__(self, in_ch: int, out_ch: int, num_blocks: int, attn: bool, dropout: float):
        super().__init__()
        self.block = nn.ModuleList(
            ResnetBlock(in_ch if i == 0 else out_ch, out_ch, dropout) for i in range(num_blocks)
        )
        self.attn = nn.ModuleList(AttnBlock(out_ch) for _ in range(num_blocks) if attn)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.block):
            h = block(h)
            if len(self.attn):
                h = self.attn[i](h)
        return h


class Middle(nn.Module):
    def __init__(self, channels: int, dropout: float):
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(h)))


@dataclass(frozen=True)
class AutoencoderLayout:
    """What encoder and decoder share (taming's ``ddconfig`` less the image channels): base width
    ``ch`` times ``ch_mult`` per level (f = 2**(len(ch_mult)-1)), ``num_res_blocks`` per level
    (the decoder one more), attention at the levels whose side is in ``attn_resolutions`` for a
    ``resolution``-sized input, ``z_channels`` latent channels."""

    ch: int
    ch_mult: tuple[int, ...]
    num_res_blocks: int
    attn_resolutions: tuple[int, ...]
    resolution: int
    z_channels: int
    dropout: float = 0.0


class Tower(nn.Module):
    """Encoder or decoder: ends in :meth:`head` (GN -> swish -> conv3x3, ``norm_out`` and
    ``conv_out``)."""

    norm_out: nn.GroupNorm
    conv_out: nn.Conv2d

    def head(self, h: torch.Tensor) -> torch.Tensor:
        return self.conv_out(F.silu(self.norm_out(h)))


class Encoder(Tower):
    """(B, in_channels, H, W) -> (B, z_channels, H/f, W/f)."""

    def __init__(self, layout: AutoencoderLayout, in_channels: int):
        super().__init__()
        ch, ch_mult, dropout = layout.ch, layout.ch_mult, layout.dropout
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        self.down = nn.ModuleList()
        res, block_in = layout.resolution, ch
        for i, mult in enumerate(ch_mult):
            attn = res in layout.attn_resolutions
            level = Level(block_in, ch * mult, layout.num_res_blocks, attn, dropout)
            block_in = ch * mult
            if i != len(ch_mult) - 1:
                level.downsample = Downsample(block_in)
                res //= 2
            self.down.append(level)
        self.mid = Middle(block_in, dropout)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, layout.z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
            if hasattr(level, "downsample"):
                h = level.downsample(h)
        return self.head(self.mid(h))


class Decoder(Tower):
    """(B, z_channels, h, w) -> (B, out_channels, h*f, w*f); ``conv_out`` is the last layer."""

    def __init__(self, layout: AutoencoderLayout, out_channels: int):
        super().__init__()
        ch, ch_mult, dropout = layout.ch, layout.ch_mult, layout.dropout
        block_in = ch * ch_mult[-1]
        res = layout.resolution // 2 ** (len(ch_mult) - 1)
        self.conv_in = nn.Conv2d(layout.z_channels, block_in, 3, padding=1)
        self.mid = Middle(block_in, dropout)
        levels = []
        for i in reversed(range(len(ch_mult))):
            attn = res in layout.attn_resolutions
            level = Level(block_in, ch * ch_mult[i], layout.num_res_blocks + 1, attn, dropout)
            block_in = ch * ch_mult[i]
            if i != 0:
                level.upsample = Upsample(block_in)
                res *= 2
            levels.insert(0, level)
        self.up = nn.ModuleList(levels)
        self.norm_out = group_norm(block_in)
        self.conv_out = nn.Conv2d(block_in, out_channels, 3, padding=1)

    def stages(self) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """The forward pass as a chain of single-input steps, coarse to fine (conv_in, the
        middle, each ResnetBlock/attention/upsample, the output head): the points where
        gradient checkpointing can cut it."""
        steps: list[Callable[[torch.Tensor], torch.Tensor]] = [self.conv_in, self.mid]
        for level in reversed(self.up):
            for i, block in enumerate(level.block):
                steps += [block, level.attn[i]] if len(level.attn) else [block]
            if hasattr(level, "upsample"):
                steps.append(level.upsample)
        steps.append(self.head)
        return steps

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        for step in self.stages():
            z = step(z)
        return z
