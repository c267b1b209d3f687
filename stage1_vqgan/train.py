"""Training a VQGAN tokenizer: the task plugged into the shared engine."""

from __future__ import annotations

from contextlib import contextmanager
from pathlib import Path

import torch
from accelerate.utils import set_seed
from torch import nn

from shared.config import ConfigError, save_yaml, to_dict
from shared.data import build_dataset
from shared.engine import Task, Trainer, make_accelerator
from shared.images import quantize_8bit
from shared.metrics import psnr
from shared.pretrained import load_state
from shared.run import check_run_dir, prepare_run_dir
from stage1_vqgan.config import ModelConfig, VQGANConfig
from stage1_vqgan.discriminator import PatchDiscriminator
from stage1_vqgan.load import load_tokenizer_and_discriminator, save_discriminator
from stage1_vqgan.losses import VQGANLoss
from stage1_vqgan.model import VQModel


@contextmanager
def frozen(module: nn.Module):
    """Parameters of ``module`` take no gradient inside the block (gradients still reach inputs)."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(f)


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
        disc = PatchDiscriminator(cfg.model.out_channels, cfg.loss.disc_ndf, cfg.loss.disc_layers)
        if disc_state is not None:
            load_state(disc, disc_state, f"{cfg.init_from} (discriminator)")
        self.models = {"ae": ae, "disc": disc}
        self.loss = VQGANLoss(cfg.loss)
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

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, float]:
        x = batch["image"]
        ae, disc = self.models["ae"], self.models["disc"]
        xrec, q = ae(x)
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
            d_loss, d_logs = self.loss.discriminator(disc(x.detach()), disc(xrec.detach()))
            trainer.optimize("disc", d_loss)
            logs.update(d_logs)
        return logs

    def sample(self, batch: dict, trainer: Trainer) -> torch.Tensor:
        """Originals above their reconstructions."""
        x = batch["image"]
        xrec, _ = trainer.model("ae", ema=True)(x)
        return torch.cat([x, xrec.clamp(-1, 1)])

    def evaluate(self, loader, trainer: Trainer) -> dict[str, float]:
        model = trainer.model("ae", ema=True)
        scores, codes = [], []
        for batch in loader:
            x = batch["image"].to(trainer.device)
            xrec, q = model(x)
            scores.append(psnr(quantize_8bit(xrec), x))
            codes.append(q.indices.flatten())
        used = torch.unique(torch.cat(codes)).numel()
        return {"psnr": torch.cat(scores).mean().item(), "usage": used / model.n_embed}

    def export(self, folder: Path, trainer: Trainer) -> None:
        trainer.model("ae", ema=True).save_pretrained(folder)
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
    if cfg.data.channels != cfg.model.in_channels:
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
        raise ConfigError("model.out_channels must equal model.in_channels to reconstruct images")
    check_run_dir(output, overwrite, resume)
    accelerator = make_accelerator(cfg.train, output)
    set_seed(cfg.train.seed)
    train_data = build_dataset(cfg.data, "train", seed=cfg.train.seed)
    val_data = build_dataset(cfg.data, "val", seed=cfg.train.seed)
    task = VQGANTask(cfg)
    if accelerator.is_main_process:
        prepare_run_dir(output, overwrite=overwrite, resume=resume)
        save_yaml(cfg, output / "config.yaml")
    accelerator.wait_for_everyone()
    trainer = Trainer(
        task,
        cfg.train,
        output,
        train_data,
        val_data,
        resume=resume,
        accelerator=accelerator,
        hparams=to_dict(cfg),
    )
    trainer.fit()
    return output
