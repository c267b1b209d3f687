"""Training an AdatGAN on pixels: the task plugged into the shared engine (spec adatgan §7-§8).

Per step: ``d_steps`` discriminator updates (fresh z each, the same real batch), then one
generator update. D's loss is the adversarial loss on DiffAugment-ed real and fake images (the
same policy, independent draws per sample), plus ``r1_gamma / 2 * R1`` on the augmented real
images (every step, no lazy regularisation) and, when its weights are > 0, bCR between D on the
plain and on the augmented images. G's loss goes through D on augmented fakes. The global
gradient norms of G and D are logged every step (``grad_norm_g``, ``grad_norm_d``) and plotted
into ``grad_norms.png`` when training ends.

Evaluation: FID of the EMA generator when the Inception weights are on disk, else the offline
FD-FMNIST (``fd_fmnist``), between ``train.eval_images`` validation images and as many samples
from a fixed noise. Both are biased by the set size: compare values at equal counts only.
"""

from __future__ import annotations

from pathlib import Path

import torch
from accelerate.utils import set_seed

from gan_direct.adatgan import AdatDiscriminator, AdatGenerator
from gan_direct.config import AdatGANConfig
from shared.augment import diff_augment, parse_policy
from shared.config import ConfigError
from shared.data import build_dataset
from shared.engine import Task, Trainer, frozen, make_accelerator, train_run
from shared.gan_losses import bcr_penalty, discriminator_loss, generator_loss, r1_penalty
from shared.run import check_run_dir, read_metrics

GRID_SAMPLES = 64
EVAL_SEED = 1234


class GANTask(Task):
    ema_model = "generator"

    def __init__(self, cfg: AdatGANConfig):
        self.cfg = cfg
        self.models = {
            "generator": AdatGenerator(**vars(cfg.generator)),
            "discriminator": AdatDiscriminator(**vars(cfg.discriminator)),
        }
        self.state = {}
        self.fid_model = None

    def setup(self, trainer: Trainer) -> None:
        g = torch.Generator().manual_seed(self.cfg.train.seed)
        self.fixed_z = torch.randn(GRID_SAMPLES, self.cfg.generator.z_dim, generator=g)
        self.fixed_z = self.fixed_z.to(trainer.device)

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

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.loss.diffaug) if self.cfg.loss.diffaug else x

    def noise(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.cfg.generator.z_dim, device=device)

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, float]:
        loss_cfg = self.cfg.loss
        g, d = self.models["generator"], self.models["discriminator"]
        real = batch["image"]
        logs: dict[str, float] = {}
        for _ in range(self.cfg.train.d_steps):
            with torch.no_grad():
                fake = g(self.noise(len(real), real.device))
            real_aug, fake_aug = self.augment(real), self.augment(fake)
            if loss_cfg.r1_gamma > 0:
                real_aug = real_aug.detach().requires_grad_(True)
            real_logits, fake_logits = d(real_aug), d(fake_aug)
            d_loss = discriminator_loss(loss_cfg.gan_loss, real_logits, fake_logits)
            logs.update(d_real=real_logits.mean().item(), d_fake=fake_logits.mean().item())
            if loss_cfg.r1_gamma > 0:
                r1 = r1_penalty(real_logits, real_aug)
                d_loss = d_loss + loss_cfg.r1_gamma / 2 * r1
                logs["r1"] = r1.item()
            if loss_cfg.bcr_real > 0 or loss_cfg.bcr_fake > 0:
                bcr = bcr_penalty(
                    d(real), real_logits, d(fake), fake_logits, loss_cfg.bcr_real, loss_cfg.bcr_fake
                )
                d_loss = d_loss + bcr
                logs["bcr"] = bcr.item()
            logs["d_loss"] = d_loss.item()
            logs["grad_norm_d"] = trainer.optimize("discriminator", d_loss, grad_norm=True)
        with frozen(trainer.model("discriminator")):
            fake_logits = d(self.augment(g(self.noise(len(real), real.device))))
            g_loss = generator_loss(loss_cfg.gan_loss, fake_logits)
        logs["g_loss"] = g_loss.item()
        logs["grad_norm_g"] = trainer.optimize("generator", g_loss, grad_norm=True)
        return {k: v for k, v in logs.items() if v is not None}

    def sample(self, batch: dict, trainer: Trainer) -> torch.Tensor:
        """The EMA generator on a fixed noise, clamped to [-1, 1]."""
        return trainer.model("generator", ema=True)(self.fixed_z).clamp(-1, 1)

    def evaluate(self, loader, trainer: Trainer) -> dict[str, float]:
        """``fid`` (Inception weights on disk) or ``fd_fmnist`` of the EMA generator against the
        validation images of ``loader``, with as many samples from a fixed noise."""
        real = torch.cat([b["image"] for b in loader]).to(trainer.device)
        fake = generate(trainer.model("generator", ema=True), len(real), EVAL_SEED, trainer.device)
        name, value = distance(real, fake)
        return {name: value}

    def export(self, folder: Path, trainer: Trainer) -> None:
        trainer.model("generator", ema=True).save_pretrained(folder / "generator")
        trainer.model("discriminator").save_pretrained(folder / "discriminator")
        plot_grad_norms(trainer.run_dir)


@torch.no_grad()
def generate(
    generator: AdatGenerator, n: int, seed: int, device, batch_size: int = 256
) -> torch.Tensor:
    """``n`` images in [-1, 1] from the noise of ``seed`` (the same images for the same seed)."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randn(n, generator.z_dim, generator=g)
    return torch.cat([generator(c.to(device)).clamp(-1, 1) for c in z.split(batch_size)])


def distance(real: torch.Tensor, fake: torch.Tensor) -> tuple[str, float]:
    """("fid", FID) when the Inception weights are available, else ("fd_fmnist", FD-FMNIST)."""
    from shared.inception import inception_available

    if inception_available():
        from shared.inception import build_fid_inception
        from shared.metrics import FrechetDistance

        net = build_fid_inception().to(real.device)
        fd = FrechetDistance(net)
        rgb = (lambda x: x.expand(-1, 3, -1, -1)) if real.shape[1] == 1 else (lambda x: x)
        for x, is_real in ((real, True), (fake, False)):
            for chunk in x.split(64):
                fd.update(rgb(chunk), real=is_real)
        return "fid", fd.compute()
    from shared.fmnist_classifier import fd_fmnist

    return "fd_fmnist", fd_fmnist(real, fake)


def plot_grad_norms(run_dir: Path) -> Path | None:
    """``grad_norms.png``: the logged global gradient norms of G and D against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = [r for r in read_metrics(run_dir) if "grad_norm_g" in r]
    if not records:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key, label in (("grad_norm_g", "G"), ("grad_norm_d", "D")):
        points = [(r["step"], r[key]) for r in records if key in r]
        ax.plot(*zip(*points, strict=True), label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("global gradient L2 norm")
    ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    path = Path(run_dir) / "grad_norms.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def train(
    cfg: AdatGANConfig, output: str | Path, resume: bool = False, overwrite: bool = False
) -> Path:
    """Train an AdatGAN into the run folder ``output``; returns that folder."""
    output = Path(output)
    res = cfg.data.resolution
    if cfg.generator.resolution != res or cfg.discriminator.resolution != res:
        raise ConfigError(
            f"generator.resolution ({cfg.generator.resolution}) and discriminator.resolution "
            f"({cfg.discriminator.resolution}) must equal data.resolution ({res})"
        )
    if cfg.data.channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 or 3, got {cfg.data.channels}")
    try:
        parse_policy(cfg.loss.diffaug)
    except ValueError as e:
        raise ConfigError(f"loss.diffaug: {e}") from None
    if cfg.train.d_steps < 1:
        raise ConfigError("train.d_steps must be at least 1")
    cfg.generator.out_channels = cfg.discriminator.in_channels = cfg.data.channels
    check_run_dir(output, overwrite, resume)
    accelerator = make_accelerator(cfg.train, output)
    set_seed(cfg.train.seed)
    train_data = build_dataset(cfg.data, "train", seed=cfg.train.seed)
    val_data = build_dataset(cfg.data, "val", seed=cfg.train.seed)
    task = GANTask(cfg)
    return train_run(
        task, cfg, output, train_data, val_data, accelerator, resume=resume, overwrite=overwrite
    )


def load_generator(path: str | Path) -> AdatGenerator:
    """The (EMA) generator in eval mode from a run folder, its ``model`` folder or the
    ``model/generator`` folder itself."""
    from shared.checkpoint import CheckpointError

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    for folder in (path, path / "generator", path / "model" / "generator"):
        if (folder / "config.json").is_file():
            return AdatGenerator.from_pretrained(folder)
    raise CheckpointError(
        f"{path} holds no exported AdatGAN generator (model/generator/config.json); "
        "finish the run (or --resume it) to export one"
    )
