"""Samples from a trained generator: load an exported one, run it on seeded or given noise."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gan_direct.network import GANGenerator
from gan_direct.registry import model_types
from shared.data import load_class_names
from shared.exported import load_exported, locate, named_export


def class_labels(n: int, num_classes: int, device=None) -> torch.Tensor | None:
    """``n`` labels cycling through the classes in runs of 8 (a grid row per class), or None."""
    if not num_classes:
        return None
    return (torch.arange(n, device=device) // 8) % num_classes


def apply(net: nn.Module, x: torch.Tensor, labels: torch.Tensor | None, **kwargs) -> torch.Tensor:
    """``net(x)`` or, for a class-conditional run, ``net(x, labels)``."""
    return net(x, **kwargs) if labels is None else net(x, labels, **kwargs)


@torch.no_grad()
def generate(
    generator: GANGenerator,
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
    generator: GANGenerator,
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


def load_generator(path: str | Path) -> GANGenerator:
    """The (EMA) generator in eval mode from a run folder, its ``model`` folder or the
    ``model/generator`` folder itself, whatever its registered kind."""
    folder = named_export(locate(path), "generator", "generator")
    generators = [cls for kind, cls in model_types().items() if kind.endswith("-generator")]
    generator = load_exported(folder, generators, "a GAN generator")
    generator.class_names = load_class_names(folder, generator.num_classes)
    return generator
