"""How close a generator's samples are to the data: FID of the EMA generator when the Inception
weights are on disk (and a GPU runs it), else the offline FD-FMNIST (``fd_fmnist``), between the
validation images and as many samples from a fixed noise (biased by the set size: compare values
at equal counts only); for 2-D points, the sliced Wasserstein distance (``swd``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gan_direct.network import GANGenerator
from gan_direct.sample import generate
from shared.fmnist_classifier import fd_fmnist
from shared.inception import build_fid_inception, inception_available
from shared.metrics import FrechetDistance, sliced_wasserstein

EVAL_SEED = 1234


def generator_distance(
    generator: GANGenerator, real: torch.Tensor, points: bool
) -> dict[str, float]:
    """``{"swd": ...}`` for ``points`` (N, 2), else ``{"fid" | "fd_fmnist": ...}`` for images
    (N, C, H, W) in [-1, 1], of ``len(real)`` samples of ``generator`` from the noise of
    :data:`EVAL_SEED`, on ``real``'s device; ``{}`` for fewer than two real samples."""
    if len(real) < 2:  # a distance of distributions needs two samples (data summary warns)
        return {}
    fake = generate(generator, len(real), EVAL_SEED, real.device)
    if points:
        return {"swd": sliced_wasserstein(real, fake)}
    if fake.shape[-1] != real.shape[-1]:  # a growing generator below its final size
        fake = F.interpolate(fake, size=real.shape[-2:], mode="nearest")
    name, value = distance(real, fake)
    return {name: value}


def distance(real: torch.Tensor, fake: torch.Tensor) -> tuple[str, float]:
    """("fid", FID) on CUDA when the Inception weights are available, else ("fd_fmnist",
    FD-FMNIST): on a CPU the Inception runs at about 5 images/s a thread, too slow for training
    evals."""
    if real.device.type == "cuda" and inception_available():
        fd = FrechetDistance(build_fid_inception().to(real.device))
        for x, is_real in ((real, True), (fake, False)):
            for chunk in x.split(64):  # grey images: the Inception repeats them to RGB itself
                fd.update(chunk, real=is_real)
        return "fid", fd.compute()
    return "fd_fmnist", fd_fmnist(real, fake)
