"""A StyleGAN2-style generator and a residual discriminator (Karras et al. 2019, 2020).

Generator: a mapping network ``f: Z -> W`` (PixelNorm(z) [cat PixelNorm(label embedding)] ->
``mapping_layers`` EqualLinear with lr_mul 0.01 and LeakyReLU 0.2) and a synthesis network
from a learned constant 4x4: one modulated 3x3 conv at 4x4, then per resolution two (the first
upsampling bilinearly x2), each followed by per-pixel noise (one channel times a learned
strength initialised to 0), a bias and LeakyReLU(0.2) * sqrt(2). Modulated convolutions scale
the weight's input channels per sample by ``affine(w)`` (bias init 1) and demodulate each
output channel by ``1 / sqrt(sum w^2 + 1e-8)``, run as one grouped conv over the batch. Skip
architecture: ``rgb = upsample(rgb) + toRGB(h)`` with modulated 1x1 toRGB (no demodulation).

Styles: ``num_ws = 2 * log2(resolution) - 2`` vectors, one per conv, each toRGB sharing its
index with the next level's first conv (StyleGAN2's indexing). In training mode, with
probability ``mixing_prob`` a second z is mapped and used from a random crossover index on
(style mixing), and the buffer ``w_avg`` follows the batch-mean w with decay 0.995. Truncation
``w_avg + psi * (w - w_avg)`` applies at any ``psi != 1``.

Noise: ``noise_mode`` of :meth:`StyleGANGenerator.forward` / ``synthesis`` is ``"random"``
(fresh Gaussian noise each call, the default), ``"const"`` (the per-layer ``noise_const``
buffers, drawn once at construction and stored in the state dict: deterministic output) or
``"none"``.

Discriminator (residual): fromRGB 1x1 -> blocks down to 4x4 (conv3x3, LReLU, conv3x3, LReLU,
avgpool 2, plus a bias-free 1x1 conv of the avg-pooled input, summed and divided by sqrt(2)) ->
MinibatchStd -> conv3x3 -> LReLU -> flatten -> EqualLinear -> LReLU -> EqualLinear -> 1 logit,
plus a projection term when class-conditional. Works at any power-of-two resolution >= 8.

Channels at resolution r are ``min(max_channels, channel_base // r)``; the defaults (8192, 256)
give 256 channels up to 32x32 and 128 at 64x64: about 6.0M parameters in G and 5.9M in D at
64x64.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from gan_direct.network import GANGenerator, GANNetwork
from gan_direct.progan import channels_at, resolution_levels
from shared.equalized import EqualConv2d, EqualLinear, MinibatchStd, PixelNorm, ScaledLeakyReLU
from shared.gan_blocks import Projection

NOISE_MODES = ("random", "const", "none")


@dataclass
class StyleGANGeneratorSpec:
    resolution: int = 64
    channels: int = 3
    z_dim: int = 256
    w_dim: int = 256
    mapping_layers: int = 8
    channel_base: int = 8192
    max_channels: int = 256
    mixing_prob: float = 0.9  # style-mixing probability in training mode
    num_classes: int = 0  # > 0: a w_dim label embedding, pixel-normalised, concatenated to z

    def __post_init__(self):
        resolution_levels(self.resolution)
        if self.mapping_layers < 1:
            raise ValueError(f"mapping_layers must be >= 1, got {self.mapping_layers}")
        if not 0.0 <= self.mixing_prob <= 1.0:
            raise ValueError(f"mixing_prob {self.mixing_prob} is outside [0, 1]")


@dataclass
class StyleGANDiscriminatorSpec:
    resolution: int = 64
    channels: int = 3
    channel_base: int = 8192
    max_channels: int = 256
    num_classes: int = 0  # > 0: projection term on the features before the last linear

    def __post_init__(self):
        resolution_levels(self.resolution)


class ModulatedConv2d(nn.Module):
    """``x (B, cin, H, W), w (B, w_dim) -> (B, cout, H', W')`` (``H' = 2H`` with ``upsample``:
    bilinear x2 before the conv). The equalised weight is scaled per sample and input channel
    by ``affine(w)`` and, with ``demodulate``, each output channel renormalised to unit norm."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int,
        w_dim: int,
        demodulate: bool = True,
        upsample: bool = False,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.scale = 1 / math.sqrt(cin * kernel * kernel)
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)
        self.demodulate, self.upsample = demodulate, upsample

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        b, cin = x.shape[:2]
        style = self.affine(w) * self.scale  # (B, cin)
        weight = self.weight.unsqueeze(0) * style.view(b, 1, cin, 1, 1)  # (B, cout, cin, k, k)
        if self.demodulate:
            weight = weight * torch.rsqrt(weight.square().sum([2, 3, 4], keepdim=True) + 1e-8)
        if self.upsample:
            x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        k = weight.shape[-1]
        out = F.conv2d(
            x.reshape(1, b * cin, *x.shape[-2:]),
            weight.reshape(-1, cin, k, k),
            padding=k // 2,
            groups=b,
        )
        return out.view(b, -1, *out.shape[-2:])


class StyledConv(nn.Module):
    """Modulated 3x3 conv -> + strength * noise (B, 1, H, W) -> + bias -> LReLU * sqrt(2).
    ``x (B, cin, H, W), w (B, w_dim) -> (B, cout, size, size)``."""

    def __init__(self, cin: int, cout: int, w_dim: int, size: int, upsample: bool = False):
        super().__init__()
        self.conv = ModulatedConv2d(cin, cout, 3, w_dim, upsample=upsample)
        self.noise_strength = nn.Parameter(torch.zeros(()))
        self.register_buffer("noise_const", torch.randn(1, 1, size, size))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.act = ScaledLeakyReLU()

    def forward(self, x: torch.Tensor, w: torch.Tensor, noise_mode: str = "random"):
        x = self.conv(x, w)
        if noise_mode == "random":
            noise = torch.randn(x.shape[0], 1, *x.shape[-2:], device=x.device, dtype=x.dtype)
            x = x + noise * self.noise_strength
        elif noise_mode == "const":
            x = x + self.noise_const.to(x.dtype) * self.noise_strength
        return self.act(x + self.bias.view(1, -1, 1, 1))


class ToRGB(nn.Module):
    """Modulated 1x1 conv without demodulation, plus a bias: ``(B, cin, H, W) -> (B, C, H, W)``."""

    def __init__(self, cin: int, channels: int, w_dim: int):
        super().__init__()
        self.conv = ModulatedConv2d(cin, channels, 1, w_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return self.conv(x, w) + self.bias.view(1, -1, 1, 1)


class SynthesisBlock(nn.Module):
    """One resolution level above 4x4: two styled convs (the first upsamples) and a toRGB."""

    def __init__(self, cin: int, cout: int, w_dim: int, size: int, channels: int):
        super().__init__()
        self.conv0 = StyledConv(cin, cout, w_dim, size, upsample=True)
        self.conv1 = StyledConv(cout, cout, w_dim, size)
        self.to_rgb = ToRGB(cout, channels, w_dim)

    def forward(self, x, rgb, ws, noise_mode):
        """``ws (B, 3, w_dim)``: styles of conv0, conv1 and toRGB."""
        x = self.conv0(x, ws[:, 0], noise_mode)
        x = self.conv1(x, ws[:, 1], noise_mode)
        rgb = F.interpolate(rgb, scale_factor=2, mode="bilinear", align_corners=False)
        return x, rgb + self.to_rgb(x, ws[:, 2])


class MappingNetwork(nn.Module):
    """``z (B, z_dim), labels (B,) | None -> w (B, w_dim)``."""

    def __init__(self, z_dim: int, w_dim: int, layers: int, num_classes: int, lr_mul=0.01):
        super().__init__()
        self.pn = PixelNorm()
        self.embed = nn.Embedding(num_classes, w_dim) if num_classes else None
        dims = [z_dim + (w_dim if num_classes else 0)] + [w_dim] * layers
        net = []
        for cin, cout in zip(dims, dims[1:], strict=False):
            net += [EqualLinear(cin, cout, lr_mul=lr_mul), ScaledLeakyReLU()]
        self.net = nn.Sequential(*net)

    def forward(self, z: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        x = self.pn(z)
        if self.embed is not None:
            if labels is None:
                raise ValueError("this generator is class-conditional: pass labels")
            x = torch.cat([x, self.pn(self.embed(labels))], 1)
        return self.net(x)


class StyleGANGenerator(GANGenerator):
    """``forward(z (B, z_dim), labels=None, psi=1.0, noise_mode="random") -> images (B, channels,
    resolution, resolution)``, unbounded. ``styles`` gives ``ws (B, num_ws, w_dim)`` and
    ``synthesis(ws)`` the images. Keyword arguments: :class:`StyleGANGeneratorSpec`."""

    model_type = "stylegan-generator"
    spec_class = StyleGANGeneratorSpec
    psi_truncation = True
    w_avg_decay = 0.995

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.z_dim, self.w_dim, self.num_classes = spec.z_dim, spec.w_dim, spec.num_classes
        self.resolution, self.channels = spec.resolution, spec.channels
        levels = resolution_levels(spec.resolution)  # levels above 4x4
        self.num_ws = 2 * levels + 2

        def ch(r: int) -> int:
            return channels_at(r, spec.channel_base, spec.max_channels)

        self.mapping = MappingNetwork(spec.z_dim, spec.w_dim, spec.mapping_layers, spec.num_classes)
        self.const = nn.Parameter(torch.randn(ch(4), 4, 4))
        self.conv4 = StyledConv(ch(4), ch(4), spec.w_dim, 4)
        self.rgb4 = ToRGB(ch(4), spec.channels, spec.w_dim)
        self.blocks = nn.ModuleList(
            SynthesisBlock(ch(r // 2), ch(r), spec.w_dim, r, spec.channels)
            for r in (4 * 2**i for i in range(1, levels + 1))
        )
        self.register_buffer("w_avg", torch.zeros(spec.w_dim))

    def styles(
        self, z: torch.Tensor, labels: torch.Tensor | None = None, psi: float = 1.0
    ) -> torch.Tensor:
        """``ws (B, num_ws, w_dim)``. In training mode: updates ``w_avg`` and mixes styles with
        probability ``mixing_prob``. Truncated towards ``w_avg`` when ``psi != 1``."""
        w = self.mapping(z, labels)
        ws = w.unsqueeze(1).expand(-1, self.num_ws, -1)
        if self.training:
            with torch.no_grad():
                self.w_avg.copy_(w.detach().float().mean(0).lerp(self.w_avg, self.w_avg_decay))
            p = self.spec.mixing_prob
            if p > 0 and float(torch.rand(())) < p:
                cutoff = int(torch.randint(1, self.num_ws, ()))
                w2 = self.mapping(torch.randn_like(z), labels)
                ws = torch.cat(
                    [ws[:, :cutoff], w2.unsqueeze(1).expand(-1, self.num_ws - cutoff, -1)], 1
                )
        if psi != 1:
            ws = self.w_avg.to(ws.dtype).lerp(ws, psi)
        return ws

    def synthesis(self, ws: torch.Tensor, noise_mode: str = "random") -> torch.Tensor:
        """``ws (B, num_ws, w_dim) -> images (B, channels, resolution, resolution)``."""
        if noise_mode not in NOISE_MODES:
            raise ValueError(f"noise_mode must be one of {NOISE_MODES}, got {noise_mode!r}")
        if ws.shape[1] != self.num_ws:
            raise ValueError(f"expected {self.num_ws} styles, got {ws.shape[1]}")
        x = self.const.unsqueeze(0).repeat(len(ws), 1, 1, 1)
        x = self.conv4(x, ws[:, 0], noise_mode)
        rgb = self.rgb4(x, ws[:, 1])
        for i, block in enumerate(self.blocks):
            x, rgb = block(x, rgb, ws[:, 2 * i + 1 : 2 * i + 4], noise_mode)
        return rgb

    def forward(
        self,
        z: torch.Tensor,
        labels: torch.Tensor | None = None,
        psi: float = 1.0,
        noise_mode: str = "random",
    ) -> torch.Tensor:
        return self.synthesis(self.styles(z, labels, psi), noise_mode)


class ResidualDownBlock(nn.Module):
    """``(conv3x3 -> LReLU -> conv3x3 -> LReLU -> avgpool2 + conv1x1(avgpool2(x))) / sqrt(2)``:
    ``(B, cin, H, W) -> (B, cout, H/2, W/2)``."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.main = nn.Sequential(
            EqualConv2d(cin, cin, 3, padding=1),
            ScaledLeakyReLU(),
            EqualConv2d(cin, cout, 3, padding=1),
            ScaledLeakyReLU(),
            nn.AvgPool2d(2),
        )
        self.skip = EqualConv2d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.main(x) + self.skip(F.avg_pool2d(x, 2))) * (1 / math.sqrt(2))


class StyleGANDiscriminator(GANNetwork):
    """``forward(images (B, channels, resolution, resolution), labels=None) -> logits (B, 1)``.
    ``labels (B,)`` are required when ``num_classes > 0``. Keyword arguments:
    :class:`StyleGANDiscriminatorSpec`."""

    model_type = "stylegan-discriminator"
    spec_class = StyleGANDiscriminatorSpec

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        spec = self.spec
        self.num_classes = spec.num_classes
        self.resolution, self.channels = spec.resolution, spec.channels
        levels = resolution_levels(spec.resolution)

        def ch(r: int) -> int:
            return channels_at(r, spec.channel_base, spec.max_channels)

        self.from_rgb = nn.Sequential(
            EqualConv2d(spec.channels, ch(spec.resolution), 1), ScaledLeakyReLU()
        )
        self.blocks = nn.Sequential(
            *(
                ResidualDownBlock(ch(r), ch(r // 2))
                for r in (spec.resolution // 2**i for i in range(levels))
            )
        )
        c4 = ch(4)
        self.epilogue = nn.Sequential(
            MinibatchStd(),
            EqualConv2d(c4 + 1, c4, 3, padding=1),
            ScaledLeakyReLU(),
            nn.Flatten(),
            EqualLinear(c4 * 16, c4),
            ScaledLeakyReLU(),
        )
        self.head = EqualLinear(c4, 1)
        self.project = Projection(spec.num_classes, c4) if spec.num_classes else None

    def forward(self, images: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        r = self.resolution
        if images.ndim != 4 or tuple(images.shape[1:]) != (self.channels, r, r):
            raise ValueError(
                f"expected images of shape (B, {self.channels}, {r}, {r}), "
                f"got {tuple(images.shape)}"
            )
        features = self.epilogue(self.blocks(self.from_rgb(images)))
        out = self.head(features)
        if self.project is None:
            return out
        if labels is None:
            raise ValueError("this discriminator is class-conditional: pass labels")
        return out + self.project(features, labels)
