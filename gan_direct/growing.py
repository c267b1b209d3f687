"""Progressive growing in training (ProGAN, :mod:`gan_direct.progan`): the stage and fade-in
of each step, set on the growing networks, and the real images taken to that stage."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class ProgressiveGrowth:
    """The schedule of :func:`progressive_schedule` for a run: ``phase_steps`` steps per fade-in
    and per stable phase, up to ``final_stage`` (the data's resolution ``4 * 2**final_stage``)."""

    phase_steps: int
    final_stage: int

    @classmethod
    def for_resolution(cls, phase_steps: int, resolution: int) -> ProgressiveGrowth:
        return cls(phase_steps, int(math.log2(resolution)) - 2)

    def apply(
        self, step: int, networks: Iterable, reals: torch.Tensor
    ) -> tuple[torch.Tensor, int, float]:
        """Grow ``networks`` (each with ``grow(stage, alpha)``) to ``step``'s stage and fade-in;
        returns ``(reals at that stage, stage, alpha)`` (:func:`blend_reals`)."""
        stage, alpha = progressive_schedule(step, self.phase_steps, self.final_stage)
        for net in networks:
            net.grow(stage, alpha)
        return blend_reals(reals, stage, alpha), stage, alpha


def progressive_schedule(step: int, phase_steps: int, final_stage: int) -> tuple[int, float]:
    """``(stage, alpha)`` at a training step: stage 0 for ``phase_steps`` steps, then for each
    new stage a fade-in of ``phase_steps`` steps (alpha linear from 0 to 1) and a stable phase of
    ``phase_steps`` steps; after the last stage ``(final_stage, 1.0)`` for good.
    ``phase_steps <= 0``: no growing, ``(final_stage, 1.0)`` at every step."""
    if phase_steps <= 0 or final_stage <= 0:
        return max(final_stage, 0), 1.0
    step = max(step, 0)
    if step < phase_steps:
        return 0, 1.0
    stage, within = divmod(step - phase_steps, 2 * phase_steps)
    stage += 1
    if stage > final_stage:
        return final_stage, 1.0
    return stage, min(1.0, within / phase_steps)


def blend_reals(images: torch.Tensor, stage: int, alpha: float) -> torch.Tensor:
    """Real images ``(B, C, R, R)`` at the current resolution ``r = 4 * 2**stage``:
    average-pooled to r and, during a fade-in (``stage > 0, alpha < 1``), blended as
    ``(1 - alpha) * upsample_nearest(avgpool2(x_r)) + alpha * x_r``, as the generator's output
    is. Returns ``(B, C, r, r)``."""
    size, r = images.shape[-1], 4 * 2**stage
    if size < r or size % r:
        raise ValueError(f"cannot take {size}px images to the {r}px of stage {stage}")
    x = F.avg_pool2d(images, size // r) if size > r else images
    if stage > 0 and alpha < 1:
        low = F.interpolate(F.avg_pool2d(x, 2), scale_factor=2, mode="nearest")
        x = (1 - alpha) * low + alpha * x
    return x
