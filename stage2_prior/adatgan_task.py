"""Training the AdatGAN prior (:mod:`stage2_prior.adatgan_prior`) in the shared engine: the
generator against its discriminator on embedded real code grids."""

from __future__ import annotations

from pathlib import Path

import torch

from shared.engine import Scalar, Task, Trainer
from shared.gan_losses import mode_seeking_penalty
from shared.gan_objective import GANObjective
from stage2_prior.adatgan_prior import AdatPriorDiscriminator
from stage2_prior.config import PriorConfig
from stage2_prior.prior import Prior

LOSS = "non_saturating"
LOG_NAMES = {"d_loss": "loss_d"}  # the prior's name for D's adversarial loss


def total_variation(p: torch.Tensor, q: torch.Tensor) -> float:
    """0.5 * ||p - q||_1 of two histograms: 0 identical, 1 disjoint."""
    return 0.5 * (p - q).abs().sum().item()


class AdatPriorTask(Task):
    """D step (non-saturating loss + gamma/2 R1 on the embedded real grids), then G step on its
    latents (both with instance noise; with ``adatgan.mode_seeking`` > 0 the G step pairs the
    two halves of its batch under the same labels and adds MSGAN's term on the clean latents);
    EMA of G is what is sampled and exported."""

    ema_model = "generator"

    def __init__(self, cfg: PriorConfig, prior: Prior):
        self.cfg, self.prior = cfg, prior
        g = prior.net
        a = cfg.adatgan
        d = AdatPriorDiscriminator(
            prior.tokenizer.config["embed_dim"],
            g.window,
            a.d_dim,
            a.heads,
            a.mlp_dim,
            g.spec.num_classes if g.spec.condition == "class" else 0,
            a.minibatch_std,
        )
        self.models = {"generator": g, "discriminator": d}
        self.objective = GANObjective(LOSS, r1_gamma=a.r1_gamma, log_names=LOG_NAMES)

    def setup(self, trainer: Trainer) -> None:
        self.prior.tokenizer.to(trainer.device).eval()

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t, betas = self.cfg.train, tuple(self.cfg.train.adam_betas)
        return {
            "generator": torch.optim.Adam(self.models["generator"].parameters(), t.lr, betas),
            "discriminator": torch.optim.Adam(
                self.models["discriminator"].parameters(), self.cfg.adatgan.lr_d, betas
            ),
        }

    def labels(self, batch: dict) -> torch.Tensor | None:
        return batch["label"] if self.prior.net.spec.condition == "class" else None

    def embed_indices(self, codes: torch.Tensor) -> torch.Tensor:
        """(B,h,w) indices -> (B,embed_dim,h,w) codebook vectors."""
        return self.prior.net.codebook[codes].permute(0, 3, 1, 2)

    def noisy(self, grid: torch.Tensor) -> torch.Tensor:
        """Instance noise N(0, noise^2) on every grid D sees, real or generated."""
        return grid + self.cfg.adatgan.noise * torch.randn_like(grid)

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, Scalar]:
        g, d = self.models["generator"], self.models["discriminator"]
        codes, labels = batch["codes"], self.labels(batch)
        z = torch.randn(codes.shape[0], self.prior.net.spec.z_dim, device=codes.device)

        with torch.no_grad():
            fake = self.noisy(g(z, labels).float())
        real = self.noisy(self.embed_indices(codes))
        loss_d, logs = self.objective.discriminator_loss(d, real, fake, labels)
        trainer.optimize("discriminator", loss_d)

        weight, pairs = self.cfg.adatgan.mode_seeking, 2 * (codes.shape[0] // 2)
        seek = weight > 0 and pairs > 0  # a batch of one has no pair
        if seek and labels is not None:  # rows i and i + pairs/2 share a label
            half = labels[: pairs // 2]
            labels = torch.cat([half, half, labels[pairs:]])
        latents = g(z, labels).float()
        loss_g = self.objective.generator_loss(
            trainer.model("discriminator"), self.noisy(latents), labels
        )
        if seek:
            spread = mode_seeking_penalty(latents[:pairs], z[:pairs])
            loss_g = loss_g + weight * spread
            logs["mode_seeking"] = spread.detach()
        trainer.optimize("generator", loss_g)
        logs.setdefault("r1", 0.0)  # logged even with R1 off
        return {**logs, "loss_g": loss_g.detach()}

    def generate(self, trainer: Trainer, batch: dict, seed: int) -> torch.Tensor:
        net = trainer.model("generator", ema=True)
        gen = torch.Generator(device=trainer.device).manual_seed(seed)
        return net.sample(batch["codes"].shape[0], condition=self.labels(batch), generator=gen)

    def sample(self, batch: dict, trainer: Trainer) -> torch.Tensor:
        """Decoded training codes above samples for the same labels."""
        samples = self.generate(trainer, batch, self.cfg.train.seed)
        tok = self.prior.tokenizer
        return torch.cat([tok.decode(batch["codes"]), tok.decode(samples)]).clamp(-1, 1)

    def evaluate(self, loader, trainer: Trainer) -> dict[str, float]:
        """``code_tv``: total variation between the code histograms of the validation grids and
        of as many EMA-generator samples with the same labels (0 = same code frequencies)."""
        k = self.prior.net.spec.n_codes
        real, fake = torch.zeros(k, dtype=torch.float64), torch.zeros(k, dtype=torch.float64)
        for i, batch in enumerate(loader):
            batch = {key: v.to(trainer.device) for key, v in batch.items()}
            real += torch.bincount(batch["codes"].flatten().cpu(), minlength=k)
            fake += torch.bincount(self.generate(trainer, batch, i).flatten().cpu(), minlength=k)
        return {"code_tv": total_variation(real / real.sum(), fake / fake.sum())}

    def export(self, folder: Path, trainer: Trainer) -> None:
        self.prior.with_network(trainer.model("generator", ema=True)).save_pretrained(folder)
