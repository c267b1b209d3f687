"""Schemas of a VQGAN run: ``model``, ``loss``, ``data``, ``train`` (+ ``init_from``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import DataConfig, TrainConfig, choice, fraction, positive


@dataclass
class ModelConfig:
    kind: str = choice("image", "segmentation")  # segmentation: one-hot label maps, C = labels
    in_channels: int = positive(3)
    out_channels: int = positive(3)
    ch: int = positive(128)
    ch_mult: list[int] = positive([1, 1, 2, 2, 4])
    num_res_blocks: int = 2
    attn_resolutions: list[int] = field(default_factory=lambda: [16])
    dropout: float = fraction(0.0)
    z_channels: int = positive(256)
    resolution: int = positive(256)  # nominal input size; places attention at attn_resolutions
    n_embed: int = positive(1024)
    embed_dim: int = positive(256)
    beta: float = 0.25
    legacy_beta: bool = False  # taming's placement: beta on the codebook term
    l2_normalize: bool = False
    codebook_dim: int | None = None  # low-dimensional lookup space (factorised codes)
    ema_codebook: bool = False
    ema_codebook_decay: float = fraction(0.99)
    restart_unused_steps: int = 0  # 0 = never restart dead codes
    search_chunk: int | None = None  # rows per nearest-code chunk (None = automatic)


@dataclass
class LossConfig:
    reconstruction: str = choice("l1", "l2")
    perceptual_weight: float = 1.0
    perceptual_net: str = choice("vgg", "alex", "efficientnet")
    perceptual_backbone: str = choice("auto", "pretrained", "random")
    codebook_weight: float = 1.0
    disc_start: int = 10000
    disc_weight: float = 0.8
    gan_loss: str = choice("hinge", "vanilla", "non_saturating")
    adaptive_weight: bool = True
    adaptive_delta: float = 1e-4
    adaptive_max: float = 1e4
    disc_ndf: int = positive(64)
    disc_layers: int = 3
    lecam_weight: float = 0.0
    lecam_decay: float = fraction(0.99)


@dataclass
class VQGANTrainConfig(TrainConfig):
    lr: float = positive(4.5e-6 * 12)
    adam_betas: list[float] = fraction([0.5, 0.9])


@dataclass
class VQGANConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: VQGANTrainConfig = field(default_factory=VQGANTrainConfig)
    init_from: str | None = None  # tokenizer (and discriminator) weights to fine-tune from
