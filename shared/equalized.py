"""Equalised-learning-rate layers and the small normalisation layers of ProGAN / StyleGAN.

Equalised learning rate (Karras et al. 2018): weights are stored as ``N(0, 1) / lr_mul`` and
scaled at every call by ``lr_mul / sqrt(fan_in)`` (the StyleGAN2 convention: gain 1, no
``sqrt(2)`` in the weight scale), so every layer's effective step size is the same whatever its
fan-in. ProGAN's He gain ``sqrt(2)`` is put after the activation instead
(:class:`ScaledLeakyReLU`), as StyleGAN2 does; the two are the same function class.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class EqualLinear(nn.Module):
    """``x (..., in_features) -> (..., out_features)``: ``x @ (W * lr_mul / sqrt(in)).T + b``.

    ``W`` is stored ``N(0, 1) / lr_mul``; the bias is stored as ``bias_init / lr_mul`` and
    multiplied by ``lr_mul`` at run time, so its initial effective value is ``bias_init``."""

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        lr_mul: float = 1.0,
        bias_init: float = 0.0,
    ):
        super().__init__()
        self.in_features, self.out_features, self.lr_mul = in_features, out_features, lr_mul
        self.weight = nn.Parameter(torch.randn(out_features, in_features) / lr_mul)
        self.bias = nn.Parameter(torch.full((out_features,), bias_init / lr_mul)) if bias else None
        self.scale = lr_mul / math.sqrt(in_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        return F.linear(x, self.weight * self.scale, bias)

    def extra_repr(self) -> str:
        return f"{self.in_features}, {self.out_features}, lr_mul={self.lr_mul}"


class EqualConv2d(nn.Module):
    """``x (B, in, H, W) -> (B, out, H', W')``: a conv whose ``N(0, 1)`` weight is scaled by
    ``1 / sqrt(in * kernel * kernel)`` at every call."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        bias: bool = True,
    ):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channels, in_channels, kernel_size, kernel_size))
        self.bias = nn.Parameter(torch.zeros(out_channels)) if bias else None
        self.scale = 1 / math.sqrt(in_channels * kernel_size * kernel_size)
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, self.bias, self.stride, self.padding)

    def extra_repr(self) -> str:
        cout, cin, k, _ = self.weight.shape
        return f"{cin}, {cout}, kernel_size={k}, stride={self.stride}, padding={self.padding}"


class ScaledLeakyReLU(nn.Module):
    """``leaky_relu(x, slope) * gain``; the default gain ``sqrt(2)`` keeps unit variance after
    an equalised layer of gain 1 (any shape)."""

    def __init__(self, slope: float = 0.2, gain: float = math.sqrt(2)):
        super().__init__()
        self.slope, self.gain = slope, gain

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.slope) * self.gain


class PixelNorm(nn.Module):
    """``x / sqrt(mean(x^2 over dim 1) + eps)``: each feature vector to unit RMS.
    ``(B, C, ...) -> (B, C, ...)``."""

    def __init__(self, eps: float = 1e-8):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(1, keepdim=True) + self.eps)


class MinibatchStd(nn.Module):
    """``(B, C, H, W) -> (B, C + 1, H, W)``: appends the standard deviation of the features over
    a group of samples, averaged over C, H and W (one value per group, broadcast over H, W).

    Groups have ``G`` = the largest divisor of B not above ``group_size`` (so B need not be a
    multiple of ``group_size``; a prime B above ``group_size`` gives G = 1, a constant channel).
    Sample ``i`` falls in group ``i mod (B / G)``."""

    def __init__(self, group_size: int = 4, eps: float = 1e-8):
        super().__init__()
        self.group_size, self.eps = group_size, eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        g = min(self.group_size, b)
        while b % g:
            g -= 1
        y = x.float().view(g, b // g, c, h, w)
        y = (y.var(0, unbiased=False) + self.eps).sqrt().mean([1, 2, 3])  # (B / G,)
        y = y.to(x.dtype).view(1, b // g, 1, 1, 1).expand(g, -1, 1, h, w).reshape(b, 1, h, w)
        return torch.cat([x, y], 1)

    def extra_repr(self) -> str:
        return f"group_size={self.group_size}"
