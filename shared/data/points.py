"""2-D toy distributions for the chapter's toy GAN (spec ``gan_chapter_and_cifar_thesis.md``
§3.1): ``builtin:swissroll`` and ``builtin:gaussians``. Items are ``{"points": (2,) float32,
"label": -1}``; every split is a fixed, seeded sample, so runs are reproducible."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch.utils.data import Dataset

POINT_SOURCES = ("builtin:swissroll", "builtin:gaussians")
SIZES = {"train": 20000, "val": 2000}
SEEDS = {"train": 0, "val": 1}


def swiss_roll(n: int, rng: np.random.Generator, noise: float = 0.1) -> np.ndarray:
    """The chapter's data: sklearn's 3-D swiss roll with noise 0.1, columns (0, 2), standardised
    with one scalar mean and std over all coordinates. ``(n, 2)`` float32."""
    from sklearn.datasets import make_swiss_roll

    x, _ = make_swiss_roll(n, noise=noise, random_state=int(rng.integers(2**31)))
    x = x[:, [0, 2]]
    return ((x - x.mean()) / x.std()).astype(np.float32)


def gaussian_ring(n: int, rng: np.random.Generator, modes: int = 8, std: float = 0.05):
    """A mixture of ``modes`` equal Gaussians (std ``std``) on the unit circle scaled by 2.
    ``(n, 2)`` float32."""
    angles = 2 * math.pi * rng.integers(modes, size=n) / modes
    centres = 2 * np.stack([np.cos(angles), np.sin(angles)], 1)
    return (centres + std * 2 * rng.standard_normal((n, 2))).astype(np.float32)


class PointDataset(Dataset):
    """``source`` (one of :data:`POINT_SOURCES`) for ``split`` ("train", "val" or "all")."""

    num_classes = 0

    def __init__(self, source: str, split: str):
        parts = ("train", "val") if split == "all" else (split,)
        make = swiss_roll if source == "builtin:swissroll" else gaussian_ring
        arrays = [make(SIZES[p], np.random.default_rng(SEEDS[p])) for p in parts]
        self.points = torch.from_numpy(np.concatenate(arrays))

    def __len__(self) -> int:
        return len(self.points)

    def __getitem__(self, key) -> dict[str, torch.Tensor]:
        index = key[0] if isinstance(key, tuple) else key
        return {"points": self.points[index], "label": torch.tensor(-1)}
