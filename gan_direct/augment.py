"""DiffAugment (Zhao et al. 2020): differentiable augmentations applied to real *and* fake images
before the discriminator (spec adatgan §7.4).

Images are ``(B, C, H, W)`` in [-1, 1]; each sample draws its own parameters. Policies:

- ``color``: brightness ``+U(-0.5, 0.5)``, then saturation ``x(U(0, 2))`` around the per-pixel
  channel mean, then contrast ``x(U(0.5, 1.5))`` around the image mean;
- ``translation``: integer shift by up to ``round(size / 8)`` pixels per axis, zero padding;
- ``cutout``: a zeroed ``size/2 x size/2`` square centred anywhere in the image (clipped at the
  border).

Values are not clamped (as in the original), so gradients reach every pixel that survives.
"""

from __future__ import annotations

import torch
from torch import nn

AUGMENTATIONS = ("color", "translation", "cutout")


def parse_policy(policy: str) -> tuple[str, ...]:
    """``"color,translation"`` -> ``("color", "translation")``; ``""`` -> ``()``."""
    names = tuple(p.strip() for p in policy.split(",") if p.strip())
    for name in names:
        if name not in AUGMENTATIONS:
            raise ValueError(
                f"unknown DiffAugment policy '{name}'; choose from {', '.join(AUGMENTATIONS)}"
            )
    return names


def _rand(x: torch.Tensor, *shape: int, generator=None) -> torch.Tensor:
    """U[0, 1) float32 of shape ``(B, *shape)`` on ``x``'s device (drawn on the generator's)."""
    device = generator.device if generator is not None else x.device
    return torch.rand(x.shape[0], *shape, generator=generator, device=device).to(x.device)


def _uniform(x: torch.Tensor, low: float, high: float, generator) -> torch.Tensor:
    """One U(low, high) value per sample, shaped ``(B, 1, 1, 1)`` to broadcast over ``x``."""
    return (low + (high - low) * _rand(x, 1, 1, 1, generator=generator)).to(x.dtype)


def _randint(x: torch.Tensor, high: torch.Tensor, generator) -> torch.Tensor:
    """``(B, 2)`` integers, column ``k`` uniform in ``[0, high[k])``."""
    return (_rand(x, 2, generator=generator) * high).long()


def color(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Random brightness, saturation and contrast, one draw of each per sample."""
    x = x + _uniform(x, -0.5, 0.5, generator)
    mean = x.mean(dim=1, keepdim=True)
    x = (x - mean) * _uniform(x, 0.0, 2.0, generator) + mean
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5, generator) + mean


def translate(x: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """Shift sample ``b`` by ``shift[b] = (dy, dx)`` pixels (down, right), filling with zeros:
    ``out[b, :, i, j] = x[b, :, i - dy, j - dx]``. ``shift``: ``(B, 2)`` integers."""
    b, _, h, w = x.shape
    rows = torch.arange(h, device=x.device) - shift[:, :1]  # (B, H) source rows
    cols = torch.arange(w, device=x.device) - shift[:, 1:]  # (B, W) source columns
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]
    rows, cols = rows.clamp(0, h - 1), cols.clamp(0, w - 1)
    batch = torch.arange(b, device=x.device)[:, None, None]
    # advanced indices around a slice: the indexed dims come first -> (B, H, W, C)
    out = x[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2)
    return out * inside[:, None].to(x.dtype)


def translation(
    x: torch.Tensor, ratio: float = 0.125, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Random shift of each sample by up to ``ratio`` of its height/width, zero-filled."""
    _, _, h, w = x.shape
    limit = torch.tensor([int(h * ratio + 0.5), int(w * ratio + 0.5)], device=x.device)
    return translate(x, _randint(x, 2 * limit + 1, generator) - limit)


def cutout(
    x: torch.Tensor, ratio: float = 0.5, generator: torch.Generator | None = None
) -> torch.Tensor:
    """Zero one random ``ratio*H x ratio*W`` square per sample (clipped at the border)."""
    _, _, h, w = x.shape
    size = torch.tensor([int(h * ratio + 0.5), int(w * ratio + 0.5)], device=x.device)
    # centre in [0, H) (or [0, H] for an even square, so both borders are reachable)
    span = torch.tensor([h, w], device=x.device) + 1 - size % 2
    start = _randint(x, span, generator) - size // 2  # (B, 2) top-left corners
    rows = torch.arange(h, device=x.device)
    cols = torch.arange(w, device=x.device)
    in_rows = (rows >= start[:, :1]) & (rows < start[:, :1] + size[0])  # (B, H)
    in_cols = (cols >= start[:, 1:]) & (cols < start[:, 1:] + size[1])  # (B, W)
    keep = ~(in_rows[:, :, None] & in_cols[:, None, :])
    return x * keep[:, None].to(x.dtype)


_FNS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(
    x: torch.Tensor,
    policy: str = "color,translation,cutout",
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Apply the comma-separated ``policy`` in order to ``x`` ``(B, C, H, W)``; same shape.

    ``generator`` (on ``x``'s device, or on the CPU) makes the draws reproducible."""
    for name in parse_policy(policy):
        x = _FNS[name](x, generator=generator)
    return x


class DiffAugment(nn.Module):
    """Module form of :func:`diff_augment`; the policy is validated at construction."""

    def __init__(self, policy: str = "color,translation,cutout"):
        super().__init__()
        self.policy = ",".join(parse_policy(policy))

    def forward(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return diff_augment(x, self.policy, generator)

    def extra_repr(self) -> str:
        return f"policy={self.policy!r}"
