"""Training a tokenizer: the run's config resolved once (``init_from``), checked against the data,
and the task its ``model.kind`` selects, trained by the shared engine."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from accelerate.utils import set_seed

from shared.config import ConfigError
from shared.data import build_dataset
from shared.engine import make_accelerator, train_run
from shared.run import check_run_dir
from stage1_vqgan.config import ModelConfig, VQGANConfig
from stage1_vqgan.load import load_tokenizer_and_discriminator
from stage1_vqgan.model import VQModel
from stage1_vqgan.segmentation_task import SegmentationTask, check_masks
from stage1_vqgan.task import TokenizerTask, VQGANTask


def train(
    cfg: VQGANConfig, output: str | Path, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train a tokenizer into the run folder ``output``; returns that folder."""
    output = Path(output)
    cfg, ae, disc_state = fine_tuning_start(cfg)
    check_model(cfg)
    check_run_dir(output, overwrite, resume)
    accelerator = make_accelerator(cfg.train, output)
    set_seed(cfg.train.seed)
    train_data = build_dataset(cfg.data, "train", seed=cfg.train.seed)
    val_data = build_dataset(cfg.data, "val", seed=cfg.train.seed)
    task: TokenizerTask
    if cfg.model.kind == "segmentation":
        check_masks(train_data, cfg)
        task = SegmentationTask(cfg, ae)
    else:
        task = VQGANTask(cfg, ae, disc_state)
    return train_run(
        task, cfg, output, train_data, val_data, accelerator, resume=resume, overwrite=overwrite
    )


def fine_tuning_start(
    cfg: VQGANConfig,
) -> tuple[VQGANConfig, VQModel | None, dict[str, torch.Tensor] | None]:
    """With ``init_from``: a new config whose ``model`` is the loaded tokenizer's architecture,
    that tokenizer (in training mode) and its discriminator weights (None when it has none).
    Without: ``cfg`` itself and two Nones."""
    if not cfg.init_from:
        return cfg, None, None
    ae, disc_state = load_tokenizer_and_discriminator(cfg.init_from)
    return dataclasses.replace(cfg, model=ModelConfig(**ae.config)), ae.train(), disc_state


def check_model(cfg: VQGANConfig) -> None:
    """The tokenizer of ``cfg.model`` must fit the data and reconstruct its inputs (one-line
    errors)."""
    if cfg.model.kind == "image" and cfg.data.channels != cfg.model.in_channels:
        raise ConfigError(
            f"data.channels ({cfg.data.channels}) must equal model.in_channels "
            f"({cfg.model.in_channels})"
        )
    factor = 2 ** (len(cfg.model.ch_mult) - 1)
    if cfg.data.resolution % factor:
        raise ConfigError(
            f"data.resolution ({cfg.data.resolution}) must be a multiple of the "
            f"downsampling factor {factor}"
        )
    if cfg.model.out_channels != cfg.model.in_channels:
        raise ConfigError("model.out_channels must equal model.in_channels to reconstruct inputs")
