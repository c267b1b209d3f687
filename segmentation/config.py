"""Schemas of a U-Net segmentation run: ``model``, ``data``, ``train`` (chapter recipe: Adam,
lr 1e-4, default betas, batch 32, pixel-wise cross-entropy)."""

from __future__ import annotations

from dataclasses import dataclass, field

from shared.config import DataConfig, TrainConfig, positive


@dataclass
class UNetConfig:
    in_channels: int = positive(3)  # training sets it from data.channels
    num_classes: int = 0  # mask classes; 0 = from the data (largest mask id + 1)
    base_channels: int = positive(64)  # widths base, 2b, 4b, 8b; bottleneck 16b
    levels: int = positive(4)  # 2x2 poolings; images must be multiples of 2**levels


@dataclass
class SegmentationTrainConfig(TrainConfig):
    batch_size: int = positive(32)
    max_steps: int = 20000
    lr: float = positive(1e-4)  # Adam, default betas (0.9, 0.999)


@dataclass
class SegmentationConfig:
    model: UNetConfig = field(default_factory=UNetConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: SegmentationTrainConfig = field(default_factory=SegmentationTrainConfig)
