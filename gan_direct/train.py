"""``train``: a pixel-GAN run from its config into a run folder (task: :mod:`gan_direct.task`)."""

from __future__ import annotations

from pathlib import Path

from accelerate.utils import set_seed

from gan_direct.config import GANConfig
from gan_direct.presets import prepare
from gan_direct.task import GANTask
from shared.config import ConfigError
from shared.data import build_dataset
from shared.engine import make_accelerator, train_run
from shared.run import check_run_dir


def train(
    cfg: GANConfig, output: str | Path, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train the GAN of ``cfg`` into the run folder ``output``; returns that folder."""
    output = Path(output)
    check_run_dir(output, overwrite, resume)
    train_data = build_dataset(cfg.data, "train", seed=cfg.train.seed)
    val_data = build_dataset(cfg.data, "val", seed=cfg.train.seed)
    num_classes = train_data.num_classes if cfg.conditional else 0
    if cfg.conditional and not num_classes:
        raise ConfigError(
            f"conditional: true needs labelled data (class sub-folders); {cfg.data.source} "
            "has no classes"
        )
    cfg = prepare(cfg, num_classes)
    accelerator = make_accelerator(cfg.train, output)
    set_seed(cfg.train.seed)
    task = GANTask(cfg, train_data.class_names if num_classes else None)
    return train_run(
        task, cfg, output, train_data, val_data, accelerator, resume=resume, overwrite=overwrite
    )
