"""Training a U-Net on images with masks: the task plugged into the shared engine.

Loss: pixel-wise cross-entropy of the logits against the mask ids. Evaluation: ``miou`` and
``pixel_accuracy`` (``stage1_vqgan.segmentation_scores``, summed confusion over
``train.eval_images`` validation images) and the validation ``loss``."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from segmentation.config import SegmentationConfig
from segmentation.unet import UNet
from shared.config import ConfigError
from shared.data import DataError, build_dataset
from shared.engine import Scalar, Task, Trainer, make_accelerator, train_run
from shared.exported import load_exported, locate, named_export
from shared.limits import check_limit
from shared.run import check_run_dir
from stage1_vqgan import colorize_mask, confusion_matrix, segmentation_scores

MAX_LABEL_CLASSES = 256  # label maps are 8-bit PNGs of class ids


class SegmentTask(Task):
    overfit_watch = ("loss", "loss", "min")

    def __init__(self, cfg: SegmentationConfig):
        self.cfg = cfg
        self.models = {"unet": UNet(**vars(cfg.model))}
        self.state = {}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"unet": torch.optim.Adam(self.models["unet"].parameters(), lr=self.cfg.train.lr)}

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, Scalar]:
        logits = self.models["unet"](batch["image"])
        loss = F.cross_entropy(logits.float(), batch["mask"])
        trainer.optimize("unet", loss)
        return {"loss": loss.detach()}

    def sample(self, batch: dict, trainer: Trainer) -> torch.Tensor:
        """One tile per image (B,3,H,3W) in [-1,1]: image | true mask | predicted mask."""
        image = batch["image"]
        pred = trainer.model("unet")(image).argmax(dim=1)
        rgb = image.expand(-1, 3, -1, -1) if image.shape[1] == 1 else image
        return torch.cat([rgb, colorize_mask(batch["mask"]), colorize_mask(pred)], dim=-1)

    def evaluate(self, loader, trainer: Trainer) -> dict[str, float]:
        """``miou``, ``pixel_accuracy`` (in [0,1]) and mean cross-entropy ``loss`` over
        ``loader``."""
        net, n = trainer.model("unet"), self.cfg.model.num_classes
        confusion = torch.zeros(n, n, dtype=torch.long)
        loss, pixels = 0.0, 0
        for batch in loader:
            image, mask = batch["image"].to(trainer.device), batch["mask"].to(trainer.device)
            logits = net(image).float()
            loss += F.cross_entropy(logits, mask, reduction="sum").item()
            pixels += mask.numel()
            confusion += confusion_matrix(logits.argmax(dim=1), mask, n).cpu()
        return {**segmentation_scores(confusion), "loss": loss / max(pixels, 1)}

    def export(self, folder: Path, trainer: Trainer) -> None:
        trainer.model("unet").save_pretrained(folder / "unet")


def resolve_classes(cfg: SegmentationConfig, dataset) -> int:
    """The number of classes: ``model.num_classes``, or the dataset's when it is 0; at most
    :data:`MAX_LABEL_CLASSES` (``predict`` writes 8-bit label maps) and within the classes
    limit of :mod:`shared.limits`, checked before any network is built."""
    if not getattr(dataset, "has_masks", False):
        raise DataError(
            f"{cfg.data.source} has no segmentation masks; pass a mask folder (data.masks=DIR)"
        )
    if cfg.model.num_classes > MAX_LABEL_CLASSES:
        raise ConfigError(
            f"model.num_classes={cfg.model.num_classes}: a U-Net predicts at most "
            f"{MAX_LABEL_CLASSES} classes (8-bit label maps)"
        )
    found = dataset.num_mask_classes
    if cfg.model.num_classes == 0:
        check_limit("classes", found, f"the classes inferred from the masks of {cfg.data.source}")
        if found > MAX_LABEL_CLASSES:
            raise DataError(
                f"the masks of {cfg.data.source} hold ids up to {found - 1}, but a U-Net predicts "
                f"at most {MAX_LABEL_CLASSES} classes (8-bit label maps): masks must hold class "
                "ids, not colours or 16-bit levels"
            )
        return found
    if found > cfg.model.num_classes:
        raise ConfigError(
            f"the masks of {cfg.data.source} hold ids up to {found - 1} but model.num_classes="
            f"{cfg.model.num_classes}; raise it or set model.num_classes=0 to take it from the data"
        )
    return cfg.model.num_classes


def train(
    cfg: SegmentationConfig, output: str | Path, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train a U-Net into the run folder ``output``; returns that folder. ``cfg`` gets the
    resolved ``model.in_channels`` and ``model.num_classes`` (saved in ``config.yaml``)."""
    output = Path(output)
    factor = 2**cfg.model.levels
    if cfg.model.levels < 1 or cfg.model.base_channels < 1:
        raise ConfigError("model.levels and model.base_channels must be positive")
    if cfg.data.resolution % factor:
        raise ConfigError(
            f"data.resolution ({cfg.data.resolution}) must be a multiple of {factor} "
            f"(2**model.levels)"
        )
    if cfg.model.num_classes < 0:
        raise ConfigError("model.num_classes must be >= 0 (0 = from the data)")
    check_run_dir(output, overwrite, resume)
    train_data = build_dataset(cfg.data, "train", seed=cfg.train.seed)
    val_data = build_dataset(cfg.data, "val", seed=cfg.train.seed)
    num_classes = resolve_classes(cfg, train_data)
    if num_classes < 2:
        raise DataError(f"the masks of {cfg.data.source} hold a single class; nothing to learn")
    model = dataclasses.replace(cfg.model, num_classes=num_classes, in_channels=cfg.data.channels)
    cfg = dataclasses.replace(cfg, model=model)
    accelerator = make_accelerator(cfg.train, output)
    set_seed(cfg.train.seed)
    task = SegmentTask(cfg)
    return train_run(
        task, cfg, output, train_data, val_data, accelerator, resume=resume, overwrite=overwrite
    )


def load_unet(path: str | Path) -> UNet:
    """The U-Net in eval mode from a run folder, its ``model`` folder or ``model/unet``."""
    return load_exported(named_export(locate(path), "unet", "U-Net"), [UNet], "a U-Net")
