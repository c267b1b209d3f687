"""Adversarial losses on discriminator logits (any shape; patch maps are averaged).

``kind``: ``hinge`` (D: hinge, G: -D), ``vanilla`` (D: softplus/BCE, G: -D, as taming does) or
``non_saturating`` (D: softplus/BCE, G: softplus(-D)). Regularisers: :func:`r1_penalty`,
:func:`bcr_penalty` and :class:`LeCam`."""

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


def r1_penalty(real_logits: torch.Tensor, real_images: torch.Tensor) -> torch.Tensor:
    """R1 (Mescheder et al. 2018): ``mean_b ||grad_x D(x_b)||^2``, summed over pixels.

    ``real_images`` must require grad and ``real_logits`` (any shape, batch first) must be computed
    from them; a patch map counts as ``D(x_b) = sum`` of the sample's logits (StyleGAN2, LadaGAN).
    The graph is kept, so the penalty trains D. Add ``gamma / 2 * r1_penalty(...)`` to D's loss
    (spec adatgan §7.2; LadaGAN folds the 1/2 into its weight). With BatchNorm in train mode the
    samples interact, and each gradient also holds the other samples' terms, as in LadaGAN."""
    if not real_images.requires_grad:
        raise ValueError("r1_penalty needs real_images.requires_grad_(True) before D is applied")
    (grad,) = torch.autograd.grad(real_logits.sum(), real_images, create_graph=True)
    return grad.float().square().flatten(1).sum(1).mean()


def bcr_penalty(
    real: torch.Tensor,
    real_augmented: torch.Tensor,
    fake: torch.Tensor,
    fake_augmented: torch.Tensor,
    real_weight: float = 1.0,
    fake_weight: float = 1.0,
) -> torch.Tensor:
    """Balanced consistency regularisation (bCR, Zhao et al. 2021), on D's logits:
    ``real_weight * mean((D(x) - D(T(x)))^2) + fake_weight * mean((D(G(z)) - D(T(G(z))))^2)``.

    The means run over the batch and any patch logits (an MSE; for one logit per image this is
    ``E||D(x) - D(T(x))||^2``). Gradients flow into both logits of each pair; feed D detached
    ``G(z)`` and ``T(.)`` images so that only D is regularised. Weights: 1.0 in the thesis (spec
    adatgan §7.3), 10 in the bCR paper; ``fake_weight=0`` is plain CR."""
    real_term = (real.float() - real_augmented.float()).square().mean()
    fake_term = (fake.float() - fake_augmented.float()).square().mean()
    return real_weight * real_term + fake_weight * fake_term
