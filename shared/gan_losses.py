"""Adversarial losses on discriminator logits (any shape; patch maps are averaged).

``kind``: ``hinge`` (D: hinge, G: -D), ``vanilla`` (D: softplus/BCE, G: -D, as taming does),
``non_saturating`` (D: softplus/BCE, G: softplus(-D)) or ``wgan`` (critic: D(fake) - D(real),
G: -D). Regularisers: :func:`r1_penalty`, :func:`gradient_penalty` (WGAN-GP),
:func:`bcr_penalty` and :class:`LeCam`; on the generator, :func:`mode_seeking_penalty`."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

GAN_LOSSES = ("hinge", "vanilla", "non_saturating", "wgan")


def bce_with_logits(logits: torch.Tensor, target: float) -> torch.Tensor:
    """Mean binary cross-entropy of sigmoid(logits) against a constant ``target`` in [0, 1]:
    ``t * softplus(-x) + (1 - t) * softplus(x)`` (``t < 1`` on reals: label smoothing)."""
    return (target * F.softplus(-logits) + (1 - target) * F.softplus(logits)).mean()


def discriminator_loss(
    kind: str,
    real: torch.Tensor,
    fake: torch.Tensor,
    real_label: float = 1.0,
    fake_label: float = 0.0,
) -> torch.Tensor:
    """0.5 * (loss on real logits + loss on fake logits); for ``wgan`` the critic loss
    ``E[D(fake)] - E[D(real)]``. ``real_label``/``fake_label`` are the BCE targets of the
    non-saturating and vanilla losses (0.9 / 0.1: label smoothing)."""
    if kind == "hinge":
        return 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())
    if kind in ("vanilla", "non_saturating"):
        return 0.5 * (bce_with_logits(real, real_label) + bce_with_logits(fake, fake_label))
    if kind == "wgan":
        return fake.mean() - real.mean()
    raise ValueError(f"unknown GAN loss '{kind}'; choose one of {', '.join(GAN_LOSSES)}")


def generator_loss(kind: str, fake: torch.Tensor) -> torch.Tensor:
    if kind in ("hinge", "vanilla", "wgan"):
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


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, *args) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): ``E[(||grad D(x_hat)||_2 - 1)^2]`` at random points
    ``x_hat = e x + (1 - e) G(z)``, ``e ~ U[0, 1]`` per sample. ``critic(x_hat, *args)``; ``fake``
    is detached here. The graph is kept, so the penalty trains D (weight 10 in the paper)."""
    e = torch.rand(len(real), *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(x_hat, *args).sum(), x_hat, create_graph=True)
    return (grad.float().flatten(1).norm(dim=1) - 1).square().mean()


def mode_seeking_penalty(fake: torch.Tensor, z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """MSGAN's generator term (Mao et al. 2019) for a batch whose two halves share their
    conditions: ``1 / (mean|G(z1) - G(z2)| / mean|z1 - z2| + eps)`` over the pairs (row i of the
    first half with row i of the second), averaged. High when distinct latents give alike outputs
    (mode collapse); ``fake`` (2P, ...) and ``z`` (2P, ...) with P >= 1."""
    if fake.shape[0] % 2 or fake.shape[0] != z.shape[0] or not len(fake):
        raise ValueError(f"mode seeking needs an even batch of pairs, not {tuple(fake.shape)}")
    (a, b), (za, zb) = fake.flatten(1).chunk(2), z.flatten(1).chunk(2)
    ratio = (a - b).abs().mean(1) / (za - zb).abs().mean(1).clamp(min=eps)
    return (1 / (ratio + eps)).mean()
