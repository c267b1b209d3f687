"""Training a VQGAN tokenizer: the task plugged into the shared engine."""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate.utils import set_seed

from shared.config import ConfigError
from shared.data import ImageDataset, build_dataset
from shared.engine import Task, Trainer, frozen, make_accelerator, train_run
from shared.images import quantize_8bit
from shared.metrics import psnr
from shared.pretrained import load_state
from shared.run import check_run_dir
from stage1_vqgan.config import ModelConfig, VQGANConfig
from stage1_vqgan.discriminator import PatchDiscriminator
from stage1_vqgan.load import load_tokenizer_and_discriminator, save_discriminator
from stage1_vqgan.losses import VQGANLoss
from stage1_vqgan.model import VQModel
from stage1_vqgan.segmentation import (
    colorize_mask,
    confusion_matrix,
    logits_to_mask,
    mask_to_onehot,
    segmentation_scores,
)


class VQGANTask(Task):
    ema_model = "ae"

    def __init__(self, cfg: VQGANConfig):
        self.cfg = cfg
        disc_state = None
        if cfg.init_from:  # fine-tuning: the architecture is the loaded tokenizer's
            ae, disc_state = load_tokenizer_and_discriminator(cfg.init_from)
            cfg.model = ModelConfig(**ae.config)
            ae.train()
        else:
            ae = VQModel.from_config(cfg.model)
        self.segmentation = cfg.model.kind == "segmentation"
        self.overfit_watch = ("rec", "miou" if self.segmentation else "psnr", "max")
        self.models = {"ae": ae}
        if not self.segmentation:
            disc = PatchDiscriminator(
                cfg.model.out_channels, cfg.loss.disc_ndf, cfg.loss.disc_layers
            )
            if disc_state is not None:
                load_state(disc, disc_state, f"{cfg.init_from} (discriminator)")
            self.models["disc"] = disc
        self.loss = VQGANLoss(cfg.loss, segmentation=self.segmentation)
        self.state = {"lecam": self.loss.lecam} if self.loss.lecam is not None else {}

    def setup(self, trainer: Trainer) -> None:
        self.loss.to(trainer.device)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t = self.cfg.train
        kw = dict(lr=t.lr, betas=tuple(t.adam_betas))
        return {
            name: torch.optim.Adam([p for p in m.parameters() if p.requires_grad], **kw)
            for name, m in self.models.items()
        }

    def inputs(self, batch: dict) -> torch.Tensor:
        """What the autoencoder reconstructs: the images, or the one-hot masks (segmentation)."""
        if self.segmentation:
            return mask_to_onehot(batch["mask"], self.cfg.model.in_channels)
        return batch["image"]

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, float]:
        x = self.inputs(batch)
        xrec, q = self.models["ae"](x)
        active = self.loss.disc_active(step)
        logits_fake = None
        if active:
            with frozen(trainer.model("disc")) as d:
                logits_fake = d(xrec)
        loss, logs = self.loss.generator(
            x, xrec, q.loss, logits_fake, trainer.model("ae").last_layer
        )
        trainer.optimize("ae", loss)
        logs.update(perplexity=q.perplexity.item(), usage=q.usage.item())
        if active:
            disc = self.models["disc"]
            d_loss, d_logs = self.loss.discriminator(disc(x.detach()), disc(xrec.detach()))
            trainer.optimize("disc", d_loss)
            logs.update(d_logs)
        return logs

    def sample(self, batch: dict, trainer: Trainer) -> torch.Tensor:
        """Originals above their reconstructions (masks in colour)."""
        x = self.inputs(batch)
        xrec, _ = trainer.model("ae", ema=True)(x)
        if self.segmentation:
            return colorize_mask(torch.cat([batch["mask"], logits_to_mask(xrec)]))
        return torch.cat([x, xrec.clamp(-1, 1)])

    def evaluate(self, loader, trainer: Trainer) -> dict[str, float]:
        """PSNR (images) or pixel accuracy and mIoU (masks), and the share of codes used."""
        model = trainer.model("ae", ema=True)
        scores, codes, confusion = [], [], 0
        for batch in loader:
            batch = {k: v.to(trainer.device) for k, v in batch.items()}
            xrec, q = model(self.inputs(batch))
            codes.append(q.indices.flatten())
            if self.segmentation:
                pred, labels = logits_to_mask(xrec), self.cfg.model.out_channels
                confusion = confusion + confusion_matrix(pred, batch["mask"], labels)
            else:
                scores.append(psnr(quantize_8bit(xrec), batch["image"]))
        used = torch.unique(torch.cat(codes)).numel()
        if self.segmentation:
            metrics = segmentation_scores(confusion)
        else:
            metrics = {"psnr": torch.cat(scores).mean().item()}
        return {**metrics, "usage": used / model.n_embed}

    def export(self, folder: Path, trainer: Trainer) -> None:
        trainer.model("ae", ema=True).save_pretrained(folder)
        if self.segmentation:
            return
        loss = self.cfg.loss
        kwargs = {
            "in_channels": self.cfg.model.out_channels,
            "ndf": loss.disc_ndf,
            "n_layers": loss.disc_layers,
        }
        save_discriminator(trainer.model("disc"), kwargs, folder)


def train(
    cfg: VQGANConfig, output: str | Path, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train a tokenizer into the run folder ``output``; returns that folder."""
    output = Path(output)
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
    check_run_dir(output, overwrite, resume)
    accelerator = make_accelerator(cfg.train, output)
    set_seed(cfg.train.seed)
    train_data = build_dataset(cfg.data, "train", seed=cfg.train.seed)
    val_data = build_dataset(cfg.data, "val", seed=cfg.train.seed)
    if cfg.model.kind == "segmentation":
        check_masks(train_data, cfg)
    task = VQGANTask(cfg)
    return train_run(
        task, cfg, output, train_data, val_data, accelerator, resume=resume, overwrite=overwrite
    )


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
