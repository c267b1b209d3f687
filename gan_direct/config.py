"""Schema of a pixel-GAN run: ``generator`` and ``discriminator`` (a registry ``name`` plus that
network's keyword arguments), ``loss``, ``data`` and ``train``. The network arguments are checked
against each network's own spec dataclass by :mod:`gan_direct.registry`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from shared.config import DataConfig, TrainConfig, choice, fraction, positive


@dataclass
class GANLossConfig:
    """``gan_loss``: non_saturating (BCE on logits; ``real_label``/``fake_label`` below 1/above 0
    are label smoothing), hinge, vanilla (taming's G loss -D) or wgan (critic; add ``gp_lambda``
    for WGAN-GP and ``drift`` for ProGAN's drift term)."""

    gan_loss: str = choice("non_saturating", "hinge", "vanilla", "wgan")
    real_label: float = 1.0  # BCE target of real images in D's loss (0.9: one-sided smoothing)
    fake_label: float = 0.0  # BCE target of fakes in D's loss (0.1: two-sided smoothing)
    gp_lambda: float = 0.0  # WGAN-GP gradient penalty weight (10 in the paper)
    drift: float = 0.0  # ProGAN's drift penalty eps * E[D(x)^2] (1e-3)
    r1_gamma: float = 0.0  # R1 weight: D loss += r1_gamma / 2 * E||grad D(x)||^2
    bcr_real: float = 0.0  # balanced consistency regularisation weights (0 = off)
    bcr_fake: float = 0.0
    diffaug: str = ""  # DiffAugment policy, e.g. "translation,color,cutout" ("" = off)


@dataclass
class GANTrainConfig(TrainConfig):
    batch_size: int = positive(64)
    max_steps: int = 100000
    lr: float = positive(2e-4)  # generator
    lr_d: float = positive(2e-4)  # discriminator (TTUR: a different rate)
    adam_betas: list[float] = fraction([0.5, 0.999])
    ema_decay: float = fraction(0.999)
    d_steps: int = positive(1)  # discriminator updates per iteration (WGAN: n_critic)
    g_steps: int = positive(1)  # generator updates per iteration (the chapter's CGAN: 2)
    grow_steps: int = 0  # progressive growing: steps per fade-in and per stable phase (0 = off)


@dataclass
class GANConfig:
    generator: dict[str, Any] = field(default_factory=lambda: {"name": "adatgan"})
    discriminator: dict[str, Any] = field(default_factory=lambda: {"name": "adatgan"})
    conditional: bool = False  # class-conditional: G and D get the data's class labels
    loss: GANLossConfig = field(default_factory=GANLossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: GANTrainConfig = field(default_factory=GANTrainConfig)
