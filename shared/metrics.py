"""Image-quality metrics on tensors in [-1, 1], (B, C, H, W)."""

from __future__ import annotations

import torch


def psnr(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Peak signal-to-noise ratio per image in dB, on the [0, 1] scale: (B,)."""
    mse = ((x.float() - y.float()) / 2).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1.0 / mse.clamp(min=1e-10))
