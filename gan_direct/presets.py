"""A GAN config made concrete: checked, and its networks resolved against the shape and the
classes of its data; a preset's networks built without training."""

from __future__ import annotations

import dataclasses

from torch import nn

from gan_direct.augment import parse_policy
from gan_direct.config import GANConfig
from gan_direct.registry import build, resolve
from shared.config import ConfigError, DataConfig, build_config, read_preset
from shared.data import POINT_SOURCES, build_dataset


def data_shape(data: DataConfig) -> tuple[int, ...]:
    """The shape of one sample: ``(2,)`` for the 2-D toy sources, else ``(C, R, R)``."""
    if data.source in POINT_SOURCES:
        return (2,)
    return (data.channels, data.resolution, data.resolution)


def prepare(cfg: GANConfig, num_classes: int = 0) -> GANConfig:
    """``cfg`` checked, as a new config whose networks are resolved against its data."""
    if cfg.data.source not in POINT_SOURCES and cfg.data.channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 or 3, got {cfg.data.channels}")
    try:
        parse_policy(cfg.loss.diffaug)
    except ValueError as e:
        raise ConfigError(f"loss.diffaug: {e}") from None
    if cfg.loss.diffaug and cfg.data.source in POINT_SOURCES:
        raise ConfigError("loss.diffaug applies to images, not to 2-D points")
    if cfg.train.d_steps < 1 or cfg.train.g_steps < 1:
        raise ConfigError("train.d_steps and train.g_steps must be at least 1")
    shape = data_shape(cfg.data)
    return dataclasses.replace(
        cfg,
        generator=resolve("generator", cfg.generator, shape, num_classes),
        discriminator=resolve("discriminator", cfg.discriminator, shape, num_classes),
    )


def preset_networks(
    preset: str, overrides: list[str] = (), num_classes: int | None = None
) -> tuple[GANConfig, nn.Module, nn.Module]:
    """(resolved config, generator, discriminator) of a preset name or YAML file with dotted
    ``overrides``; a conditional preset takes its data's classes unless ``num_classes`` is
    given."""
    cfg = build_config(GANConfig, read_preset(preset, "gan_direct"), overrides=list(overrides))
    if num_classes is None:
        num_classes = build_dataset(cfg.data, "val").num_classes if cfg.conditional else 0
    cfg = prepare(cfg, num_classes if cfg.conditional else 0)
    return cfg, build("generator", cfg.generator), build("discriminator", cfg.discriminator)
