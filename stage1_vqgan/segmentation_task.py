"""Training the tokenizer of segmentation maps (taming's ``VQSegmentationModel``): one-hot label
maps in, per-label logits out, BCE + codebook loss (no perceptual or GAN term, no discriminator),
scored by pixel accuracy and mIoU."""

from __future__ import annotations

import torch

from shared.config import ConfigError
from shared.data import ImageDataset
from shared.engine import Scalar, Trainer
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.losses import mask_loss
from stage1_vqgan.segmentation import (
    colorize_mask,
    confusion_matrix,
    logits_to_mask,
    mask_to_onehot,
    segmentation_scores,
)
from stage1_vqgan.task import TokenizerTask


class SegmentationTask(TokenizerTask):
    overfit_watch = ("rec", "miou", "max")

    def inputs(self, batch: dict) -> torch.Tensor:
        """The one-hot masks (B, L, H, W), L = ``model.in_channels``."""
        return mask_to_onehot(batch["mask"], self.cfg.model.in_channels)

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, Scalar]:
        x = self.inputs(batch)
        logits, q = self.models["ae"](x)
        loss, logs = mask_loss(x, logits, q.loss, self.cfg.loss.codebook_weight)
        trainer.optimize("ae", loss)
        logs.update(perplexity=q.perplexity.detach(), usage=q.usage.detach())
        return logs

    def sample(self, batch: dict, trainer: Trainer) -> torch.Tensor:
        """Masks above their reconstructions, in colour."""
        logits, _ = trainer.model("ae", ema=True)(self.inputs(batch))
        return colorize_mask(torch.cat([batch["mask"], logits_to_mask(logits)]))

    def batch_score(self, batch: dict, xrec: torch.Tensor) -> torch.Tensor:
        return confusion_matrix(logits_to_mask(xrec), batch["mask"], self.cfg.model.out_channels)

    def summary(self, scores: list[torch.Tensor]) -> dict[str, float]:
        return segmentation_scores(sum(scores))


def check_masks(data: ImageDataset, cfg: VQGANConfig) -> None:
    """A segmentation tokenizer needs masks whose labels fit its channels (one-line errors)."""
    source = cfg.data.source
    if not data.has_masks:
        raise ConfigError(
            f"model.kind=segmentation trains on masks, and {source} has none "
            "(use builtin:shapes, or a folder with data.masks)"
        )
    if data.num_mask_classes > cfg.model.in_channels:
        raise ConfigError(
            f"masks of {source} use {data.num_mask_classes} labels but model.in_channels is "
            f"{cfg.model.in_channels}; set model.in_channels and model.out_channels to "
            f"{data.num_mask_classes}"
        )
