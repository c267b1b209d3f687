"""One GAN objective for every adversarial task: the discriminator's loss with its regularisers
and the generator's adversarial term through a frozen discriminator.

``d(x, *cond)`` is any discriminator returning logits (any shape, batch first; patch maps are
averaged); ``cond`` are its extra inputs (e.g. class labels). The loss kinds and regularisers
themselves are in :mod:`shared.gan_losses`."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import nn

from shared.gan_losses import (
    LeCam,
    bcr_penalty,
    discriminator_loss,
    generator_loss,
    gradient_penalty,
    r1_penalty,
)


@contextmanager
def frozen(module: nn.Module):
    """Parameters of ``module`` take no gradient inside the block (gradients still reach inputs),
    and get their own ``requires_grad`` back on leaving it, also when the block raises."""
    flags = [p.requires_grad for p in module.parameters()]
    module.requires_grad_(False)
    try:
        yield module
    finally:
        for p, f in zip(module.parameters(), flags, strict=True):
            p.requires_grad_(f)


@dataclass
class GANObjective:
    """A loss ``kind`` of :data:`shared.gan_losses.GAN_LOSSES` and the enabled regularisers
    (a weight of 0 turns one off), added to D's loss in this order: WGAN-GP ``gp_lambda * gp``,
    ProGAN's drift ``drift * E[D(x)^2]``, ``r1_gamma / 2 * R1`` on the (augmented) reals, bCR
    with ``bcr_real``/``bcr_fake`` and ``lecam_weight * lecam`` (``lecam``: the task's
    :class:`~shared.gan_losses.LeCam`, whose EMAs it checkpoints). ``real_label``/``fake_label``:
    BCE targets (label smoothing). ``augment``: applied to every image D is trained or judged on
    (DiffAugment); bCR compares D on the plain and the augmented images.

    Logged: ``d_loss`` (the adversarial term alone), ``d_real``/``d_fake`` (mean logits) and the
    unweighted value of each enabled regulariser (``gp``, ``r1``, ``bcr``, ``lecam``); a task
    keeping other names for these passes ``log_names`` (canonical -> its name)."""

    kind: str
    real_label: float = 1.0
    fake_label: float = 0.0
    r1_gamma: float = 0.0
    gp_lambda: float = 0.0
    drift: float = 0.0
    bcr_real: float = 0.0
    bcr_fake: float = 0.0
    lecam: LeCam | None = None
    lecam_weight: float = 0.0
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None
    log_names: Mapping[str, str] = field(default_factory=dict)

    def _augmented(self, x: torch.Tensor) -> torch.Tensor:
        return self.augment(x) if self.augment is not None else x

    def discriminator_loss(
        self, d: nn.Module, real: torch.Tensor, fake: torch.Tensor, *cond
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """D's loss on ``real`` and ``fake`` (both detached here) and its logs (detached 0-dim
        tensors: no host sync). The reals D sees require grad when R1 is on, so R1 is taken on
        exactly those inputs."""
        real, fake = real.detach(), fake.detach()
        real_in, fake_in = self._augmented(real), self._augmented(fake)
        if self.r1_gamma > 0:
            real_in = real_in.detach().requires_grad_(True)
        real_logits, fake_logits = d(real_in, *cond), d(fake_in, *cond)
        loss = discriminator_loss(
            self.kind, real_logits, fake_logits, self.real_label, self.fake_label
        )
        logs = {
            "d_loss": loss.detach(),
            "d_real": real_logits.detach().mean(),
            "d_fake": fake_logits.detach().mean(),
        }
        if self.gp_lambda > 0:
            gp = gradient_penalty(d, real_in, fake_in, *cond)
            loss = loss + self.gp_lambda * gp
            logs["gp"] = gp.detach()
        if self.drift > 0:
            loss = loss + self.drift * real_logits.float().square().mean()
        if self.r1_gamma > 0:
            r1 = r1_penalty(real_logits, real_in)
            loss = loss + self.r1_gamma / 2 * r1
            logs["r1"] = r1.detach()
        if self.bcr_real > 0 or self.bcr_fake > 0:
            bcr = bcr_penalty(
                d(real, *cond),
                real_logits,
                d(fake, *cond),
                fake_logits,
                self.bcr_real,
                self.bcr_fake,
            )
            loss = loss + bcr
            logs["bcr"] = bcr.detach()
        if self.lecam is not None and self.lecam_weight > 0:
            lecam = self.lecam(real_logits, fake_logits)
            loss = loss + self.lecam_weight * lecam
            logs["lecam"] = lecam.detach()
        return loss, {self.log_names.get(k, k): v for k, v in logs.items()}

    def generator_logits(self, d: nn.Module, fake: torch.Tensor, *cond) -> torch.Tensor:
        """D's logits on the (augmented) ``fake``, D frozen: the gradients reach G, not D."""
        with frozen(d):
            return d(self._augmented(fake), *cond)

    def generator_term(self, fake_logits: torch.Tensor) -> torch.Tensor:
        """The adversarial loss of G for D's logits on its samples."""
        return generator_loss(self.kind, fake_logits)

    def generator_loss(self, d: nn.Module, fake: torch.Tensor, *cond) -> torch.Tensor:
        """G's adversarial loss on ``fake`` through the frozen ``d``."""
        return self.generator_term(self.generator_logits(d, fake, *cond))
