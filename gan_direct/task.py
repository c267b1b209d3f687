"""The training task of any registered pixel GAN, plugged into the shared engine.

Per step: ``d_steps`` discriminator updates (fresh z each, the same real batch), then
``g_steps`` generator updates. D's loss is the adversarial loss (BCE with optional label
smoothing, hinge, or the WGAN critic) on DiffAugment-ed real and fake samples, plus the enabled
regularisers: WGAN-GP, ProGAN's drift term, ``r1_gamma / 2 * R1`` on the augmented reals and
bCR. G's loss goes through D on augmented fakes. Class-conditional runs give G the labels of
the real batch. With ``train.grow_steps`` and a growing network (ProGAN) the resolution follows
the progressive schedule (:mod:`gan_direct.growing`), with the reals faded in as well. The
global gradient norms of G and D are logged every step and plotted into ``grad_norms.png`` when
training ends. Evaluation: :mod:`gan_direct.evaluate`; for 2-D points a scatter plot per sample
step and an animation ``training.gif`` of them at the end.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from gan_direct.augment import diff_augment
from gan_direct.config import GANConfig, GANLossConfig
from gan_direct.evaluate import generator_distance
from gan_direct.growing import ProgressiveGrowth
from gan_direct.plots import animate, plot_grad_norms, scatter_plot
from gan_direct.registry import build
from gan_direct.sample import apply, class_labels
from shared.data import POINT_SOURCES, save_class_names
from shared.engine import Scalar, Task, Trainer
from shared.gan_objective import GANObjective

GRID_SAMPLES = 64
SCATTER_POINTS = 1000


def objective(loss: GANLossConfig) -> GANObjective:
    """The GAN objective of a ``loss`` recipe (DiffAugment when ``loss.diffaug`` names a policy)."""
    return GANObjective(
        loss.gan_loss,
        real_label=loss.real_label,
        fake_label=loss.fake_label,
        r1_gamma=loss.r1_gamma,
        gp_lambda=loss.gp_lambda,
        drift=loss.drift,
        bcr_real=loss.bcr_real,
        bcr_fake=loss.bcr_fake,
        augment=partial(diff_augment, policy=loss.diffaug) if loss.diffaug else None,
    )


class GANTask(Task):
    ema_model = "generator"

    def __init__(self, cfg: GANConfig, class_names: list[str] | None = None):
        self.cfg, self.class_names = cfg, list(class_names or [])
        self.models = {
            "generator": build("generator", cfg.generator),
            "discriminator": build("discriminator", cfg.discriminator),
        }
        self.state = {}
        self.objective = objective(cfg.loss)
        self.points = cfg.data.source in POINT_SOURCES
        self.key = "points" if self.points else "image"
        gen = self.models["generator"]
        self.z_dim, self.num_classes = gen.z_dim, gen.num_classes
        self.growth = (
            ProgressiveGrowth.for_resolution(cfg.train.grow_steps, cfg.data.resolution)
            if cfg.train.grow_steps > 0 and gen.grows
            else None
        )

    def setup(self, trainer: Trainer) -> None:
        g = torch.Generator().manual_seed(self.cfg.train.seed)
        n = SCATTER_POINTS if self.points else GRID_SAMPLES
        self.fixed_z = torch.randn(n, self.z_dim, generator=g).to(trainer.device)
        self.fixed_labels = class_labels(n, self.num_classes, trainer.device)

    def configure_optimizers(self) -> dict[str, torch.optim.Optimizer]:
        t = self.cfg.train
        betas = tuple(t.adam_betas)
        return {
            "generator": torch.optim.Adam(
                self.models["generator"].parameters(), lr=t.lr, betas=betas
            ),
            "discriminator": torch.optim.Adam(
                self.models["discriminator"].parameters(), lr=t.lr_d, betas=betas
            ),
        }

    def noise(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.z_dim, device=device)

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, Scalar]:
        g, d = self.models["generator"], self.models["discriminator"]
        real = batch[self.key]
        labels = batch["label"] if self.num_classes else None
        logs: dict[str, Scalar] = {}
        if self.growth is not None:
            networks = (
                trainer.model("generator"),
                trainer.model("discriminator"),
                trainer.model("generator", ema=True),
            )
            real, stage, alpha = self.growth.apply(step, networks, real)
            logs.update(stage=stage, alpha=alpha)
        cond = (labels,) if labels is not None else ()
        for _ in range(self.cfg.train.d_steps):
            with torch.no_grad():
                fake = apply(g, self.noise(len(real), real.device), labels)
            d_loss, d_logs = self.objective.discriminator_loss(d, real, fake, *cond)
            logs.update(d_logs, d_loss=d_loss.detach())  # here d_loss holds the regularisers too
            logs["grad_norm_d"] = trainer.optimize("discriminator", d_loss, grad_norm=True)
        for _ in range(self.cfg.train.g_steps):
            fake = apply(g, self.noise(len(real), real.device), labels)
            g_loss = self.objective.generator_loss(trainer.model("discriminator"), fake, *cond)
            logs["g_loss"] = g_loss.detach()
            logs["grad_norm_g"] = trainer.optimize("generator", g_loss, grad_norm=True)
        return {k: v for k, v in logs.items() if v is not None}

    def sample(self, batch: dict, trainer: Trainer) -> torch.Tensor | None:
        """The EMA generator on a fixed noise (a grid row per class), clamped to [-1, 1]; for
        points, a scatter plot ``samples/step_N.png`` over the data instead (returns None)."""
        out = apply(trainer.model("generator", ema=True), self.fixed_z, self.fixed_labels)
        if not self.points:
            return out.clamp(-1, 1)
        data = trainer.val_data.points[:SCATTER_POINTS] if trainer.val_data else None
        path = trainer.run_dir / "samples" / f"step_{trainer.step:06d}.png"
        scatter_plot(out.cpu(), data, path, f"step {trainer.step}")
        return None

    def evaluate(self, loader, trainer: Trainer) -> dict[str, float]:
        """:func:`~gan_direct.evaluate.generator_distance` of the EMA generator against the
        validation samples of ``loader``."""
        real = torch.cat([b[self.key] for b in loader]).to(trainer.device)
        return generator_distance(trainer.model("generator", ema=True), real, self.points)

    def export(self, folder: Path, trainer: Trainer) -> None:
        trainer.model("generator", ema=True).save_pretrained(folder / "generator")
        if self.num_classes:
            save_class_names(folder / "generator", self.class_names)
        trainer.model("discriminator").save_pretrained(folder / "discriminator")
        plot_grad_norms(trainer.run_dir)
        if self.points:
            animate(sorted((trainer.run_dir / "samples").glob("step_*.png")), trainer.run_dir)
