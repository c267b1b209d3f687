"""Schemas of a prior run: ``prior`` (which network), ``model`` (the GPT), ``adatgan`` (the
adversarial prior), ``condition``, ``data``, ``codes``, ``train`` and the stage-1 tokenizers the
codes come from."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import DataConfig, TrainConfig, choice, fraction, positive


@dataclass
class GPTLayers:
    """The GPT prior's transformer: the fields its spec (:class:`~stage2_prior.gpt.GPTSpec`) takes
    from the ``model`` section."""

    n_layer: int = positive(4)
    n_head: int = positive(4)
    n_embd: int = positive(128)
    dropout: float = fraction(0.0)  # embedding, residual and attention dropout


@dataclass
class GPTConfig(GPTLayers):
    window: list[int] | None = None  # training window [h, w] in tokens; None = whole code grid


@dataclass
class AdatGeneratorLayers:
    """The AdatGAN prior's generator: the fields its spec
    (:class:`~stage2_prior.adatgan_prior.AdatPriorSpec`) takes from the ``adatgan`` section."""

    z_dim: int = positive(128)
    dims: list[int] = positive([256, 128])  # widths, coarse to full grid
    heads: int = positive(4)  # also the discriminator's
    mlp_dim: int = positive(512)  # also the discriminator's


@dataclass
class AdatPriorConfig(AdatGeneratorLayers):
    """The AdatGAN prior (``prior: adatgan``): a generator of codebook-space latents (snapped to
    the nearest codes) and its discriminator; ``train.lr`` and ``train.adam_betas`` drive the
    generator's Adam."""

    d_dim: int = positive(128)  # discriminator width
    lr_d: float = positive(2e-4)
    r1_gamma: float = 0.1  # weight of gamma/2 * R1 on the embedded real grids
    noise: float = 1.0  # std of the instance noise on every grid D sees (unit-scaled codebook)
    minibatch_std: bool = False  # D sees the spread of its batch (ProGAN), against mode collapse
    mode_seeking: float = 0.0  # weight of MSGAN's term on G, against mode collapse; 0 = off


@dataclass
class ConditionConfig:
    # auto: spatial with a cond tokenizer, class when the data has labels, else none
    kind: str = choice("auto", "none", "class", "spatial", "coord")
    class_dropout: float = fraction(0.1)  # label dropout that trains the null class for --cfg-scale
    coord_tokens: int = positive(
        1024
    )  # vocabulary of coordinate tokens (taming's CoordStage: 1024)


@dataclass
class CodesConfig:
    cache_dir: str | None = None  # None: $TWOSTAGE_CACHE/codes or ~/.cache/twostage/codes
    max_images: int | None = None  # use the first N training images (None = all)
    max_val_images: int | None = None  # the first N validation images (None = all)
    batch_size: int = positive(64)  # images per encoder batch during extraction


@dataclass
class PriorTrainConfig(TrainConfig):
    batch_size: int = positive(32)
    lr: float = positive(3e-4)
    adam_betas: list[float] = fraction([0.9, 0.95])
    weight_decay: float = 0.01  # on Linear weights only
    pkeep: float = fraction(1.0)  # keep probability of each input token (else a random one)
    sample_temperature: float = 1.0
    sample_top_k: int | None = None


@dataclass
class PriorDataConfig(DataConfig):
    resolution: int = 0  # 0 = the tokenizer's training size (its run's data.resolution)


@dataclass
class PriorConfig:
    prior: str = choice("gpt", "adatgan")  # autoregressive GPT or one-pass AdatGAN generator
    model: GPTConfig = field(default_factory=GPTConfig)
    adatgan: AdatPriorConfig = field(default_factory=AdatPriorConfig)
    condition: ConditionConfig = field(default_factory=ConditionConfig)
    data: PriorDataConfig = field(default_factory=PriorDataConfig)
    codes: CodesConfig = field(default_factory=CodesConfig)
    train: PriorTrainConfig = field(default_factory=PriorTrainConfig)
    tokenizer: str | None = None  # stage-1 tokenizer of the images
    tokenizer_config: str | None = None  # its YAML when it is a taming .ckpt
    cond_tokenizer: str | None = None  # stage-1 tokenizer of the spatial condition maps
    cond_tokenizer_config: str | None = None
