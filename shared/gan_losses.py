"""Adversarial losses on discriminator logits (any shape; patch maps are averaged).

``kind``: ``hinge`` (D: hinge, G: -D), ``vanilla`` (D: softplus/BCE, G: -D, as taming does) or
``non_saturating`` (D: softplus/BCE, G: softplus(-D))."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GAN_LOSSES = ("hinge", "vanilla", "non_saturating")


def discriminator_loss(kind: str, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """0.5 * (loss on real logits + loss on fake logits)."""
    if kind == "hinge":
        return 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    if kind in ("vanilla", "non_saturating"):
        return 0.5 * (F.softplus(-real).mean() + F.softplus(fake).mean())
    raise ValueError(f"unknown GAN loss '{kind}'; choose one of {', '.join(GAN_LOSSES)}")


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    if kind in ("hinge", "vanilla"):
        return -fake.mean()
    if kind == "non_saturating":
        return F.softplus(-fake).mean()
    raise ValueError(f"unknown GAN loss '{kind}'; choose one of {', '.join(GAN_LOSSES)}")


class LeCam(nn.Module):
    """LeCam regulariser: keeps D's outputs near EMAs of its opposite-class outputs,
    ``mean(relu(D(real) - ema_fake)^2) + mean(relu(ema_real - D(fake))^2)``."""

    def __init__(self, decay: float = 0.99):
        super().__init__()
        self.decay = decay
        self.register_buffer("ema_real", torch.zeros(()))
        self.register_buffer("ema_fake", torch.zeros(()))

    def forward(self, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.ema_real.lerp_(real.mean().float(), 1 - self.decay)
            self.ema_fake.lerp_(fake.mean().float(), 1 - self.decay)
        return (
            F.relu(real - self.ema_fake).pow(2).mean() + F.relu(self.ema_real - fake).pow(2).mean()
        )
