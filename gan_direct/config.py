"""Schemas of an AdatGAN run: ``generator``, ``discriminator``, ``loss``, ``data``, ``train``
(thesis recipe, spec ``adatgan.md`` §7-§8)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import DataConfig, TrainConfig, choice


@dataclass
class AdatGeneratorConfig:
    """z -> Linear -> 8x8 tokens -> 3 modulated Adat blocks with pixel shuffle + LEE between
    them -> 32x32 tokens -> RGB at pixel level or as ``resolution/32`` sized patches."""

    resolution: int = 32  # 32 (pixels), 64 (2x2 patches) or 128 (4x4 patches)
    z_dim: int = 128
    dims: list[int] = field(default_factory=lambda: [1024, 256, 128])  # at 8x8, 16x16, 32x32
    heads: int = 4
    mlp_dim: int = 512
    num_classes: int = 0  # > 0: SLN conditioned on [z, class embedding]
    out_channels: int = 3  # image channels; training sets it from data.channels


@dataclass
class AdatDiscriminatorConfig:
    """Conv stem (3x3 conv, FastGAN down blocks) -> 16x16 tokens -> Adat block (MLP residual)
    -> [space-to-depth] -> convs -> logit map. ``attention=False, batch_norm=False`` is the
    thesis's Conv-D baseline."""

    resolution: int = 32
    channels: list[int] = field(default_factory=lambda: [128, 256])  # stem input conv, blocks
    down_factor: int = 2  # per FastGAN block; 8 = one block with an 8x8 stride-8 conv (FFHQ)
    heads: int = 4
    mlp_dim: int = 512
    attention: bool = True
    batch_norm: bool = True
    space_to_depth: bool = True  # "D-STD"; off when the transformer dim is 512
    out_dims: list[int] = field(default_factory=lambda: [512, 1024])
    in_channels: int = 3  # image channels; training sets it from data.channels


@dataclass
class GANLossConfig:
    gan_loss: str = choice("non_saturating", "hinge", "vanilla")
    r1_gamma: float = 0.01
    bcr_real: float = 1.0  # balanced consistency regularisation weights (0 = off)
    bcr_fake: float = 1.0
    diffaug: str = "translation,color,cutout"  # DiffAugment policy ("" = off)


@dataclass
class GANTrainConfig(TrainConfig):
    batch_size: int = 64
    max_steps: int = 500000
    lr: float = 2e-4  # generator
    lr_d: float = 2e-4  # discriminator (4e-4 with a conv D: TTUR)
    adam_betas: list[float] = field(default_factory=lambda: [0.5, 0.99])
    ema_decay: float = 0.999
    d_steps: int = 1  # discriminator steps per generator step


@dataclass
class AdatGANConfig:
    generator: AdatGeneratorConfig = field(default_factory=AdatGeneratorConfig)
    discriminator: AdatDiscriminatorConfig = field(default_factory=AdatDiscriminatorConfig)
    loss: GANLossConfig = field(default_factory=GANLossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: GANTrainConfig = field(default_factory=GANTrainConfig)
