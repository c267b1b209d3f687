"""The tokenizer tasks plugged into the shared engine: what every tokenizer run shares
(:class:`TokenizerTask`) and the image tokenizer with its patch-GAN (:class:`VQGANTask`). The
tokenizer of segmentation maps is :class:`stage1_vqgan.segmentation_task.SegmentationTask`."""

from __future__ import annotations

from pathlib import Path

import torch

from shared.engine import Scalar, Task, Trainer
from shared.images import quantize_8bit
from shared.metrics import psnr
from shared.pretrained import load_state
from stage1_vqgan.config import VQGANConfig
from stage1_vqgan.discriminator import DISCRIMINATOR_FOLDER, PatchDiscriminator
from stage1_vqgan.losses import VQGANLoss
from stage1_vqgan.model import VQModel


class TokenizerTask(Task):
    """The autoencoder ``ae`` (fresh from ``cfg.model``, or the given fine-tuning start, whose
    architecture ``cfg.model`` then describes), one Adam per model, and the evaluation pass that
    scores the reconstructions and counts the codes used. Subclasses say what is reconstructed
    (:meth:`inputs`), how a batch is scored (:meth:`batch_score`, :meth:`summary`) and how a
    training step goes."""

    ema_model = "ae"

    def __init__(self, cfg: VQGANConfig, ae: VQModel | None = None):
        self.cfg = cfg
        self.models = {"ae": ae if ae is not None else VQModel.from_config(cfg.model)}

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t = self.cfg.train
        kw = dict(lr=t.lr, betas=tuple(t.adam_betas))
        return {
            name: torch.optim.Adam([p for p in m.parameters() if p.requires_grad], **kw)
            for name, m in self.models.items()
        }

    def inputs(self, batch: dict) -> torch.Tensor:
        """The (B,C,H,W) tensor the autoencoder reconstructs."""
        raise NotImplementedError

    def batch_score(self, batch: dict, xrec: torch.Tensor) -> torch.Tensor:
        """What one validation batch contributes to :meth:`summary`."""
        raise NotImplementedError

    def summary(self, scores: list[torch.Tensor]) -> dict[str, float]:
        """The validation metrics of all :meth:`batch_score` results."""
        raise NotImplementedError

    def evaluate(self, loader, trainer: Trainer) -> dict[str, float]:
        """The :meth:`summary` metrics and ``usage``, the share of codes used."""
        model = trainer.model("ae", ema=True)
        scores, codes = [], []
        for batch in loader:
            batch = {k: v.to(trainer.device) for k, v in batch.items()}
            xrec, q = model(self.inputs(batch))
            codes.append(q.indices.flatten())
            scores.append(self.batch_score(batch, xrec))
        used = torch.unique(torch.cat(codes)).numel()
        return {**self.summary(scores), "usage": used / model.n_embed}

    def export(self, folder: Path, trainer: Trainer) -> None:
        trainer.model("ae", ema=True).save_pretrained(folder)


class VQGANTask(TokenizerTask):
    """The image tokenizer: L1/L2 + perceptual reconstruction and codebook loss, and from
    ``loss.disc_start`` on the patch-GAN term with the adaptive weight against ``disc`` (fresh,
    or loaded from ``disc_state`` when fine-tuning). Scored by PSNR."""

    overfit_watch = ("rec", "psnr", "max")

    def __init__(
        self,
        cfg: VQGANConfig,
        ae: VQModel | None = None,
        disc_state: dict[str, torch.Tensor] | None = None,
    ):
        super().__init__(cfg, ae)
        disc = PatchDiscriminator(cfg.model.out_channels, cfg.loss.disc_ndf, cfg.loss.disc_layers)
        if disc_state is not None:
            load_state(disc, disc_state, f"{cfg.init_from} (discriminator)")
        self.models["disc"] = disc
        self.loss = VQGANLoss(cfg.loss)
        self.state = {"lecam": self.loss.lecam} if self.loss.lecam is not None else {}

    def setup(self, trainer: Trainer) -> None:
        self.loss.to(trainer.device)

    def inputs(self, batch: dict) -> torch.Tensor:
        return batch["image"]

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, Scalar]:
        """The autoencoder step (through the frozen discriminator once it is active), then the
        discriminator step on the detached originals and reconstructions."""
        x = self.inputs(batch)
        xrec, q = self.models["ae"](x)
        active = self.loss.disc_active(step)
        gan = self.loss.adversarial
        logits_fake = gan.generator_logits(trainer.model("disc"), xrec) if active else None
        loss, logs = self.loss.generator(
            x, xrec, q.loss, logits_fake, trainer.model("ae").last_layer
        )
        trainer.optimize("ae", loss)
        logs.update(perplexity=q.perplexity.detach(), usage=q.usage.detach())
        if active:
            d_loss, d_logs = gan.discriminator_loss(self.models["disc"], x, xrec)
            trainer.optimize("disc", d_loss)
            logs.update(d_logs)
        return logs

    def sample(self, batch: dict, trainer: Trainer) -> torch.Tensor:
        """Originals above their reconstructions."""
        x = self.inputs(batch)
        xrec, _ = trainer.model("ae", ema=True)(x)
        return torch.cat([x, xrec.clamp(-1, 1)])

    def batch_score(self, batch: dict, xrec: torch.Tensor) -> torch.Tensor:
        return psnr(quantize_8bit(xrec), batch["image"])

    def summary(self, scores: list[torch.Tensor]) -> dict[str, float]:
        return {"psnr": torch.cat(scores).mean().item()}

    def export(self, folder: Path, trainer: Trainer) -> None:
        super().export(folder, trainer)
        trainer.model("disc").save_pretrained(folder / DISCRIMINATOR_FOLDER)
