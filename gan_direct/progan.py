"""ProGAN (Karras et al. 2018, "Progressive Growing of GANs"): a generator and a discriminator
that grow together from 4x4 by doubling the resolution, with a fade-in of each new level.

Both networks are built at full size; buffers ``stage`` (long scalar) and ``alpha`` (float
scalar) select the current resolution ``4 * 2**stage`` and the fade-in weight. They are in the
state dict, so a checkpoint or an exported model remembers its growth. After construction a
network is at full resolution with ``alpha = 1``; :meth:`grow` moves it. All layers stay
trainable; layers above the current stage (and, at ``alpha = 1``, the previous level's
toRGB / fromRGB) get no gradient, so DDP needs ``find_unused_parameters=True``.

- Generator: PixelNorm(z) [cat PixelNorm(label embedding)] -> EqualLinear to ``C * 16`` ->
  4x4 -> LReLU -> PN -> conv3x3 -> LReLU -> PN; each higher level: nearest x2 -> conv3x3 ->
  LReLU -> PN -> conv3x3 -> LReLU -> PN; linear 1x1 toRGB per level (no output activation).
  Fade-in: ``(1 - alpha) * up(toRGB_prev(h_prev)) + alpha * toRGB_cur(block_cur(h_prev))``
  (the block starts with the upsampling).
- Discriminator (mirror): fromRGB 1x1 + LReLU per level; blocks conv3x3 -> LReLU -> conv3x3 ->
  LReLU -> avgpool 2; fade-in ``(1 - alpha) * fromRGB_prev(avgpool(x)) + alpha *
  block_cur(fromRGB_cur(x))``; at 4x4 MinibatchStd -> conv3x3 -> LReLU -> conv 4x4 valid ->
  LReLU -> EqualLinear -> 1 logit, plus a projection term when class-conditional.

Equalised learning rate everywhere (``shared.equalized``, gain ``1/sqrt(fan_in)`` with the
``sqrt(2)`` He gain on the LeakyReLU(0.2)). Channels at resolution r are
``min(max_channels, channel_base // r)``; the defaults (4096, 256) give 256 channels up to 16x16,
128 at 32x32 and 64 at 64x64: about 4.56M parameters in G and 4.56M in D at 64x64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan_direct.network import GANGenerator, GANNetwork
from shared.equalized import EqualConv2d, EqualLinear, MinibatchStd, PixelNorm, ScaledLeakyReLU
from shared.gan_blocks import Projection


def resolution_levels(resolution: int) -> int:
    """``log2(resolution) - 2``, the last stage; ValueError unless a power of two >= 8."""
    if resolution < 8 or resolution & (resolution - 1):
        raise ValueError(f"resolution must be a power of two >= 8, got {resolution}")
    return int(math.log2(resolution)) - 2


def channels_at(r: int, channel_base: int, max_channels: int) -> int:
    """Feature channels at resolution ``r``: ``min(max_channels, channel_base // r)``, >= 1."""
    return max(1, min(max_channels, channel_base // r))


@dataclass
class ProGANGeneratorSpec:
    resolution: int = 64
    channels: int = 3
    z_dim: int = 256
    channel_base: int = 4096
    max_channels: int = 256
    num_classes: int = 0  # > 0: a z_dim label embedding, pixel-normalised, concatenated to z


@dataclass
class ProGANDiscriminatorSpec:
    resolution: int = 64
    channels: int = 3
    channel_base: int = 4096
    max_channels: int = 256
    num_classes: int = 0  # > 0: projection term on the features before the last linear


class _Growing(GANNetwork):
    """``stage`` / ``alpha`` buffers and :meth:`grow`, shared by G and D."""

    grows = True
    max_stage: int

    def _init_growth(self) -> None:
        self.register_buffer("stage", torch.tensor(self.max_stage, dtype=torch.long))
        self.register_buffer("alpha", torch.tensor(1.0))

    def grow(self, stage: int, alpha: float = 1.0) -> _Growing:
        """Set the current stage (``0 .. log2(resolution) - 2``) and fade-in ``alpha`` in [0, 1];
        alpha is ignored at stage 0. Returns self."""
        if not 0 <= stage <= self.max_stage:
            raise ValueError(f"stage {stage} is outside 0..{self.max_stage}")
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha {alpha} is outside [0, 1]")
        self.stage.fill_(int(stage))
        self.alpha.fill_(float(alpha))
        return self

    def growth(self) -> tuple[int, float]:
        """The current ``(stage, alpha)`` as Python numbers."""
        return int(self.stage), float(self.alpha)

    @property
    def current_resolution(self) -> int:
        return 4 * 2 ** int(self.stage)


class ProGANGenerator(_Growing, GANGenerator):
    """``forward(z (B, z_dim), labels=None) -> images (B, channels, r, r)``, r the current
    resolution ``4 * 2**stage``; linear output. ``labels (B,)`` are required when
    ``num_classes > 0`` (ignored otherwise). Keyword arguments: :class:`ProGANGeneratorSpec`."""

    model_type = "progan-generator"
    spec_class = ProGANGeneratorSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.max_stage = resolution_levels(spec.resolution)
        self.z_dim, self.num_classes = spec.z_dim, spec.num_classes
        self.resolution, self.channels = spec.resolution, spec.channels
        ch = [
            channels_at(4 * 2**s, spec.channel_base, spec.max_channels)
            for s in range(self.max_stage + 1)
        ]
        self.pn = PixelNorm()
        self.embed = nn.Embedding(spec.num_classes, spec.z_dim) if spec.num_classes else None
        z_in = spec.z_dim * (2 if spec.num_classes else 1)
        self.input = EqualLinear(z_in, ch[0] * 16)
        first = nn.Sequential(
            ScaledLeakyReLU(),
            PixelNorm(),
            EqualConv2d(ch[0], ch[0], 3, padding=1),
            ScaledLeakyReLU(),
            PixelNorm(),
        )
        self.blocks = nn.ModuleList([first])
        for s in range(1, self.max_stage + 1):
            self.blocks.append(
                nn.Sequential(
                    nn.Upsample(scale_factor=2, mode="nearest"),
                    EqualConv2d(ch[s - 1], ch[s], 3, padding=1),
                    ScaledLeakyReLU(),
                    PixelNorm(),
                    EqualConv2d(ch[s], ch[s], 3, padding=1),
                    ScaledLeakyReLU(),
                    PixelNorm(),
                )
            )
        self.to_rgb = nn.ModuleList(EqualConv2d(c, spec.channels, 1) for c in ch)
        self._init_growth()

    def features(self, z: torch.Tensor, labels: torch.Tensor | None, stage: int) -> torch.Tensor:
        """The feature map ``h`` of level ``stage`` (before its toRGB)."""
        x = self.pn(z)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            x = torch.cat([x, self.pn(self.embed(labels))], 1)
        h = self.blocks[0](self.input(x).view(len(z), -1, 4, 4))
        for block in self.blocks[1 : stage + 1]:
            h = block(h)
        return h

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        stage, alpha = self.growth()
        if stage == 0 or alpha >= 1:
            return self.to_rgb[stage](self.features(z, labels, stage))
        h_prev = self.features(z, labels, stage - 1)
        skip = F.interpolate(self.to_rgb[stage - 1](h_prev), scale_factor=2, mode="nearest")
        new = self.to_rgb[stage](self.blocks[stage](h_prev))
        return (1 - alpha) * skip + alpha * new


class ProGANDiscriminator(_Growing):
    """``forward(images (B, channels, r, r), labels=None) -> logits (B, 1)``, r the current
    resolution ``4 * 2**stage`` (ValueError otherwise). ``labels (B,)`` are required when
    ``num_classes > 0``. Keyword arguments: :class:`ProGANDiscriminatorSpec`."""

    model_type = "progan-discriminator"
    spec_class = ProGANDiscriminatorSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.max_stage = resolution_levels(spec.resolution)
        self.num_classes = spec.num_classes
        self.resolution, self.channels = spec.resolution, spec.channels
        ch = [
            channels_at(4 * 2**s, spec.channel_base, spec.max_channels)
            for s in range(self.max_stage + 1)
        ]
        self.from_rgb = nn.ModuleList(
            nn.Sequential(EqualConv2d(spec.channels, c, 1), ScaledLeakyReLU()) for c in ch
        )
        # blocks[s] takes level s (ch[s], 4 * 2**s px) to level s - 1; blocks[0] is the 4x4 head
        last = nn.Sequential(
            MinibatchStd(),
            EqualConv2d(ch[0] + 1, ch[0], 3, padding=1),
            ScaledLeakyReLU(),
            EqualConv2d(ch[0], ch[0], 4),
            ScaledLeakyReLU(),
            nn.Flatten(),
        )
        self.blocks = nn.ModuleList([last])
        for s in range(1, self.max_stage + 1):
            self.blocks.append(
                nn.Sequential(
                    EqualConv2d(ch[s], ch[s], 3, padding=1),
                    ScaledLeakyReLU(),
                    EqualConv2d(ch[s], ch[s - 1], 3, padding=1),
                    ScaledLeakyReLU(),
                    nn.AvgPool2d(2),
                )
            )
        self.head = EqualLinear(ch[0], 1)
        self.project = Projection(spec.num_classes, ch[0]) if spec.num_classes else None
        self._init_growth()

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        stage, alpha = self.growth()
        r = 4 * 2**stage
        if images.ndim != 4 or tuple(images.shape[1:]) != (self.channels, r, r):
            raise ValueError(
                f"expected images of shape (B, {self.channels}, {r}, {r}) at stage {stage}, "
                f"got {tuple(images.shape)}"
            )
        x = self.from_rgb[stage](images)
        for s in range(stage, -1, -1):
            x = self.blocks[s](x)
            if s == stage and s > 0 and alpha < 1:  # fade-in of the newest level
                skip = self.from_rgb[stage - 1](F.avg_pool2d(images, 2))
                x = (1 - alpha) * skip + alpha * x
        out = self.head(x)
        if self.project is None:
            return out
        if labels is None:
            raise ValueError("this discriminator is class-conditional: pass labels")
        return out + self.project(x, labels)
