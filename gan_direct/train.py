"""Training any registered pixel GAN: one task plugged into the shared engine.

Per step: ``d_steps`` discriminator updates (fresh z each, the same real batch), then
``g_steps`` generator updates. D's loss is the adversarial loss (BCE with optional label
smoothing, hinge, or the WGAN critic) on DiffAugment-ed real and fake samples, plus the enabled
regularisers: WGAN-GP, ProGAN's drift term, ``r1_gamma / 2 * R1`` on the augmented reals and
bCR. G's loss goes through D on augmented fakes. Class-conditional runs give G the labels of
the real batch. With ``train.grow_steps`` and a growing network (ProGAN) the resolution follows
the progressive schedule, with the reals faded in as well. The global gradient norms of G and
D are logged every step and plotted into ``grad_norms.png`` when training ends.

Evaluation: FID of the EMA generator when the Inception weights are on disk, else the offline
FD-FMNIST (``fd_fmnist``), between ``train.eval_images`` validation images and as many samples
from a fixed noise (biased by the set size: compare values at equal counts only); for 2-D
points, the sliced Wasserstein distance (``swd``), with a scatter plot per sample step and an
animation ``training.gif`` of them at the end.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch
import torch.nn.functional as F
from accelerate.utils import set_seed

from gan_direct.config import GANConfig
from gan_direct.registry import build, model_types, resolve
from shared.augment import diff_augment, parse_policy
from shared.config import ConfigError, DataConfig
from shared.data import build_dataset, load_class_names, save_class_names
from shared.engine import Task, Trainer, frozen, make_accelerator, train_run
from shared.gan_losses import (
    bcr_penalty,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)
from shared.points import POINT_SOURCES
from shared.run import check_run_dir, read_metrics

GRID_SAMPLES = 64
SCATTER_POINTS = 1000
EVAL_SEED = 1234


def data_shape(data: DataConfig) -> tuple[int, ...]:
    """The shape of one sample: ``(2,)`` for the 2-D toy sources, else ``(C, R, R)``."""
    if data.source in POINT_SOURCES:
        return (2,)
    return (data.channels, data.resolution, data.resolution)


def class_labels(n: int, num_classes: int, device=None) -> torch.Tensor | None:
    """``n`` labels cycling through the classes in runs of 8 (a grid row per class), or None."""
    if not num_classes:
        return None
    return (torch.arange(n, device=device) // 8) % num_classes


def apply(net, x: torch.Tensor, labels: torch.Tensor | None, **kwargs) -> torch.Tensor:
    """``net(x)`` or, for a class-conditional run, ``net(x, labels)``."""
    return net(x, **kwargs) if labels is None else net(x, labels, **kwargs)


class GANTask(Task):
    ema_model = "generator"

    def __init__(self, cfg: GANConfig, class_names: list[str] | None = None):
        self.cfg, self.class_names = cfg, list(class_names or [])
        self.models = {
            "generator": build("generator", cfg.generator),
            "discriminator": build("discriminator", cfg.discriminator),
        }
        self.state = {}
        self.points = cfg.data.source in POINT_SOURCES
        self.key = "points" if self.points else "image"
        gen = self.models["generator"]
        self.z_dim, self.num_classes = gen.z_dim, gen.num_classes
        self.growing = cfg.train.grow_steps > 0 and hasattr(gen, "grow")
        if self.growing:
            self.final_stage = int(math.log2(cfg.data.resolution)) - 2

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

    def grow(self, step: int, trainer: Trainer) -> tuple[int, float]:
        """Set the progressive stage and fade-in alpha of G, D and the EMA G for ``step``."""
        from gan_direct.progan import progressive_schedule

        stage, alpha = progressive_schedule(step, self.cfg.train.grow_steps, self.final_stage)
        for net in (
            trainer.model("generator"),
            trainer.model("discriminator"),
            trainer.model("generator", ema=True),
        ):
            net.grow(stage, alpha)
        return stage, alpha

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.cfg.loss.diffaug) if self.cfg.loss.diffaug else x

    def noise(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.randn(n, self.z_dim, device=device)

    def d_loss(self, d, real, fake, labels, logs: dict) -> torch.Tensor:
        loss_cfg = self.cfg.loss
        real_aug, fake_aug = self.augment(real), self.augment(fake)
        if loss_cfg.r1_gamma > 0:
            real_aug = real_aug.detach().requires_grad_(True)
        real_logits, fake_logits = apply(d, real_aug, labels), apply(d, fake_aug, labels)
        loss = discriminator_loss(
            loss_cfg.gan_loss, real_logits, fake_logits, loss_cfg.real_label, loss_cfg.fake_label
        )
        logs.update(d_real=real_logits.mean().item(), d_fake=fake_logits.mean().item())
        extra = (labels,) if labels is not None else ()
        if loss_cfg.gp_lambda > 0:
            gp = gradient_penalty(d, real_aug, fake_aug, *extra)
            loss = loss + loss_cfg.gp_lambda * gp
            logs["gp"] = gp.item()
        if loss_cfg.drift > 0:
            loss = loss + loss_cfg.drift * real_logits.float().square().mean()
        if loss_cfg.r1_gamma > 0:
            r1 = r1_penalty(real_logits, real_aug)
            loss = loss + loss_cfg.r1_gamma / 2 * r1
            logs["r1"] = r1.item()
        if loss_cfg.bcr_real > 0 or loss_cfg.bcr_fake > 0:
            bcr = bcr_penalty(
                apply(d, real, labels),
                real_logits,
                apply(d, fake, labels),
                fake_logits,
                loss_cfg.bcr_real,
                loss_cfg.bcr_fake,
            )
            loss = loss + bcr
            logs["bcr"] = bcr.item()
        return loss

    def training_step(self, batch: dict, step: int, trainer: Trainer) -> dict[str, float]:
        g, d = self.models["generator"], self.models["discriminator"]
        real = batch[self.key]
        labels = batch["label"] if self.num_classes else None
        logs: dict[str, float] = {}
        if self.growing:
            from gan_direct.progan import blend_reals

            stage, alpha = self.grow(step, trainer)
            real = blend_reals(real, stage, alpha)
            logs.update(stage=stage, alpha=alpha)
        for _ in range(self.cfg.train.d_steps):
            with torch.no_grad():
                fake = apply(g, self.noise(len(real), real.device), labels)
            d_loss = self.d_loss(d, real, fake, labels, logs)
            logs["d_loss"] = d_loss.item()
            logs["grad_norm_d"] = trainer.optimize("discriminator", d_loss, grad_norm=True)
        for _ in range(self.cfg.train.g_steps):
            with frozen(trainer.model("discriminator")):
                fake = apply(g, self.noise(len(real), real.device), labels)
                g_loss = generator_loss(
                    self.cfg.loss.gan_loss, apply(d, self.augment(fake), labels)
                )
            logs["g_loss"] = g_loss.item()
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
        """``fid`` or ``fd_fmnist`` (images) or ``swd`` (points) of the EMA generator against
        the validation samples of ``loader``, with as many samples from a fixed noise."""
        from shared.metrics import sliced_wasserstein

        real = torch.cat([b[self.key] for b in loader]).to(trainer.device)
        if len(real) < 2:  # a distance of distributions needs two samples (data summary warns)
            return {}
        gen = trainer.model("generator", ema=True)
        fake = generate(gen, len(real), EVAL_SEED, trainer.device)
        if self.points:
            return {"swd": sliced_wasserstein(real, fake)}
        if fake.shape[-1] != real.shape[-1]:  # a growing generator below its final size
            fake = F.interpolate(fake, size=real.shape[-2:], mode="nearest")
        name, value = distance(real, fake)
        return {name: value}

    def export(self, folder: Path, trainer: Trainer) -> None:
        trainer.model("generator", ema=True).save_pretrained(folder / "generator")
        if self.num_classes:
            save_class_names(folder / "generator", self.class_names)
        trainer.model("discriminator").save_pretrained(folder / "discriminator")
        plot_grad_norms(trainer.run_dir)
        if self.points:
            animate(sorted((trainer.run_dir / "samples").glob("step_*.png")), trainer.run_dir)


@torch.no_grad()
def generate(
    generator,
    n: int,
    seed: int,
    device,
    batch_size: int = 256,
    labels: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """``n`` samples from the noise of ``seed`` (the same samples for the same seed); see
    :func:`generate_from`."""
    z = torch.randn(n, generator.z_dim, generator=torch.Generator().manual_seed(seed))
    return generate_from(generator, z, device, batch_size, labels, **kwargs)


@torch.no_grad()
def generate_from(
    generator,
    z: torch.Tensor,
    device,
    batch_size: int = 256,
    labels: torch.Tensor | None = None,
    **kwargs,
) -> torch.Tensor:
    """``generator`` on the noise ``z`` (N, z_dim), ``batch_size`` at a time, on ``device``;
    images clamped to [-1, 1]. A class-conditional generator gets ``labels`` (default: cycling
    through the classes); ``kwargs`` go to the generator (e.g. ``psi``)."""
    if labels is None:
        labels = class_labels(len(z), generator.num_classes)
    out = []
    for start in range(0, len(z), batch_size):
        y = None if labels is None else labels[start : start + batch_size].to(device)
        x = apply(generator, z[start : start + batch_size].to(device), y, **kwargs)
        out.append(x.clamp(-1, 1) if x.dim() == 4 else x)
    return torch.cat(out)


def distance(real: torch.Tensor, fake: torch.Tensor) -> tuple[str, float]:
    """("fid", FID) on CUDA when the Inception weights are available, else ("fd_fmnist",
    FD-FMNIST): on a CPU the Inception runs at about 7 images/s, too slow for training evals."""
    from shared.inception import inception_available

    if real.device.type == "cuda" and inception_available():
        from shared.inception import build_fid_inception
        from shared.metrics import FrechetDistance

        net = build_fid_inception().to(real.device)
        fd = FrechetDistance(net)
        for x, is_real in ((real, True), (fake, False)):
            for chunk in x.split(64):  # grey images: the Inception repeats them to RGB itself
                fd.update(chunk, real=is_real)
        return "fid", fd.compute()
    from shared.fmnist_classifier import fd_fmnist

    return "fd_fmnist", fd_fmnist(real, fake)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def scatter_plot(
    points: torch.Tensor, data: torch.Tensor | None, path: Path, title: str = ""
) -> Path:
    """A PNG of generated 2-D ``points`` (N, 2) in orange over ``data`` in grey, fixed axes."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(4, 4))
    if data is not None:
        ax.scatter(*data.T, s=2, c="0.7", label="data")
    ax.scatter(*points.T, s=2, c="tab:orange", label="generated")
    ax.set(xlim=(-3, 3), ylim=(-3, 3), aspect="equal", title=title)
    ax.legend(loc="upper right", markerscale=4)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def animate(frames: list[Path], run_dir: Path, seconds_per_frame: float = 0.4) -> Path | None:
    """``training.gif`` of the scatter frames, looping."""
    if not frames:
        return None
    import imageio.v2 as imageio

    path = Path(run_dir) / "training.gif"
    imageio.mimsave(path, [imageio.imread(f) for f in frames], duration=seconds_per_frame, loop=0)
    return path


def plot_grad_norms(run_dir: Path) -> Path | None:
    """``grad_norms.png``: the logged global gradient norms of G and D against the step."""
    records = [r for r in read_metrics(run_dir) if "grad_norm_g" in r]
    if not records:
        return None
    plt = _pyplot()
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


def prepare(cfg: GANConfig, num_classes: int = 0) -> GANConfig:
    """Check ``cfg`` and resolve its networks against its data (in place); returns it."""
    if cfg.data.source not in POINT_SOURCES and cfg.data.channels not in (1, 3):
        raise ConfigError(f"data.channels must be 1 or 3, got {cfg.data.channels}")
    try:
        parse_policy(cfg.loss.diffaug)
    except ValueError as e:
        raise ConfigError(f"loss.diffaug: {e}") from None
    if cfg.loss.diffaug and cfg.data.source in POINT_SOURCES:
        raise ConfigError("loss.diffaug applies to images, not to 2-D points")
    if cfg.train.d_steps < 1 or cfg.train.g_steps < 1:
        raise ConfigError("train.d_steps and train.g_steps must be at least 1")
    shape = data_shape(cfg.data)
    cfg.generator = resolve("generator", cfg.generator, shape, num_classes)
    cfg.discriminator = resolve("discriminator", cfg.discriminator, shape, num_classes)
    return cfg


def preset_networks(
    preset: str, overrides: list[str] = (), num_classes: int | None = None
) -> tuple[GANConfig, torch.nn.Module, torch.nn.Module]:
    """(resolved config, generator, discriminator) of a preset name or YAML file with dotted
    ``overrides``; a conditional preset takes its data's classes unless ``num_classes`` is
    given."""
    from shared.config import build_config, read_preset

    cfg = build_config(GANConfig, read_preset(preset, "gan_direct"), overrides=list(overrides))
    if num_classes is None:
        num_classes = build_dataset(cfg.data, "val").num_classes if cfg.conditional else 0
    prepare(cfg, num_classes if cfg.conditional else 0)
    return cfg, build("generator", cfg.generator), build("discriminator", cfg.discriminator)


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
    prepare(cfg, num_classes)
    accelerator = make_accelerator(cfg.train, output)
    set_seed(cfg.train.seed)
    task = GANTask(cfg, train_data.class_names if num_classes else None)
    return train_run(
        task, cfg, output, train_data, val_data, accelerator, resume=resume, overwrite=overwrite
    )


def load_generator(path: str | Path):
    """The (EMA) generator in eval mode from a run folder, its ``model`` folder or the
    ``model/generator`` folder itself, whatever its registered kind."""

    from shared.checkpoint import CheckpointError
    from shared.pretrained import CONFIG_FILE, read_json
    from shared.release import resolve_checkpoint

    path = resolve_checkpoint(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    for folder in (path, path / "generator", path / "model" / "generator"):
        if (folder / CONFIG_FILE).is_file():
            kind = read_json(folder / CONFIG_FILE).get("model_type")
            classes = model_types()
            if kind not in classes or not kind.endswith("-generator"):
                raise CheckpointError(f"{folder} holds a '{kind}' model, not a GAN generator")
            generator = classes[kind].from_pretrained(folder)
            generator.class_names = load_class_names(folder, generator.num_classes)
            return generator
    raise CheckpointError(
        f"{path} holds no exported generator (model/generator/config.json); "
        "finish the run (or --resume it) to export one"
    )
